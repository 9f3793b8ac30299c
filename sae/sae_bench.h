// Training-step cost of SAEs, as ratios to one encoder GEMM measured in the same run: what the
// sparse TopK kernels save over the straightforward dense implementation, and what a standard
// (ReLU + L1) step costs.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>

namespace saelab {

struct SaeBenchOptions {
  /// Input width.
  int64_t d_in = 512;
  /// Dictionary size.
  int64_t d_sae = 16384;
  /// Active latents per row.
  int64_t k = 32;
  /// Rows per step.
  int64_t batch = 4096;
  /// Timed repetitions of each measurement (after one warm-up); the median is reported.
  int repeats = 5;
  void validate() const;
};

/// Measures, interleaved in one run: (a) the encoder GEMM alone, (b) a TopK training step with the
/// sparse kernels, (c) the same step done densely, (d) a standard step; every step is forward,
/// backward and the same Adam update. Returns the seconds, the ratios b/a, c/b, d/a and whether
/// each meets its target (b ≤ 1.5a, c ≥ 3b, d ≤ 6a).
nlohmann::json bench_sae_steps(const SaeBenchOptions& options);

}  // namespace saelab
