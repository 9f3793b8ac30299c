// gated (Rajamanoharan et al. 2024): π_gate = (x − b_dec) W_enc + b_gate,
// π_mag = (x − b_dec)(W_enc ⊙ exp(r_mag)) + b_mag, f = 1[π_gate > 0] · ReLU(π_mag). Penalty
// λ Σ_i ReLU(π_gate)_i ‖W_dec,i‖, and an auxiliary reconstruction from ReLU(π_gate) through a
// detached decoder.
#include "sae/architecture.h"

namespace saelab {
namespace {

class Gated final : public ArchitectureRules {
 public:
  Architecture id() const override { return Architecture::kGated; }
  const char* name() const override { return "gated"; }
  double adam_beta1() const override { return 0.0; }

  void add_shapes(const SaeConfig& c, TensorShapes& shapes) const override {
    for (const char* n : {"b_gate", "b_mag", "r_mag"}) shapes[n] = {c.d_sae};
  }

  void init(Sae& s) const override {
    for (const char* n : {"b_gate", "b_mag", "r_mag"}) params(s)[n] = torch::zeros({s.config().d_sae});
  }

  void centre_encoder_biases(Sae& s, const torch::Tensor& centre) const override {
    torch::NoGradGuard g;
    const torch::Tensor& W_enc = p(s, "W_enc");
    params(s).at("b_gate").copy_(-torch::mv(W_enc.t(), centre));
    params(s).at("b_mag").copy_(-torch::mv((W_enc * p(s, "r_mag").exp()).t(), centre));
  }

  torch::Tensor encode(const Sae& s, const torch::Tensor& x) const override {
    const torch::Tensor gate = affine(s, x, p(s, "W_enc"), p(s, "b_gate"));
    return (gate > 0).to(gate.dtype()) * torch::relu(magnitude(s, gate));
  }

  // π_mag from π_gate: the two share the product (x − b_dec) W_enc, so one GEMM (and one GEMM
  // of W_enc's gradient) serves both: π_mag = (π_gate − b_gate) ⊙ exp(r_mag) + b_mag.
  static torch::Tensor magnitude(const Sae& s, const torch::Tensor& gate) {
    return (gate - p(s, "b_gate")) * p(s, "r_mag").exp() + p(s, "b_mag");
  }

  void forward(Sae& s, const CoderBatch& b, SaeOutput& o) const override {
    const torch::Tensor& W_enc = p(s, "W_enc");
    const torch::Tensor& W_dec = p(s, "W_dec");
    const torch::Tensor& b_gate = p(s, "b_gate");
    // Sparse while no row has more than the cap of open gates.
    const ThresholdCode sel = sparse_candidates(s, b.x, b_gate, torch::zeros({s.config().d_sae}, b.x.options()));
    if (split_rows(s, b, sel, o)) return;
    if (sel.defined()) {
      const torch::Tensor& latents = sel.indices;
      const torch::Tensor dec_norm = at_latents(row_norms(W_dec, dec_grad(s)), latents);
      // ReLU(π_gate) at the open gates; π_mag from the same (x − b_dec) W_enc column: z · exp(r_mag) + b_mag.
      const torch::Tensor gate = gathered_encode(b.x, W_enc, b_gate, latents, sel.pre, centre(s), enc_grad(s));
      const torch::Tensor z = gate - at_latents(b_gate, latents);
      const torch::Tensor mag = z * at_latents(p(s, "r_mag").exp(), latents) + at_latents(p(s, "b_mag"), latents);
      const torch::Tensor f = sel.valid.to(mag.dtype()) * torch::relu(mag);
      o.x_hat = topk_decode(f, latents, W_dec, dec_grad(s)) + b.base;
      o.sparsity = b.l1 * (gate * dec_norm).sum(-1).mean();
      o.aux = squared_error(b.y, topk_decode(gate, latents, W_dec.detach()) + b.base.detach());
      o.code_values = f;
      o.code_indices = latents;
      return;
    }
    const torch::Tensor gate = affine(s, b.x, W_enc, b_gate);
    const torch::Tensor mag = magnitude(s, gate);
    o.features = (gate > 0).to(mag.dtype()) * torch::relu(mag);
    o.x_hat = torch::matmul(o.features, W_dec) + b.base;
    const torch::Tensor gate_relu = torch::relu(gate);
    o.sparsity = b.l1 * torch::mv(gate_relu, W_dec.norm(2, {1})).mean();
    // No gradient reaches W_dec or b_dec from the auxiliary term.
    o.aux = squared_error(b.y, torch::matmul(gate_relu, W_dec.detach()) + b.base.detach());
  }
};

}  // namespace

const ArchitectureRules& gated_architecture() {
  static const Gated rules;
  return rules;
}

}  // namespace saelab
