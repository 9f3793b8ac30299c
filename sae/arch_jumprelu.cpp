// jumprelu (Rajamanoharan et al. 2024b, Gemma Scope): f = π · H(π − θ) with θ = exp(log_threshold)
// per latent, straight-through rectangle-kernel gradients of bandwidth ε. Penalty: λ · L0 through
// the step's pseudo-gradient (Gemma Scope), or λ Σ_i tanh(c · f_i ‖W_dec,i‖) (Anthropic, January
// 2025, as SAELens computes it: the tanh of the JumpReLU output, so its gradient reaches θ through
// the pseudo-derivative and π through active latents). Anthropic's pre-activation loss
// λ_P Σ_i ReLU(θ_i − π_i) ‖W_dec,i‖ on dead latents.
#include "sae/architecture.h"

#include <ATen/ExpandUtils.h>

#include <cmath>

namespace saelab {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Rectangle kernel K(u) = 1[|u| < 1/2] (Rajamanoharan et al. 2024b, straight-through estimators).
torch::Tensor rectangle(const torch::Tensor& u) { return (u.abs() < 0.5).to(u.dtype()); }

// JumpReLU_θ(z) = z · H(z − θ). Gradient to z: H(z − θ); to θ (pseudo-derivative):
// ∂/∂θ = −(θ / ε) · K((z − θ) / ε).
class JumpReluFn : public torch::autograd::Function<JumpReluFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& z, const torch::Tensor& theta, double eps) {
    ctx->save_for_backward({z, theta});
    ctx->saved_data["eps"] = eps;
    return z * (z > theta).to(z.dtype());
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const torch::Tensor &z = s[0], &theta = s[1];
    const double eps = ctx->saved_data["eps"].toDouble();
    const torch::Tensor& g = grads[0];
    const torch::Tensor grad_z = g * (z > theta).to(g.dtype());
    // summed over the batch for a per-latent θ [d_sae]; as is for θ gathered per entry [batch, k']
    const torch::Tensor grad_theta = at::sum_to(g * (-theta / eps) * rectangle((z - theta) / eps), theta.sizes());
    return {grad_z, grad_theta, torch::Tensor()};
  }
};

// Step H(z − θ), for the L0 penalty. Gradient to z: 0; to θ: −(1 / ε) · K((z − θ) / ε).
class StepFn : public torch::autograd::Function<StepFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& z, const torch::Tensor& theta, double eps) {
    ctx->save_for_backward({z, theta});
    ctx->saved_data["eps"] = eps;
    return (z > theta).to(z.dtype());
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const torch::Tensor &z = s[0], &theta = s[1];
    const double eps = ctx->saved_data["eps"].toDouble();
    const torch::Tensor grad_theta = at::sum_to(grads[0] * (-1.0 / eps) * rectangle((z - theta) / eps), theta.sizes());
    return {torch::zeros_like(z), grad_theta, torch::Tensor()};
  }
};

