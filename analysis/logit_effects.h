// What each feature does to the logits: its decoder direction read through the model's final
// LayerNorm and unembedding (the "direct logit" view of sae_vis / Neuronpedia).
//
// Approximation: a residual-stream direction d changes the logits by roughly
// W_U ((d − mean(d)) ⊙ γ) / σ, where γ is the final LayerNorm's weight and σ the normalisation scale
// of the activation it is added to. σ is a positive factor shared by all tokens, so it changes the
// size of the effects but not their ranking; we leave it out (σ = 1), and the bias β and the rest of
// the network after the hook are ignored. Effects are therefore comparable between features of one
// SAE, not absolute logit changes.
#pragma once
#include <torch/torch.h>

#include <string>

#include "models/model_bundle.h"
#include "core/options.h"

namespace saelab {

class FeatureDb;
class Sae;

struct Unembedding {
  torch::Tensor ln_weight;  // [d_model] final LayerNorm γ (undefined when the model has none)
  bool centre = true;       // LayerNorm subtracts the mean (RMSNorm would not)
  torch::Tensor W_U;        // [d_model, vocab]
  std::string ln_name, unembed_name;
};

/// Finds the final norm and the unembedding among the model's parameters: model.json
/// "logit_lens": {"final_norm": name, "unembed": name} when given, else the usual names
/// (ln_final / ln_f / final_layer_norm / norm, and unembed / lm_head / W_U / a tied embedding).
/// Throws naming what it looked for when it finds no unembedding.
Unembedding find_unembedding(LanguageModel& lm);

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

/// The n most promoted and suppressed tokens of every feature.
LogitEffects logit_effects(const Sae& sae, const Unembedding& unembedding, int64_t n);

/// The logit effect vectors [d_sae rows of `features`, vocab] (for steering metrics and tests).
torch::Tensor feature_logit_effects(const Sae& sae, const Unembedding& unembedding, const torch::Tensor& features);

/// Writes logit_effects rows for one SAE.
void write_logit_effects(FeatureDb& db, const std::string& sae_name, const LogitEffects& effects, const Tokenizer& tokenizer);

/// A token's text for display: the decoded text, with the leading space a SentencePiece "▁" piece
/// carries kept.
std::string display_token(const Tokenizer& tokenizer, int64_t id);

}  // namespace saelab
