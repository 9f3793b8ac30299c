// Shared pieces of the saelab command line: global flags, default paths, list parsing.
#pragma once
#include <CLI/CLI.hpp>

#include <c10/util/Exception.h>

#include <sstream>
#include <string>
#include <vector>

#include "apps/option_flags.h"
#include "core/json_options.h"
#include "core/runtime.h"

namespace saelab {

/// Flags every subcommand shares.
struct GlobalOptions {
  int threads = 0;
  std::string cache_dir = SAELAB_SOURCE_DIR "/.cache";
  std::string device = "cpu";

  template <class V>
  void fields(V& v) {
    v("threads", threads, "intra-op threads (0: OMP_NUM_THREADS when set, else all cores)");
    v("device", device, "where tensors live: cpu (cuda and cuda:N are refused until the GPU path is built)");
    v("cache", cache_dir, "folder with the data packages scripts/setup fetched");
  }
};
GlobalOptions& global_options();

/// Applies the global flags (threads, denormals); every subcommand calls this first. Analysis
/// commands pass keep_freed_memory false (RuntimeOptions::keep_freed_memory).
void start_command(bool keep_freed_memory = true, bool distributed = false);

/// "a, b,,c" → {"a", "b", "c"} (comma-separated flag values; spaces around items trimmed, empty
/// items dropped).
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    if (std::string t = trimmed(item); !t.empty()) out.push_back(std::move(t));
  }
  return out;
}

/// The bundled reference model.
inline std::string default_model_dir() { return SAELAB_SOURCE_DIR "/assets/brown-gpt"; }

}  // namespace saelab
