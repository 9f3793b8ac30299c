// Factored gradients of an SAE's two big matrices, and the optimizer update that consumes them.
//
// In a TopK step only the latents a row selected carry gradient, so ∂L/∂W_dec and ∂L/∂W_enc are
// sums of a few outer products: G = Σ_e value_e · e_{latent_e} ⊗ M[row_e] (M is the error for the
// decoder, the centred input for the encoder). The kernels in topk_kernels.h record those terms in
// a SparseGrad instead of filling a dense [d_sae, d_in] gradient, and `fused_sparse_adam` builds
// each latent's gradient in a small buffer, removes its parallel component, clips and applies
// Adam to that latent's row (W_dec) or column (W_enc) at once. No dense gradient, transposed copy
// or gradient-sized temporary is ever made: the memory of a step is the weights and Adam's state.
// The arithmetic is the plain update's (Adam as torch::optim::Adam without weight decay, clipping
// as torch::nn::utils::clip_grad_norm_); only summation orders differ.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace saelab {

/// Which way a latent-indexed matrix is laid out: W_dec [d_sae, d] has a latent per row, W_enc
/// [d, d_sae] a latent per column.
enum class LatentAxis { kRows, kColumns };

class SparseGrad {
 public:
  struct Term {
    torch::Tensor values;   // [n] coefficients
    torch::Tensor latents;  // [n] int64 latent of each entry, ascending
    torch::Tensor rows;     // [n] int64 row of M of each entry
    torch::Tensor offsets;  // [L + 1] int64: latent i's entries are offsets[i] … offsets[i + 1] (i < L, the last latent named + 1)
    torch::Tensor M;        // [m, d] contiguous
  };

  /// Adds Σ_e values[e] · e_{latents[e]} ⊗ M[rows[e]]; entries with value 0 are dropped.
  void add(const torch::Tensor& values, const torch::Tensor& latents, const torch::Tensor& rows, const torch::Tensor& M);
  /// The same for a [batch, k] code: entry (b, j) has latent indices[b, j] and row b.
  void add_code(const torch::Tensor& values, const torch::Tensor& indices, const torch::Tensor& M);
  /// Adds Σ_i scale[i] · e_i ⊗ W_i, W_i the parameter's own latent i (a row: for W_dec only): the
  /// gradient of a penalty on the decoder rows' norms, ∂‖W_i‖/∂W_i = W_i / ‖W_i‖. Accumulates.
  void add_self(const torch::Tensor& scale);
  bool empty() const { return terms_.empty() && !self_.defined(); }
  void clear() {
    terms_.clear();
    self_ = torch::Tensor();
  }
  const std::vector<Term>& terms() const { return terms_; }
  /// The add_self coefficients [d_sae], or undefined.
  const torch::Tensor& self_scale() const { return self_; }
  /// The gradient as a dense [d_sae, d] matrix (latent-major; transpose it for W_enc). `param`
  /// (latent-major, [d_sae, d]) is needed when add_self was used.
  torch::Tensor dense(int64_t d_sae, const torch::Tensor& param = {}) const;

 private:
  std::vector<Term> terms_;
  torch::Tensor self_;
};

/// The recorded gradients of one SAE's W_enc and W_dec (shared by the copies of an Sae).
struct SparseGradSinks {
  SparseGrad W_enc, W_dec;
};

/// Adam's hyper-parameters and bias corrections for one step.
struct AdamStep {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float step_size = 0;     // lr / (1 − β1ᵗ)
  float inv_sqrt_bc2 = 1;  // 1 / sqrt(1 − β2ᵗ)
};

/// Adam on n contiguous elements with gradient scale · g: m ← β1 m + (1 − β1) g,
/// v ← β2 v + (1 − β2) g², p ← p − step_size · m / (sqrt(v) · inv_sqrt_bc2 + ε), the formula of
/// torch::optim::Adam without weight decay.
void adam_span(float* p, float* m, float* v, const float* g, float scale, int64_t n, const AdamStep& adam);

/// Σ‖g_i‖² of the gradient `grad` of `param` (float32, contiguous, latents along `axis`), where g_i
/// is latent i's gradient with its component along param's row i removed when `remove_parallel`
/// (unit-norm decoders).
double sparse_grad_norm_sq(const torch::Tensor& param, const SparseGrad& grad, LatentAxis axis, bool remove_parallel);

/// One Adam step of `param` with gradient clip_scale · g (g as above), using and updating the
/// state tensors m and v (shaped like param). `renormalise` rescales every row to unit norm
/// afterwards (rows must be latents).
void fused_sparse_adam(torch::Tensor& param, const SparseGrad& grad, LatentAxis axis, bool remove_parallel,
                       double clip_scale, torch::Tensor& m, torch::Tensor& v, const AdamStep& adam, bool renormalise);

}  // namespace saelab
