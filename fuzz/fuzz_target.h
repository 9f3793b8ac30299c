// One fuzz target per fuzz/<target>.cpp, written as
//
//   SAELAB_FUZZ_TARGET(safetensors) { ...use data, size...; return 0; }
//
// In the libFuzzer build (SAELAB_FUZZ_LIBFUZZER, set by fuzz/CMakeLists.txt when SAELAB_FUZZ is
// ON) this is LLVMFuzzerTestOneInput of the target's own fuzz_<target> binary. Otherwise every
// target is compiled into the one fuzz_replay program, so each entry gets its own name and
// registers itself under `name` (fuzz/replay_main.cpp looks it up).
#pragma once
#include <cstddef>
#include <cstdint>

namespace saelab::fuzz {

using Entry = int (*)(const uint8_t* data, size_t size);

/// Records `entry` under `name`; returns true (for a static initialiser).
bool register_target(const char* name, Entry entry);

}  // namespace saelab::fuzz

#ifdef SAELAB_FUZZ_LIBFUZZER
#define SAELAB_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#else
#define SAELAB_FUZZ_TARGET(name)                                                              \
  static int saelab_fuzz_entry_##name(const uint8_t* data, size_t size);                      \
  [[maybe_unused]] static const bool saelab_fuzz_registered_##name =                          \
      ::saelab::fuzz::register_target(#name, &saelab_fuzz_entry_##name);                       \
  static int saelab_fuzz_entry_##name(const uint8_t* data, size_t size)
#endif