// The identity on x̂ that gives θ the gradient of the band entries θ − ε/2 < π ≤ θ (f = 0):
// JumpReluFn's −(θ_i / ε) · ∂L/∂f_{r,i} there, with ∂L/∂f_{r,i} = ∂L/∂x̂_r · W_dec,i (the
// reconstruction's part; the penalty's is band_slope's). band [batch, d_sae] uint8.
class BandFn : public torch::autograd::Function<BandFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_hat, const torch::Tensor& theta,
                               const torch::Tensor& W_dec, const torch::Tensor& band, double eps) {
    ctx->save_for_backward({theta, W_dec, band});
    ctx->saved_data["eps"] = eps;
    return x_hat.clone();
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const torch::Tensor &theta = s[0], &W_dec = s[1], &band = s[2];
    const double eps = ctx->saved_data["eps"].toDouble();
    const torch::Tensor grad_theta = band_dots(grads[0], W_dec, band) * (-theta.detach() / eps);
    return {grads[0], grad_theta, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

class JumpRelu final : public ArchitectureRules {
 public:
  Architecture id() const override { return Architecture::kJumpReLU; }
  const char* name() const override { return "jumprelu"; }
  bool has_threshold() const override { return true; }
  double adam_beta1() const override { return 0.0; }

  void add_shapes(const SaeConfig& c, TensorShapes& shapes) const override {
    shapes["b_enc"] = {c.d_sae};
    shapes["threshold"] = {c.d_sae};
  }

  void init(Sae& s) const override {
    ArchitectureRules::init(s);
    const SaeConfig& c = s.config();
    params(s)["log_threshold"] = torch::full({c.d_sae}, std::log(c.jumprelu_init_threshold), torch::kFloat32);
  }

  void load_threshold(Sae& s, const torch::Tensor& t, const std::string& where) const override {
    // A threshold of 0 is a ReLU for that latent (SAELens starts BatchTopK thresholds there):
    // log 0 = −inf, and exp(−inf) gives the 0 back exactly.
    TORCH_CHECK((t >= 0).all().item<bool>(), where, ": jumprelu thresholds must be >= 0 (a negative one acts as 0 "
                "after the ReLU; the loaders clamp it)");
    params(s)["log_threshold"] = t.log().requires_grad_(true);
  }

  torch::Tensor threshold(const Sae& s) const override { return p(s, "log_threshold").detach().exp(); }

  torch::Tensor encode(const Sae& s, const torch::Tensor& x) const override {
    const torch::Tensor pre = affine(s, x, p(s, "W_enc"), p(s, "b_enc"));
    const torch::Tensor theta = threshold(s);
    return pre * (pre > theta).to(pre.dtype());
  }

  void forward(Sae& s, const CoderBatch& b, SaeOutput& o) const override {
    const SaeConfig& c = s.config();
    const double eps = c.jumprelu_bandwidth;
    const torch::Tensor theta = p(s, "log_threshold").exp();
    // Sparse while no row has more than the cap of latents above θ − ε/2, where the rectangle
    // kernel of θ's pseudo-gradient starts: the window's entries below θ (f = 0) are gathered with
    // the code. A wide window (tanh's ε = 2) would make every code dense, so then only the active
    // latents (above θ) are gathered and the band θ − ε/2 < π ≤ θ is marked: it gives θ its
    // gradient through BandFn and band_slope (one more GEMM-sized product, not a dense step).
    ThresholdCode sel = sparse_candidates(s, b.x, p(s, "b_enc"), theta.detach() - eps / 2);
    if (!sel.defined()) sel = sparse_candidates(s, b.x, p(s, "b_enc"), theta.detach(), theta.detach() - eps / 2);
    if (split_rows(s, b, sel, o)) return;
    if (sel.defined()) {
      sparse_forward(s, b, theta, sel, o);
      return;
    }
    const torch::Tensor& W_dec = p(s, "W_dec");
    const torch::Tensor pre = affine(s, b.x, p(s, "W_enc"), p(s, "b_enc"));
    o.features = JumpReluFn::apply(pre, theta, eps);
    o.x_hat = torch::matmul(o.features, W_dec) + b.base;
    const torch::Tensor dec_norm = W_dec.norm(2, {1});
    if (c.jumprelu_sparsity == JumpReluSparsity::kStep) {
      o.sparsity = b.l1 * StepFn::apply(pre, theta, eps).sum(-1).mean();
    } else {
      o.sparsity = b.l1 * torch::tanh(c.jumprelu_tanh_scale * o.features * dec_norm).sum(-1).mean();
    }
    if (c.pre_act_loss_coefficient > 0 && b.any_dead()) {
      const torch::Tensor mask = b.dead.to(pre.dtype());
      o.aux = c.pre_act_loss_coefficient * (torch::relu(theta - pre) * (mask * dec_norm)).sum(-1).mean();
    }
  }

 private:
  void sparse_forward(Sae& s, const CoderBatch& b, const torch::Tensor& theta, const ThresholdCode& sel,
                      SaeOutput& o) const {
    const SaeConfig& c = s.config();
    const double eps = c.jumprelu_bandwidth;
    const torch::Tensor& W_enc = p(s, "W_enc");
    const torch::Tensor& W_dec = p(s, "W_dec");
    const torch::Tensor& b_enc = p(s, "b_enc");
    const torch::Tensor& latents = sel.indices;
    const torch::Tensor dec_norms = row_norms(W_dec, dec_grad(s));  // gradient as a norm term, no dense matrix
    const torch::Tensor dec_norm = at_latents(dec_norms, latents);
    const torch::Tensor valid = sel.valid.to(b.x.dtype());
    const torch::Tensor z = gathered_encode(b.x, W_enc, b_enc, latents, sel.pre, centre(s), enc_grad(s), /*relu=*/false);
    const torch::Tensor th = at_latents(theta, latents);
    const torch::Tensor f = JumpReluFn::apply(z, th, eps) * valid;
    o.x_hat = topk_decode(f, latents, W_dec, dec_grad(s));
    if (sel.band.defined()) o.x_hat = BandFn::apply(o.x_hat, theta, W_dec.detach(), sel.band, eps);
    o.x_hat = o.x_hat + b.base;
    if (c.jumprelu_sparsity == JumpReluSparsity::kStep) {
      o.sparsity = b.l1 * (StepFn::apply(z, th, eps) * valid).sum(-1).mean();
    } else {
      o.sparsity = b.l1 * torch::tanh(c.jumprelu_tanh_scale * f * dec_norm).sum(-1).mean();
    }
    if (sel.band.defined()) {
      // The penalty's ∂/∂f at the band's entries (f = 0): λ/B per entry for step (StepFn's
      // kernel), λ c ‖W_dec,i‖ / B for tanh; times the pseudo-derivative −1/ε (step) or −θ_i/ε
      // (JumpReluFn). Added as a term of value 0 exactly and gradient λ · band_slope to θ.
      const double rows = static_cast<double>(b.x.size(0));
      const torch::Tensor in_band = sel.band.sum(0, false, b.x.scalar_type());
      const torch::Tensor band_slope =
          c.jumprelu_sparsity == JumpReluSparsity::kStep
              ? in_band * (-1.0 / (eps * rows))
              : in_band * dec_norms.detach() * theta.detach() * (-c.jumprelu_tanh_scale / (eps * rows));
      const torch::Tensor band_term = (theta * band_slope).sum();
      o.sparsity = o.sparsity + b.l1 * (band_term - band_term.detach());
    }
    if (c.pre_act_loss_coefficient > 0 && b.any_dead()) {
      // λ_P Σ_{i dead} ReLU(θ_i − π_i) ‖W_dec,i‖ over every row: the dead latents' pre-activations
      // (one small GEMM), differentiable through the gathered kernel when there are few of them.
      const torch::Tensor dead_idx = b.dead.nonzero().squeeze(1);
      const int64_t B = b.x.size(0), n = dead_idx.size(0);
      const torch::Tensor th_dead = theta.index_select(0, dead_idx).unsqueeze(0);
      const torch::Tensor norm_dead = dec_norms.index_select(0, dead_idx).unsqueeze(0);
      torch::Tensor pre_dead;
      if (n <= sparse_code_cap(s)) {
        torch::Tensor pre0, idx;
        {
          torch::NoGradGuard g;
          pre0 = torch::matmul(centred(s, b.x), W_enc.index_select(1, dead_idx)) + b_enc.index_select(0, dead_idx);
          idx = dead_idx.unsqueeze(0).expand({B, n}).contiguous();
        }
        pre_dead = gathered_encode(b.x, W_enc, b_enc, idx, pre0, centre(s), enc_grad(s), /*relu=*/false);
      } else {
        pre_dead = affine(s, b.x, W_enc.index_select(1, dead_idx), b_enc.index_select(0, dead_idx));
      }
      o.aux = c.pre_act_loss_coefficient * (torch::relu(th_dead - pre_dead) * norm_dead).sum(-1).mean();
    }
    o.code_values = f;
    o.code_indices = latents;
  }
};

}  // namespace

const ArchitectureRules& jumprelu_architecture() {
  static const JumpRelu rules;
  return rules;
}

}  // namespace saelab
