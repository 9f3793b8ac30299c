// Shared pieces of the saelab command line: global flags, default paths, option binding.
#pragma once
#include <CLI/CLI.hpp>

#include <c10/util/Exception.h>

#include <functional>
#include <sstream>
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

/// "a,b,,c" → {"a", "b", "c"} (comma-separated flag values; empty items dropped).
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

/// A comma-separated list of numbers; an item that is not a number is an error naming `flag`.
template <class T>
std::vector<T> parse_numbers(const std::string& s, const char* flag) {
  std::vector<T> out;
  for (const auto& item : split_list(s)) {
    try {
      out.push_back(static_cast<T>(std::stod(item)));
    } catch (const std::exception&) {
      TORCH_CHECK(false, flag, ": '", item, "' is not a number");
    }
  }
  return out;
}

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
