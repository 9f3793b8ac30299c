// Evaluating SAEs on held-out tokens: sparsity and reconstruction, and what happens to the model's
// loss when the SAE's reconstruction is spliced in at its hook.
//
// Transcoders are evaluated the same way against what they predict: x is then the target hook's
// activation (e.g. the MLP's output) and x̂ the transcoder's prediction from its input hook; the
// target hook is the one spliced and ablated (zero / mean ablation of the MLP's output). Transcoders
// of one name (a run's SAE folder name, e.g. topk-k32) at two or more target hooks are also spliced
// in all at once: the replacement model's CE and KL (`replacements`).
//
// Definitions (statistics over the evaluation tokens, BOS positions excluded; n tokens, x the
// activation, x̂ the SAE's reconstruction):
//   L0            mean number of active latents per token
//   MSE           mean ‖x − x̂‖²
//   FVU           Σ‖x − x̂‖² / Σ‖x − x̄‖², x̄ the mean activation: E‖x − x̂‖² / (E‖x‖² − ‖E x‖²)
//   cosine        mean cos(x, x̂)
//   norm ratio    mean ‖x̂‖ / ‖x‖
//   shrinkage     Σ‖x̂‖² / Σ⟨x, x̂⟩ (1 without shrinkage; below 1 when the code is shrunk)
//   dead / dense  fraction of latents that never fire / fire on more than `dense_threshold` of
//                 tokens, by default from the training-time densities the SAE folder carries
//                 (sparsity.safetensors: hundreds of thousands of tokens), else over the evaluation
//                 tokens; `density_source` says which
//   CE            mean next-token cross-entropy over every prediction of the contexts (nats)
//   spliced       the hook's activation replaced by x̂ at every position but BOS (BOS activations
//                 are excluded from training, as usual)
//   zero / mean   the activation replaced by 0 / by x̄ at the same positions
//   loss recovered (CE_ablated − CE_spliced) / (CE_ablated − CE_clean), against either ablation
//   KL            mean over predictions of KL(p_clean ‖ p_spliced)
//   kl_div_score  (KL_zero − KL_spliced) / KL_zero, SAEBench's fidelity score (1: the spliced
//                 model's predictions are the clean ones; 0: no better than zero ablation)
//   absorption    first-letter feature absorption on the evaluation tokens (analysis/absorption.h)
// Two conventions for where the hook is replaced: "saelab" (above: positions 1.., BOS kept) and
// "saelens" (every position, BOS included, as SAELens' and SAEBench's evals splice and
// zero-ablate); CE and KL are over every prediction in both. Every loss-recovered number is
// reported with its convention.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "analysis/absorption.h"
#include "analysis/attached_sae.h"
#include "analysis/eval_set.h"

namespace saelab {

/// How the splicing convention is described next to its numbers.
inline constexpr const char* kSaelabConvention = "saelab: hook replaced at positions 1.. (BOS kept); CE and KL over every prediction";
inline constexpr const char* kSaelensConvention = "saelens: hook replaced at every position, BOS included (SAELens / SAEBench); CE and KL over every prediction";

struct EvalOptions {
  int64_t batch_size = 8;
  double dense_threshold = 0.1;
  bool with_error_term = false;
  bool saelens_convention = true;
  std::string density_source = "training";
  bool absorption = true;
  AbsorptionOptions absorption_options;

  template <class V>
  void fields(V& v) {
    v("batch_size", batch_size, "contexts per forward pass", at_least(1));
    v("dense_threshold", dense_threshold, "a latent firing on more than this fraction of tokens is dense", in_range(0, 1));
    v("saelens_convention", saelens_convention, "also splice and zero-ablate every position including BOS, as SAELens and SAEBench do");
    v("density_source", density_source, "dead / dense fractions from: training (the folder's sparsity.safetensors, else the evaluation tokens) or evaluation");
    v("absorption", absorption, "measure first-letter feature absorption (needs a tokenizer whose pieces mark word starts)");
    absorption_options.fields(v);
    v("with_error_term", with_error_term, "also splice x̂ + (x − x̂), the reconstruction with its error (CE must equal the clean CE)");
  }
  void validate() const;
};

/// The splicing numbers under the SAELens convention (every position, BOS included).
struct SaelensConventionResult {
  bool computed = false;
  double ce_spliced = 0, ce_zero = 0, loss_recovered_zero = 0, kl = 0, kl_zero = 0, kl_div_score = 0;
};

struct SaeEvalResult {
  std::string name, dir, hook, architecture;
  std::string hook_out;  ///< the hook spliced: `hook` for an SAE, the target for a transcoder
  int64_t d_sae = 0, tokens = 0;
  double l0 = 0, mse = 0, fvu = 0, cosine = 0, norm_ratio = 0, shrinkage = 0;
  double dead_fraction = 0, dense_fraction = 0;
  std::string density_source;  ///< "training" or "evaluation"
  int64_t density_tokens = 0;  ///< tokens the densities were counted over (0: not recorded)
  // The saelab convention (positions 1.. replaced):
  double ce_clean = 0, ce_spliced = 0, ce_zero = 0, ce_mean = 0, ce_with_error = 0;
  double loss_recovered_zero = 0, loss_recovered_mean = 0, ce_increase = 0, kl = 0;
  double kl_zero = 0, kl_div_score = 0;
  SaelensConventionResult saelens;
  bool absorption_measured = false;
  AbsorptionResult absorption;
  /// log10 density histogram of the latents that fire: edges −7, −6.5, …, 0 (14 bins).
  std::vector<int64_t> density_histogram;
  torch::Tensor density;  // [d_sae] fraction of tokens on which each latent fires (density_source's)
  nlohmann::json to_json() const;
};

/// Transcoders of one name spliced in at once (every layer's MLP replaced), saelab's convention.
struct ReplacementResult {
  std::string name;                  ///< the transcoders' folder name
  std::vector<std::string> coders;   ///< their names (<group>/<name>)
  double ce_clean = 0, ce_replaced = 0, kl = 0;
  nlohmann::json to_json() const;
};

struct EvalReport {
  int64_t contexts = 0, tokens = 0;
  std::vector<SaeEvalResult> saes;
  std::vector<ReplacementResult> replacements;
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
