// What every SAE loader's fuzz target requires of an SAE that loads: it runs.
#pragma once
#include <torch/torch.h>

#include "fuzz/fuzz_util.h"
#include "sae/sae_io.h"

namespace saelab::fuzz {

/// Encodes and decodes a small batch with the shapes the SAE's config gives.
inline void require_sae_runs(const LoadedSae& loaded) {
  const SaeConfig& c = loaded.sae.config();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::linspace(-1.0, 1.0, 2 * c.d_in).reshape({2, c.d_in});
  const torch::Tensor f = loaded.sae.encode(x);
  require(f.dim() == 2 && f.size(0) == 2 && f.size(1) == c.d_sae, "encode gives [batch, d_sae]");
  const torch::Tensor x_hat = loaded.sae.decode(f);
  require(x_hat.dim() == 2 && x_hat.size(0) == 2 && x_hat.size(1) == c.d_in, "decode gives [batch, d_in]");
}

}  // namespace saelab::fuzz
