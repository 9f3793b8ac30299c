// Sparse kernels for TopK SAEs: the encoder computes the full pre-activation product once, but the
// backward pass and the decoder touch only the k active latents per row, so a training step costs
// about one dense GEMM plus O(batch * k * d_in). Both are custom autograd functions, checked against
// dense float64 autograd in the tests.
#pragma once
#include <torch/torch.h>

namespace saelab {

struct TopKCode {
  torch::Tensor values;   // [batch, k] ReLU of the k largest pre-activations (differentiable)
  torch::Tensor indices;  // [batch, k] int64 latent indices
};

/// values, indices = top-k over latents of ReLU(x W_enc + b_enc).
/// x [batch, d_in] (already centred by b_dec when the SAE does that), W_enc [d_in, d_sae],
/// b_enc [d_sae]. Gradients flow to x, W_enc and b_enc through the k selected entries only.
TopKCode topk_encode(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b_enc, int64_t k);

/// BatchTopK: the `total` largest ReLU pre-activations over the whole batch. Rows are padded to the
/// fullest row's count; padding has value 0 (and no gradient), so topk_decode can take the code.
TopKCode batch_topk_encode(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b_enc,
                           int64_t total);

/// out[b] = sum_j values[b, j] * W_dec[indices[b, j]]  →  [batch, d_in]  (no bias).
/// W_dec [d_sae, d_in]. Gradients flow to values and W_dec (rows that were used only).
torch::Tensor topk_decode(const torch::Tensor& values, const torch::Tensor& indices, const torch::Tensor& W_dec);

/// The sparse code as a dense [batch, d_sae] tensor (for metrics and analysis).
torch::Tensor topk_to_dense(const TopKCode& code, int64_t d_sae);

}  // namespace saelab
