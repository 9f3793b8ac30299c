// fuzz_replay: the fuzz targets without libFuzzer (the normal build, any compiler). Every
// fuzz/<target>.cpp registers its entry here (fuzz/fuzz_target.h).
//
//   fuzz_replay --list                       the targets
//   fuzz_replay TARGET PATH...               runs TARGET on each file (a folder: its files, sorted)
//   fuzz_replay --all ROOT...                runs every target on ROOT/<target>/* for each ROOT;
//                                            fails when a target finds no input in any ROOT
//
// An input that crashes or trips a property kills the program (the input's path is printed first);
// ctest's fuzz_regressions replays fuzz/corpus (the seeds) and fuzz/regressions (crash reproducers).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "fuzz/fuzz_target.h"

namespace saelab::fuzz {

namespace {
std::map<std::string, Entry>& registry() {
  static std::map<std::string, Entry> targets;
  return targets;
}
}  // namespace

bool register_target(const char* name, Entry entry) {
  registry()[name] = entry;
  return true;
}

}  // namespace saelab::fuzz

namespace {

namespace fs = std::filesystem;

// Regular files of `path` (itself when it is a file), sorted; dotfiles and README* are not inputs.
std::vector<fs::path> inputs_of(const fs::path& path) {
  std::vector<fs::path> out;
  if (fs::is_regular_file(path)) return {path};
  if (!fs::is_directory(path)) return out;
  for (const auto& entry : fs::directory_iterator(path)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name.empty() || name[0] == '.' || name.rfind("README", 0) == 0) continue;
    out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void replay(const std::string& target, saelab::fuzz::Entry entry, const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::fprintf(stderr, "%s %s (%zu bytes)\n", target.c_str(), file.string().c_str(), bytes.size());
  std::fflush(stderr);
  entry(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

int usage() {
  std::fprintf(stderr, "usage: fuzz_replay --list | TARGET PATH... | --all ROOT...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const auto& targets = saelab::fuzz::registry();
  if (argc < 2) return usage();
  const std::string first = argv[1];
  if (first == "--list") {
    for (const auto& [name, entry] : targets) std::printf("%s\n", name.c_str());
    return 0;
  }
  if (first == "--all") {
    if (argc < 3) return usage();
    bool missing = false;
    for (const auto& [name, entry] : targets) {
      size_t n = 0;
      for (int i = 2; i < argc; ++i) {
        for (const auto& file : inputs_of(fs::path(argv[i]) / name)) {
          replay(name, entry, file);
          ++n;
        }
      }
      std::printf("%s: %zu inputs replayed\n", name.c_str(), n);
      if (n == 0) {
        std::fprintf(stderr, "fuzz_replay: no inputs for target '%s'\n", name.c_str());
        missing = true;
      }
    }
    return missing ? 1 : 0;
  }
  auto it = targets.find(first);
  if (it == targets.end() || argc < 3) {
    std::fprintf(stderr, "fuzz_replay: unknown target '%s'\n", first.c_str());
    return usage();
  }
  bool missing = false;
  for (int i = 2; i < argc; ++i) {
    const auto files = inputs_of(argv[i]);
    if (files.empty()) {
      std::fprintf(stderr, "fuzz_replay: no inputs at '%s'\n", argv[i]);
      missing = true;
    }
    for (const auto& file : files) replay(first, it->second, file);
  }
  std::printf("%s: done\n", first.c_str());
  return missing ? 1 : 0;
}
