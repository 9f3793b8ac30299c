// standard: f = ReLU((x − b_dec) W_enc + b_enc), penalty λ Σ_i f_i ‖W_dec,i‖ (Anthropic's April 2024
// update of the ReLU-L1 SAE).
#include "sae/architecture.h"

namespace saelab {
namespace {

class Standard final : public ArchitectureRules {
 public:
  Architecture id() const override { return Architecture::kStandard; }
  const char* name() const override { return "standard"; }
  bool unit_norm_decoder() const override { return false; }

  void fold_decoder_norms(std::map<std::string, torch::Tensor>& p) const override {
    // f_i ‖W_dec,i‖ with W_dec,i / ‖W_dec,i‖: a ReLU code scales with its pre-activation, so the
    // norm moves into W_enc's column and b_enc. A zero row (a latent that decodes to nothing) stays.
    const torch::Tensor n = p["W_dec"].norm(2, {1});
    const torch::Tensor safe = torch::where(n > 0, n, torch::ones_like(n));
    p["W_enc"] = p["W_enc"] * safe;
    p["b_enc"] = p["b_enc"] * safe;
    p["W_dec"] = p["W_dec"] / safe.unsqueeze(1);
  }

  torch::Tensor encode(const Sae& s, const torch::Tensor& x) const override {
    return torch::relu(affine(s, x, p(s, "W_enc"), p(s, "b_enc")));
  }

  void forward(Sae& s, const CoderBatch& b, SaeOutput& o) const override {
    const torch::Tensor& W_enc = p(s, "W_enc");
    const torch::Tensor& W_dec = p(s, "W_dec");
    const torch::Tensor& b_enc = p(s, "b_enc");
    // Sparse while no row has more than the cap of positive pre-activations.
    const ThresholdCode sel = sparse_candidates(s, b.x, b_enc, torch::zeros({s.config().d_sae}, b.x.options()));
    if (split_rows(s, b, sel, o)) return;
    if (sel.defined()) {
      const torch::Tensor& latents = sel.indices;
      const torch::Tensor dec_norm = at_latents(row_norms(W_dec, dec_grad(s)), latents);
      // the positive pre-activations (padding: 0, no gradient)
      const torch::Tensor f = gathered_encode(b.x, W_enc, b_enc, latents, sel.pre, centre(s), enc_grad(s));
      o.x_hat = topk_decode(f, latents, W_dec, dec_grad(s)) + b.base;
      o.sparsity = b.l1 * (f * dec_norm).sum(-1).mean();
      o.code_values = f;
      o.code_indices = latents;
      return;
    }
    o.features = torch::relu(affine(s, b.x, W_enc, b_enc));
    o.x_hat = torch::matmul(o.features, W_dec) + b.base;
    o.sparsity = b.l1 * torch::mv(o.features, W_dec.norm(2, {1})).mean();
  }
};

}  // namespace

const ArchitectureRules& standard_architecture() {
  static const Standard rules;
  return rules;
}

}  // namespace saelab
