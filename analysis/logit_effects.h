// What each feature does to the logits: its decoder direction read through the model's final
// LayerNorm and unembedding (the "direct logit" view of sae_vis / Neuronpedia).
//
// Approximation: a residual-stream direction d changes the logits by roughly
// W_U ((d − mean(d)) ⊙ γ) / σ, where γ is the final LayerNorm's weight and σ the normalisation scale
// of the activation it is added to; an RMSNorm does not centre (W_U (d ⊙ γ) / σ), and Gemma's
// RMSNorm multiplies by (1 + w) rather than w, so γ = 1 + w there. σ is a positive factor shared by all tokens, so it changes the
// size of the effects but not their ranking; we leave it out (σ = 1), and the bias β and the rest of
// the network after the hook are ignored. Effects are therefore comparable between features of one
// SAE, not absolute logit changes.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "analysis/attached_sae.h"
#include "models/model_bundle.h"
#include "core/options.h"

namespace saelab {

class FeatureDb;
class Sae;

struct Unembedding {
  torch::Tensor ln_weight;  // [d_model] the final norm's effective gain γ (w, or 1 + w for rmsnorm_plus_one; undefined without a norm)
  bool centre = true;       // LayerNorm subtracts the mean (RMSNorm does not)
  std::string norm = "none";  // "layernorm", "rmsnorm", "rmsnorm_plus_one" or "none"
  torch::Tensor ln_bias;    // [d_model] the final norm's bias β (undefined when it has none)
  torch::Tensor W_U;        // [d_model, vocab]
  double softcap = 0;       // final logit softcapping c: logits = c·tanh(z / c) (Gemma 2); 0: none
  std::string ln_name, unembed_name;
};

/// The model's logits from the final norm's normalised input x̂ [..., d_model] (TransformerLens'
/// ln_final.hook_normalized): softcap((x̂ ⊙ γ + β) W_U) → [..., vocab]. At the last layer this is
/// the model's own output, which is how the norm conventions are checked.
torch::Tensor logit_lens(const Unembedding& u, const torch::Tensor& normalized);

/// Finds the final norm and the unembedding among the model's parameters: model.json
/// "logit_lens": {"final_norm": name, "unembed": name, "norm": type, "softcap": c} when given, else the usual
/// names (ln_final / ln_f / final_layer_norm / norm, and unembed / lm_head / W_U / a tied
/// embedding). The norm type is "layernorm", "rmsnorm", "rmsnorm_plus_one" (Gemma: x̂ · (1 + w)) or
/// "none"; unnamed, it is inferred only when unambiguous: a final norm with a bias is a LayerNorm.
/// A weight without a bias (RMSNorm, Gemma's RMSNorm or a LayerNorm without bias) is an error
/// asking for "norm". Throws naming what it looked for when it finds no unembedding.
Unembedding find_unembedding(LanguageModel& lm);

/// The same from a model's parameters and its model.json `logit_lens` object (may be null);
/// `model` names the model in errors.
Unembedding unembedding_from(const std::map<std::string, torch::Tensor>& params, const nlohmann::json& logit_lens,
                             int64_t vocab, const std::string& model);

struct LogitEffectOptions {
  int64_t tokens = 10;

  template <class V>
  void fields(V& v) {
    v("logit_tokens", tokens, "promoted and suppressed tokens kept per feature", at_least(1));
  }
};

struct LogitEffects {
  torch::Tensor promoted_ids, promoted;      // [d_sae, n] int64 / float32, largest effect first
  torch::Tensor suppressed_ids, suppressed;  // [d_sae, n], most negative first
};

/// The n most promoted and suppressed tokens of every feature; with `ranked` ([vocab] bool), only
/// among those tokens (tokens_seen_in_training: never-seen tokens left out).
LogitEffects logit_effects(const Sae& sae, const Unembedding& unembedding, int64_t n,
                           const torch::Tensor& ranked = {});

/// The logit effect vectors [d_sae rows of `features`, vocab] (for steering metrics and tests).
torch::Tensor feature_logit_effects(const Sae& sae, const Unembedding& unembedding, const torch::Tensor& features);

/// Writes logit_effects rows for one SAE.
void write_logit_effects(FeatureDb& db, const std::string& sae_name, const LogitEffects& effects, const Tokenizer& tokenizer);

/// The n most promoted and suppressed tokens of every SAE, ranked among the tokens the model saw in
/// training (seen_tokens.h), written with the note that says which were left out (notes table).
void write_logit_effects_of(FeatureDb& db, const std::vector<AttachedSae>& saes, const LanguageModel& lm,
                            const Unembedding& u, int64_t n, const std::string& cache_dir);

/// A token's text for display: the decoded text, with the leading space a SentencePiece "▁" piece
/// carries kept.
std::string display_token(const Tokenizer& tokenizer, int64_t id);

}  // namespace saelab
