// Sparse kernels for TopK SAEs: the encoder computes the full pre-activation product once, but the
// backward pass and the decoder touch only the k active latents per row, so a training step costs
// about one dense GEMM plus O(batch * k * d_in). Both are custom autograd functions, checked against
// dense float64 autograd in the tests.
//
// Every kernel takes an optional SparseGrad (sae/sparse_grad.h) for its big matrix: without one the
// gradient lands in .grad as a dense matrix, as autograd does; with one it is recorded there as
// factored terms and .grad stays undefined, for the trainer's fused update.
#pragma once
#include <torch/torch.h>

#include "sae/sparse_grad.h"

namespace saelab {

struct TopKCode {
  torch::Tensor values;   // [batch, k] ReLU of the k largest pre-activations (differentiable)
  torch::Tensor indices;  // [batch, k] int64 latent indices
};

/// values, indices = top-k over latents of ReLU((x − b_dec) W_enc + b_enc).
/// x [batch, d_in], W_enc [d_in, d_sae], b_enc [d_sae], b_dec [d_in] or undefined (no centring).
/// Gradients flow to x, W_enc, b_enc and b_dec through the k selected entries only; b_dec's is
/// −W_enc · ∂L/∂b_enc, one matrix-vector product.
TopKCode topk_encode(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b_enc, int64_t k,
                     const torch::Tensor& b_dec = {}, SparseGrad* W_enc_grad = nullptr);

/// BatchTopK: the `total` largest ReLU pre-activations over the whole batch. Rows are padded to the
/// fullest row's count; padding has value 0 (and no gradient), so topk_decode can take the code.
TopKCode batch_topk_encode(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b_enc,
                           int64_t total, const torch::Tensor& b_dec = {}, SparseGrad* W_enc_grad = nullptr);

/// BatchTopK's selection (sae/batch_select.cpp): the `total` largest positive entries of pre
/// [rows, n] (every positive one when there are fewer), each row's in column order, padded to the
/// fullest row's count with value 0 at latent 0 (valid false). Of entries equal to the smallest
/// kept value, the first in row-major order are kept. No gradient.
struct BatchSelection {
  torch::Tensor values, indices, valid;
};
BatchSelection batch_select(const torch::Tensor& pre, int64_t total);

/// ReLU(pre) [batch, k] for pre-activations `pre` = ((x − b_dec) W_enc + b_enc) at `indices`, already
/// computed by the caller without gradient (e.g. AuxK's selection among dead latents), made
/// differentiable as topk_encode's code is.
/// With relu false the code is the pre-activations themselves (JumpReLU's entries below threshold
/// carry gradient to it) and the gradient reaches every entry.
torch::Tensor gathered_encode(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b_enc,
                              const torch::Tensor& indices, const torch::Tensor& pre, const torch::Tensor& b_dec = {},
                              SparseGrad* W_enc_grad = nullptr, bool relu = true);

/// The entries of pre = (x − b_dec) W_enc + b [batch, d_sae] strictly above floor [d_sae], per
/// row (sae/threshold_select.cpp): the code of a ReLU-type SAE once it is sparse. Computed in
/// column blocks without the [batch, d_sae] matrix. `pre` and `indices` are [batch, k'] (k' the
/// fullest row's count, at least 1; padding has pre 0 at latent 0 and valid false). Undefined
/// tensors when more than `max_overflow` rows have more than `cap` entries (the caller takes its
/// dense path). No gradient (gathered_encode makes it differentiable).
/// With `band_floor` [d_sae] (below floor) also `band` [batch, d_sae] uint8: 1 where band_floor <
/// pre ≤ floor, the entries left out of the code that still carry a gradient (JumpReLU's θ).
/// Up to `max_overflow` rows may pass the cap: they are listed in `overflow` (ascending; undefined
/// when none) and hold an empty code (every entry invalid), for the caller to take densely.
struct ThresholdCode {
  torch::Tensor pre, indices, valid;
  torch::Tensor band;
  torch::Tensor overflow;
  bool defined() const { return pre.defined(); }
};
ThresholdCode threshold_select(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b,
                               const torch::Tensor& floor, int64_t cap, const torch::Tensor& b_dec = {},
                               const torch::Tensor& band_floor = {}, int64_t max_overflow = 0);

/// Σ_r band[r, i] (g_r · W[i]) for every latent i: g [batch, d], W [d_sae, d], band [batch, d_sae]
/// uint8. One GEMM's work, done in column blocks without a [batch, d_sae] float matrix.
torch::Tensor band_dots(const torch::Tensor& g, const torch::Tensor& W, const torch::Tensor& band);

/// The k largest entries of each row of pre [rows, n], sorted descending, ties in column order:
/// (values, indices) as torch::topk(k, 1) gives them.
std::tuple<torch::Tensor, torch::Tensor> row_topk(const torch::Tensor& pre, int64_t k);

/// Columns of the pre-activations computed at once by the blocked kernels: a [batch, block] block
/// near 2^23 values (32 MB for float32) stays in the last-level cache between the GEMM that writes
/// it and the selection that reads it.
int64_t encoder_block(int64_t batch);

/// ‖W_dec,i‖ [d_sae], with the gradient recorded as SparseGrad::add_self in `sink` when there is
/// one (no dense [d_sae, d_in] gradient), else to W_dec's .grad.
torch::Tensor row_norms(const torch::Tensor& W_dec, SparseGrad* sink = nullptr);

/// out[b] = sum_j values[b, j] * W_dec[indices[b, j]]  →  [batch, d_in]  (no bias).
/// W_dec [d_sae, d_in]. Gradients flow to values and W_dec (rows that were used only).
torch::Tensor topk_decode(const torch::Tensor& values, const torch::Tensor& indices, const torch::Tensor& W_dec,
                          SparseGrad* W_dec_grad = nullptr);

/// The sparse code as a dense [batch, d_sae] tensor (for metrics and analysis).
torch::Tensor topk_to_dense(const TopKCode& code, int64_t d_sae);

}  // namespace saelab
