// Process-wide runtime settings: threads, denormals, seeding.
#pragma once
#include <cstdint>

namespace saelab {

struct RuntimeOptions {
  /// Intra-op threads for LibTorch; 0 means one per hardware core.
  int threads = 0;
  /// Seed for LibTorch's global generator.
  uint64_t seed = 0;
};

/// Applies the options. Also enables flush-to-zero for denormals: training slows down up to 8x
/// once subnormal floats appear, and OpenMP would otherwise start with a single thread.
void init_runtime(const RuntimeOptions& options);

/// Number of hardware threads the process may use (at least 1).
int hardware_threads();

}  // namespace saelab
