// Shared pieces of the saelab command line: global flags, default paths, option binding.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <type_traits>
#include <string>
#include <vector>

#include "core/json_options.h"
#include "core/runtime.h"

namespace saelab {

/// Flags every subcommand shares.
struct GlobalOptions {
  /// Intra-op threads (0: all cores).
  int threads = 0;
  /// Folder holding the data packages scripts/setup fetched.
  std::string cache_dir = SAELAB_SOURCE_DIR "/.cache";
};
GlobalOptions& global_options();

/// Applies the global flags (threads, denormals); every subcommand calls this first.
void start_command();

/// The bundled reference model.
inline std::string default_model_dir() { return SAELAB_SOURCE_DIR "/assets/brown-gpt"; }

/// Binds struct fields to CLI flags with the struct's defaults shown in --help, and lets flags
/// given on the command line override values read from a JSON config.
template <class S>
class FlagBinder {
 public:
  FlagBinder(CLI::App* app, S* target) : app_(app), target_(target) {}
  template <class T>
  void add(const std::string& flag, T S::*field, const std::string& help) {
    CLI::Option* opt = nullptr;
    if constexpr (std::is_same_v<T, bool>) {
      opt = app_->add_flag(flag + ",!--no-" + flag.substr(2), flags_.*field, help)->default_val(target_->*field);
    } else {
      opt = app_->add_option(flag, flags_.*field, help)->default_val(target_->*field);
    }
    flags_.*field = target_->*field;
    apply_.push_back([opt, field, this]() {
      if (opt->count() > 0) target_->*field = flags_.*field;
    });
  }
  /// Copies the flags the user gave into the target (call after reading any config).
  void apply() {
    for (auto& f : apply_) f();
  }

 private:
  CLI::App* app_;
  S* target_;
  S flags_{};
  std::vector<std::function<void()>> apply_;
};

}  // namespace saelab
