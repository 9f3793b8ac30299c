// The reference model: a GPT-2-style decoder (pre-LayerNorm, learned positions, causal
// self-attention, tanh-GELU MLP, tied embeddings) built directly as a TorchScript module, so the
// file saelab trains is the same kind of file users bring (torch.jit.load works on it).
//
// Module tree (hook points later attach to these paths):
//   embed            weight [vocab, d_model]        forward(tokens [B,T]) -> [B,T,d_model]
//   pos_embed        weight [context, d_model]      forward(tokens [B,T]) -> [B,T,d_model]
//   blocks.{i}       forward(x [B,T,d]) -> [B,T,d] (resid_pre in, resid_post out)
//     ln1, attn, ln2, mlp
//   ln_final         forward(x) -> [B,T,d]
//   unembed          weight: the same tensor as embed.weight (tied)  forward(x) -> logits [B,T,vocab]
#pragma once
#include <torch/script.h>

#include <nlohmann/json.hpp>

#include "core/options.h"

namespace saelab {

struct GptConfig {
  int64_t vocab_size = 8192;
  int64_t d_model = 256;
  int64_t n_layers = 4;
  int64_t n_heads = 4;
  int64_t d_mlp = 0;
  int64_t context_length = 128;

  template <class V>
  void fields(V& v) {
    v("vocab_size", vocab_size, "vocabulary size (must equal the tokenizer's)", at_least(1).only(kInConfig | kInRecord));
    v("d_model", d_model, "residual stream width", at_least(1));
    v("n_layers", n_layers, "transformer blocks", at_least(1));
    v("n_heads", n_heads, "attention heads (must divide d_model)", at_least(1));
    v("d_mlp", d_mlp, "MLP hidden width (0: 4 × d_model)", at_least(1));
    v("context_length", context_length, "longest input the position embedding covers", at_least(2));
  }
  int64_t mlp_width() const { return d_mlp > 0 ? d_mlp : 4 * d_model; }
  void validate() const;
  /// The fields, with d_mlp resolved.
  nlohmann::json to_json() const;
  /// Reads a config object; `where` names it in errors. Unknown keys are rejected.
  static GptConfig from_json(const nlohmann::json& j, const std::string& where);
};

/// The TransformerLens hook names of this model's tensors, for model.json "hook_aliases":
/// blocks.{i}.hook_resid_pre / _mid / _post, hook_attn_out, hook_mlp_out, ln1 / ln2
/// .hook_normalized (computed from the norms' inputs), hook_embed, hook_pos_embed and
/// ln_final.hook_normalized.
nlohmann::json gpt_hook_aliases(int64_t n_layers);

/// Builds a freshly initialised model (GPT-2 initialisation: N(0, 0.02), residual output
/// projections scaled by 1/sqrt(2 n_layers)). Parameters require grad.
torch::jit::Module build_gpt(const GptConfig& config, uint64_t seed);

/// The distinct trainable tensors of a module (a tied weight appears once), with the first name
/// under which each appears.
std::vector<std::pair<std::string, torch::Tensor>> unique_parameters(const torch::jit::Module& module);

}  // namespace saelab
