// Training-step cost of SAEs, as ratios to one encoder GEMM measured in the same run: what the
// sparse TopK kernels save over the straightforward dense implementation, and what a standard
// (ReLU + L1) step costs.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>

#include "core/options.h"

namespace saelab {

struct SaeBenchOptions {
  int64_t d_in = 512;
  int64_t d_sae = 16384;
  int64_t k = 32;
  int64_t batch = 4096;
  int repeats = 5;
  bool topk_only = false;

  template <class V>
  void fields(V& v) {
    v("d_in", d_in, "input width", at_least(1));
    v("d_sae", d_sae, "dictionary size", at_least(1));
    v("k", k, "active latents per row", at_least(1));
    v("batch", batch, "rows per step", at_least(1));
    v("repeats", repeats, "timed repetitions of each measurement, after one warm-up (the median is reported)", at_least(1));
    v("topk_only", topk_only, "measure only the encoder GEMM and the TopK step as the trainer runs it (for widths where the dense and standard steps do not fit in memory)");
  }
  void validate() const;
};

/// Measures, interleaved in one run: (a) the encoder GEMM alone, (b) a TopK training step with the
/// sparse kernels, (c) the same step done densely, (d) a standard step at initialisation (dense
/// codes), (e–h) standard, gated and jumprelu (step and tanh penalties) steps once their codes are
/// sparse (about k active latents per row); every step is forward, backward and the trainer's
/// update. Returns the seconds, the ratios to (a), whether each meets its target (b ≤ 1.3a,
/// c ≥ 3b, d ≤ 6a, e–h ≤ 2a), the codes (e–h) ran on and the process's peak RSS. With topk_only,
/// (a) and (b) alone.
nlohmann::json bench_sae_steps(const SaeBenchOptions& options);

}  // namespace saelab
