// Evaluating SAEs on held-out tokens: sparsity and reconstruction, and what happens to the model's
// loss when the SAE's reconstruction is spliced in at its hook.
//
// Definitions (statistics over the evaluation tokens, BOS positions excluded; n tokens, x the
// activation, x̂ the SAE's reconstruction):
//   L0            mean number of active latents per token
//   MSE           mean ‖x − x̂‖²
//   FVU           Σ‖x − x̂‖² / Σ‖x − x̄‖², x̄ the mean activation: E‖x − x̂‖² / (E‖x‖² − ‖E x‖²)
//   cosine        mean cos(x, x̂)
//   norm ratio    mean ‖x̂‖ / ‖x‖
//   shrinkage     Σ‖x̂‖² / Σ⟨x, x̂⟩ (1 without shrinkage; below 1 when the code is shrunk)
//   dead / dense  fraction of latents that never fire / fire on more than `dense_threshold` of tokens
//   CE            mean next-token cross-entropy over every prediction of the contexts (nats)
//   spliced       the hook's activation replaced by x̂ at every position but BOS (BOS activations
//                 are excluded from training, as usual)
//   zero / mean   the activation replaced by 0 / by x̄ at the same positions
//   loss recovered (CE_ablated − CE_spliced) / (CE_ablated − CE_clean), against either ablation
//   KL            mean over predictions of KL(p_clean ‖ p_spliced)
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "analysis/attached_sae.h"
#include "analysis/eval_set.h"

namespace saelab {

struct EvalOptions {
  int64_t batch_size = 8;
  double dense_threshold = 0.1;
  bool with_error_term = false;

  template <class V>
  void fields(V& v) {
    v("batch_size", batch_size, "contexts per forward pass", at_least(1));
    v("dense_threshold", dense_threshold, "a latent firing on more than this fraction of tokens is dense", in_range(0, 1));
    v("with_error_term", with_error_term, "also splice x̂ + (x − x̂), the reconstruction with its error (CE must equal the clean CE)");
  }
  void validate() const;
};

struct SaeEvalResult {
  std::string name, dir, hook, architecture;
  int64_t d_sae = 0, tokens = 0;
  double l0 = 0, mse = 0, fvu = 0, cosine = 0, norm_ratio = 0, shrinkage = 0;
  double dead_fraction = 0, dense_fraction = 0;
  double ce_clean = 0, ce_spliced = 0, ce_zero = 0, ce_mean = 0, ce_with_error = 0;
  double loss_recovered_zero = 0, loss_recovered_mean = 0, ce_increase = 0, kl = 0;
  /// log10 density histogram of the latents that fire: edges −7, −6.5, …, 0 (14 bins).
  std::vector<int64_t> density_histogram;
  torch::Tensor density;  // [d_sae] fraction of evaluation tokens on which each latent fires
  nlohmann::json to_json() const;
};

struct EvalReport {
  int64_t contexts = 0, tokens = 0;
  std::vector<SaeEvalResult> saes;
  nlohmann::json to_json() const;
  /// A readable table, one row per SAE.
  std::string table() const;
};

/// Evaluates every SAE; those sharing a hook share the clean and ablated runs.
EvalReport evaluate_saes(LanguageModel& lm, HookedModel& hooked, const std::vector<AttachedSae>& saes,
                         const EvalSet& eval_set, const EvalOptions& options);

/// The histogram edges used by SaeEvalResult::density_histogram.
std::vector<double> density_histogram_edges();

}  // namespace saelab
