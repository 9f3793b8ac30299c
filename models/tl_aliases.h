// TransformerLens' hook names for the blocks of a traced or scripted model, inferred from the
// names of each block's submodules (the layouts of GPT-2, GPT-NeoX / Pythia, Llama, Mistral,
// Qwen 2 / 2.5 / 3, Gemma 2 / 3, OLMo 2 and saelab's own GPT), as TransformerLens 4's
// TransformerBridge assigns them:
//
//   hook_resid_pre / hook_resid_post   the block's input / output
//   hook_resid_mid                     the pre-MLP norm's input (the MLP's input without one, OLMo 2)
//   hook_attn_out / hook_mlp_out       the attention / MLP output, after its post-norm where the block
//                                      has one (Gemma 2 / 3, OLMo 2)
//   mlp.hook_pre / mlp.hook_post       the MLP's hidden pre-activation (the gate's output in a gated
//                                      MLP) and the input of its output projection
//
// Names that only a forward pass can settle (GPT-NeoX's parallel residual has no hook_resid_mid)
// are left to the caller; the ln*.hook_normalized names need the norm's epsilon, which a TorchScript
// file does not carry by name, so they are written by tools/export_hf.py, not inferred here.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace saelab {

/// Aliases blocks.{i}.hook_* → hook points, for blocks `blocks_prefix`{i} (e.g. "model.layers.")
/// among `points`. Only names whose point exists are returned.
nlohmann::json transformer_lens_aliases(const std::vector<std::string>& points, const std::string& blocks_prefix,
                                        int64_t n_layers);

}  // namespace saelab
