// Helpers shared by the fuzz targets (header-only: every target is its own program in the
// libFuzzer build, and all of them are one program in the replay build).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace saelab::fuzz {

namespace fs = std::filesystem;

/// Cuts an input that stands for several files ("cfg.json, then the weights"); seeds put it on a
/// line of its own between the files.
inline constexpr std::string_view kSeparator = "\n--8<--\n";

/// The input as text.
inline std::string as_string(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

/// Splits `text` at kSeparator into at most `max_parts` parts (the last one keeps any further
/// separators); a part that is missing is absent from the result.
inline std::vector<std::string> split_parts(std::string_view text, size_t max_parts) {
  std::vector<std::string> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = text.find(kSeparator);
    if (at == std::string_view::npos) break;
    parts.emplace_back(text.substr(0, at));
    text.remove_prefix(at + kSeparator.size());
  }
  parts.emplace_back(text);
  return parts;
}

/// A harness invariant or a property of the library that must hold for every input: a failure is
/// a finding, so it aborts (libFuzzer then keeps the input as a crash).
inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "saelab fuzz: property violated: %s\n", what);
    std::abort();
  }
}

/// This process's scratch folder, /dev/shm/saelab-fuzz-<pid> (RAM, reused by every input of the
/// process; removed at exit). Folders left by processes that are gone (a crash skips atexit) are
/// removed when the next one starts.
inline const fs::path& scratch_dir() {
  // Never destroyed: the atexit handler below runs after static destructors registered later.
  static const fs::path& dir = *[] {
    std::error_code ec;
    const fs::path base = fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
    const std::string prefix = "saelab-fuzz-";
    for (const auto& entry : fs::directory_iterator(base, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind(prefix, 0) != 0) continue;
      const std::string pid = name.substr(prefix.size());
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
      if (!fs::exists(fs::path("/proc") / pid, ec)) fs::remove_all(entry.path(), ec);
    }
    auto* d = new fs::path(base / (prefix + std::to_string(::getpid())));
    fs::remove_all(*d, ec);
    fs::create_directories(*d);
    std::atexit([] {
      std::error_code ignored;
      fs::remove_all(scratch_dir(), ignored);
    });
    return d;
  }();
  return dir;
}

/// An empty folder scratch_dir()/name (emptied on every call).
inline fs::path fresh_dir(const std::string& name) {
  const fs::path d = scratch_dir() / name;
  std::error_code ec;
  fs::remove_all(d, ec);
  fs::create_directories(d);
  return d;
}

/// Writes `bytes` to `path` (plainly: the readers are under test, not the writers).
inline void write_bytes(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  require(out.good(), "writing a scratch file failed (is /dev/shm full?)");
}

/// Runs `fn`: an exception is how saelab rejects a bad input, so it ends the input quietly
/// (SAELAB_FUZZ_VERBOSE=1 prints its message, to see why a seed is rejected). Anything else (a
/// crash, a sanitizer report, an abort from `require`) is a finding.
template <class Fn>
void rejecting(Fn&& fn) {
  static const bool verbose = std::getenv("SAELAB_FUZZ_VERBOSE") != nullptr;
  try {
    fn();
  } catch (const std::exception& e) {
    if (verbose) {
      const std::string what = e.what();
      std::fprintf(stderr, "saelab fuzz: rejected: %s\n", what.substr(0, what.find('\n')).c_str());
    }
  }
}

/// Runs `fn`, which must not throw: a round trip of something the library itself accepted or
/// wrote. An exception is a finding, reported with its message.
template <class Fn>
void must_succeed(const char* what, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "saelab fuzz: %s threw: %s\n", what, e.what());
    std::abort();
  }
}

}  // namespace saelab::fuzz
