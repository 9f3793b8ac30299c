// SAELens-compatible SAE directories:
//   cfg.json                 architecture, d_in, d_sae, dtype, apply_b_dec_to_input,
//                            normalize_activations, k (topk / batchtopk), and "metadata"
//                            {model_name, hook_name, context_size, prepend_bos, ...}
//   sae_weights.safetensors  W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]
//                            (gated: b_gate, b_mag, r_mag instead of b_enc; jumprelu and
//                            batchtopk: threshold [d_sae])
//   sparsity.safetensors     log10 feature density [d_sae] (optional)
// SAEs written by SAELens in this layout load too (metadata fields at the top level, as older
// versions write them, are accepted).
#pragma once
#include <string>

#include "sae/sae.h"

namespace saelab {

struct SaeMetadata {
  std::string model_name;
  std::string hook_name;
  int64_t context_size = 0;
  bool prepend_bos = true;
  std::string model_sha256;  ///< of the model file the SAE was trained on (saelab extension)
  nlohmann::json to_json() const;
};

struct LoadedSae {
  Sae sae;
  SaeMetadata metadata;
  torch::Tensor log10_density;  ///< [d_sae], undefined when sparsity.safetensors is absent
};

/// Writes the directory; each file atomically. `log10_density` may be undefined.
void save_sae(const std::string& dir, const Sae& sae, const SaeMetadata& metadata,
              const torch::Tensor& log10_density = {});

/// Reads a directory; a file whose shapes disagree with its cfg.json is rejected naming the tensor.
LoadedSae load_sae(const std::string& dir);

}  // namespace saelab
