#include "sae/sae.h"

#include <ATen/ExpandUtils.h>

#include <cmath>
#include <limits>

#include "sae/topk_kernels.h"

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

torch::Tensor squared_error(const torch::Tensor& x, const torch::Tensor& x_hat) {
  return (x - x_hat).pow(2).sum(-1).mean();
}

}  // namespace

Architecture parse_architecture(const std::string& name) {
  for (Architecture a : {Architecture::kStandard, Architecture::kGated, Architecture::kTopK, Architecture::kBatchTopK,
                         Architecture::kMatryoshkaBatchTopK, Architecture::kJumpReLU}) {
    if (name == architecture_name(a)) return a;
  }
  TORCH_CHECK(false, "architecture must be standard, gated, topk, batchtopk, matryoshka_batchtopk or jumprelu (got '",
              name, "')");
}

const char* architecture_name(Architecture a) {
  switch (a) {
    case Architecture::kStandard: return "standard";
    case Architecture::kGated: return "gated";
    case Architecture::kTopK: return "topk";
    case Architecture::kBatchTopK: return "batchtopk";
    case Architecture::kMatryoshkaBatchTopK: return "matryoshka_batchtopk";
    case Architecture::kJumpReLU: return "jumprelu";
  }
  TORCH_CHECK(false, "unknown architecture ", static_cast<int>(a));
}

bool uses_k(Architecture a) { return a == Architecture::kTopK || uses_batch_topk(a); }

bool uses_batch_topk(Architecture a) {
  return a == Architecture::kBatchTopK || a == Architecture::kMatryoshkaBatchTopK;
}

JumpReluSparsity parse_jumprelu_sparsity(const std::string& name) {
  if (name == "step") return JumpReluSparsity::kStep;
  if (name == "tanh") return JumpReluSparsity::kTanh;
  TORCH_CHECK(false, "jumprelu_sparsity must be step or tanh (got '", name, "')");
}

const char* jumprelu_sparsity_name(JumpReluSparsity s) { return s == JumpReluSparsity::kStep ? "step" : "tanh"; }

double default_jumprelu_bandwidth(JumpReluSparsity s) { return s == JumpReluSparsity::kStep ? 0.05 : 2.0; }

void SaeConfig::validate() const {
  architecture_name(architecture);
  TORCH_CHECK(d_in > 0, "d_in must be positive (got ", d_in, ")");
  TORCH_CHECK(d_sae > 0, "d_sae must be positive (got ", d_sae, ")");
  TORCH_CHECK(d_out >= 0, "d_out must be >= 0 (got ", d_out, "; 0 means d_in)");
  TORCH_CHECK(!apply_b_dec_to_input || out_width() == d_in, "apply_b_dec_to_input needs d_out = d_in (got d_in ", d_in,
              ", d_out ", d_out, "); a transcoder does not subtract b_dec from its input");
  if (uses_k(architecture)) {
    TORCH_CHECK(k > 0 && k <= d_sae, "k must be in 1..d_sae (got ", k, ")");
  }
  TORCH_CHECK(jumprelu_bandwidth > 0, "jumprelu_bandwidth must be positive (got ", jumprelu_bandwidth, ")");
  TORCH_CHECK(aux_k >= 0, "aux_k must be >= 0 (got ", aux_k, ")");
  TORCH_CHECK(jumprelu_tanh_scale > 0, "jumprelu_tanh_scale must be positive (got ", jumprelu_tanh_scale, ")");
  TORCH_CHECK(pre_act_loss_coefficient >= 0, "pre_act_loss_coefficient must be >= 0 (got ", pre_act_loss_coefficient, ")");
  if (architecture == Architecture::kMatryoshkaBatchTopK) {
    TORCH_CHECK(!matryoshka_widths.empty(), "matryoshka_widths must list the nested widths (the last one d_sae)");
    TORCH_CHECK(matryoshka_widths.back() == d_sae, "the last matryoshka width must be d_sae ", d_sae, " (got ",
                matryoshka_widths.back(), ")");
    TORCH_CHECK(matryoshka_widths.front() >= k, "the smallest matryoshka width ", matryoshka_widths.front(),
                " is below k ", k);
    for (size_t i = 1; i < matryoshka_widths.size(); ++i) {
      TORCH_CHECK(matryoshka_widths[i] > matryoshka_widths[i - 1], "matryoshka_widths must be strictly increasing (",
                  matryoshka_widths[i - 1], " then ", matryoshka_widths[i], ")");
    }
  }
}

std::map<std::string, std::vector<int64_t>> sae_shapes(const SaeConfig& c) {
  std::map<std::string, std::vector<int64_t>> s = {
      {"W_enc", {c.d_in, c.d_sae}}, {"W_dec", {c.d_sae, c.out_width()}}, {"b_dec", {c.out_width()}}};
  if (c.skip) s["W_skip"] = {c.out_width(), c.d_in};
  if (c.architecture == Architecture::kGated) {
    s["b_gate"] = {c.d_sae};
    s["b_mag"] = {c.d_sae};
    s["r_mag"] = {c.d_sae};
  } else {
    s["b_enc"] = {c.d_sae};
  }
  if (c.architecture == Architecture::kJumpReLU || uses_batch_topk(c.architecture)) s["threshold"] = {c.d_sae};
  return s;
}

void Sae::set_sparse_gradients(bool on) {
  if (!on) {
    sinks_.reset();
  } else if (!sinks_) {
    sinks_ = std::make_shared<SparseGradSinks>();
  }
}

CentredSquares centred_squares(const torch::Tensor& x, const std::function<void(torch::Tensor&)>& sum) {
  torch::NoGradGuard g;
  const torch::Tensor xd = x.detach().to(torch::kFloat64);
  if (!sum) return {(xd - xd.mean(0)).pow(2).sum().item<double>(), static_cast<double>(x.size(0))};
  // Σ‖x − x̄‖² = Σ‖x‖² − ‖Σx‖² / n, from sums that add over the replicas.
  const int64_t d = x.size(1);
  torch::Tensor m = torch::cat({xd.sum(0), xd.pow(2).sum().reshape({1}),
                                torch::full({1}, static_cast<double>(x.size(0)), torch::kFloat64)});
  sum(m);
  const double rows = m[d + 1].item<double>();
  return {m[d].item<double>() - m.narrow(0, 0, d).pow(2).sum().item<double>() / std::max(1.0, rows), rows};
}

Sae::Sae(const SaeConfig& config, uint64_t seed) : config_(config) {
  config_.validate();
  torch::manual_seed(seed);
  const int64_t d_in = config_.d_in, d_sae = config_.d_sae, d_out = config_.out_width();
  torch::Tensor W_dec = torch::randn({d_sae, d_out});
  W_dec = W_dec / W_dec.norm(2, {1}, true);  // unit-norm rows
  p_["W_dec"] = W_dec;
  if (config_.apply_b_dec_to_input) {
    p_["W_enc"] = W_dec.t().contiguous();  // an SAE: the decoder's transpose, so x̂ starts near x
  } else {
    // A transcoder: its decoder starts unrelated to its target, and with unit-norm encoder columns
    // the k codes of ~2–3 (in normalised units) would decode to noise as large as the target (FVU
    // ≈ 2). Columns of norm 0.1 start the prediction at about b_dec (FVU ≈ 1), as sparsify's zero
    // decoder does, while every decoder row keeps the unit norm the trainer maintains.
    torch::Tensor W_enc = torch::randn({d_in, d_sae});
    p_["W_enc"] = 0.1 * W_enc / W_enc.norm(2, {0}, true);
  }
  p_["b_dec"] = torch::zeros({d_out});
  if (config_.skip) p_["W_skip"] = torch::zeros({d_out, d_in});
  if (config_.architecture == Architecture::kGated) {
    p_["b_gate"] = torch::zeros({d_sae});
    p_["b_mag"] = torch::zeros({d_sae});
    p_["r_mag"] = torch::zeros({d_sae});
  } else {
    p_["b_enc"] = torch::zeros({d_sae});
  }
  if (config_.architecture == Architecture::kJumpReLU) {
    p_["log_threshold"] = torch::full({d_sae}, std::log(config_.jumprelu_init_threshold), torch::kFloat32);
  }
  if (uses_batch_topk(config_.architecture)) batchtopk_threshold_ = torch::full({}, -1.0);  // unset
  for (auto& [name, t] : p_) t.requires_grad_(true);
}

Sae::Sae(const SaeConfig& config, std::map<std::string, torch::Tensor> params, const std::string& where)
    : config_(config) {
  config_.validate();
  const auto shapes = sae_shapes(config_);
  // A batchtopk SAE that has not seen a batch yet has no threshold estimate. It is made only once
  // the stored tensors match cfg.json: a 100-byte folder claiming a huge d_sae allocates nothing.
  const bool no_threshold = uses_batch_topk(config_.architecture) && params.count("threshold") == 0;
  for (const auto& [name, shape] : shapes) {
    if (no_threshold && name == "threshold") continue;
    auto it = params.find(name);
    TORCH_CHECK(it != params.end(), where, ": tensor '", name, "' is missing for a ", architecture_name(config_.architecture), " SAE");
    TORCH_CHECK(it->second.is_floating_point(), where, ": tensor '", name, "' has dtype ", it->second.dtype(),
                "; SAE weights must be floating point (float32, float16, bfloat16 or float64)");
    TORCH_CHECK(it->second.sizes().vec() == shape, where, ": tensor '", name, "' has shape ", it->second.sizes(),
                " but cfg.json (d_in ", config_.d_in, ", d_sae ", config_.d_sae,
                config_.out_width() != config_.d_in ? ", d_out " + std::to_string(config_.out_width()) : std::string(),
                ") needs ", c10::IntArrayRef(shape));
  }
  if (no_threshold) params["threshold"] = torch::full({config_.d_sae}, -1.0);
  for (const auto& [name, shape] : shapes) {
    torch::Tensor t = params.at(name).to(torch::kFloat32).contiguous();
    TORCH_CHECK(torch::isfinite(t).all().item<bool>(), where, ": tensor '", name, "' holds NaN or Inf");
    if (name == "threshold") {
      if (config_.architecture == Architecture::kJumpReLU) {
        // A threshold of 0 is a ReLU for that latent (SAELens starts BatchTopK thresholds there):
        // log 0 = −inf, and exp(−inf) gives the 0 back exactly.
        TORCH_CHECK((t >= 0).all().item<bool>(), where, ": jumprelu thresholds must be >= 0 (a negative one acts as 0 "
                    "after the ReLU; the loaders clamp it)");
        p_["log_threshold"] = t.log().requires_grad_(true);
      } else {
        batchtopk_threshold_ = t.max();
      }
      continue;
    }
    p_[name] = t.requires_grad_(true);
  }
}

const torch::Tensor& Sae::param(const std::string& name) const {
  auto it = p_.find(name);
  TORCH_CHECK(it != p_.end(), "a ", architecture_name(config_.architecture), " SAE has no parameter '", name, "'");
  return it->second;
}

torch::Tensor Sae::threshold() const {
  switch (config_.architecture) {
    case Architecture::kJumpReLU: return p_.at("log_threshold").detach().exp();
    case Architecture::kBatchTopK:
    case Architecture::kMatryoshkaBatchTopK: return batchtopk_threshold_.clamp_min(0).expand({config_.d_sae}).clone();
    case Architecture::kStandard:
    case Architecture::kGated:
    case Architecture::kTopK: break;
  }
  TORCH_CHECK(false, "a ", architecture_name(config_.architecture), " SAE has no threshold");
}

std::vector<std::pair<std::string, torch::Tensor>> Sae::parameters() const {
  return {p_.begin(), p_.end()};
}

std::map<std::string, torch::Tensor> Sae::state() const {
  std::map<std::string, torch::Tensor> s;
  for (const auto& [name, t] : p_) {
    if (name != "log_threshold") s[name] = t.detach();
  }
  if (config_.architecture == Architecture::kJumpReLU || uses_batch_topk(config_.architecture)) {
    s["threshold"] = threshold();
  }
  return s;
}

torch::Tensor Sae::pre_activations(const torch::Tensor& x) const {
  TORCH_CHECK(config_.architecture != Architecture::kGated, "a gated SAE has two pre-activations (gate and magnitude)");
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == config_.d_in, "SAE input must be [..., ", config_.d_in, "] (got ", x.sizes(), ")");
  return affine(x, p_.at("W_enc"), p_.at("b_enc"));
}

double Sae::calibrate_batchtopk_threshold(const torch::Tensor& x) {
  TORCH_CHECK(uses_batch_topk(config_.architecture), "only batchtopk SAEs have a threshold to calibrate");
  TORCH_CHECK(x.dim() == 2 && x.size(0) > 0, "calibration rows must be [rows, ", config_.d_in, "] (got ", x.sizes(), ")");
  torch::NoGradGuard g;
  const int64_t rows = x.size(0);
  const int64_t keep = std::min<int64_t>(config_.k * rows, rows * config_.d_sae - 1);
  // The (keep + 1)-th largest ReLU pre-activation, in row chunks of at most 2^24 values so that
  // wide SAEs need no [rows, d_sae] matrix: pre > θ then keeps exactly the `keep` largest.
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 24) / config_.d_sae);
  torch::Tensor best = torch::empty({0});
  for (int64_t s = 0; s < rows; s += chunk) {
    const torch::Tensor acts = torch::relu(pre_activations(x.narrow(0, s, std::min(chunk, rows - s)).to(torch::kFloat32))).reshape(-1);
    const torch::Tensor both = torch::cat({best, std::get<0>(acts.topk(std::min(keep + 1, acts.numel())))});
    best = std::get<0>(both.topk(std::min(keep + 1, both.numel())));
  }
  const double theta = best.min().item<double>();
  batchtopk_threshold_ = torch::full({}, theta);
  return theta;
}

torch::Tensor Sae::centred(const torch::Tensor& x) const {
  return config_.apply_b_dec_to_input ? x - p_.at("b_dec") : x;
}

torch::Tensor Sae::affine(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b) const {
  // (x − b_dec) W + b = x W + (b − b_dec W): the same value, but the gradient to b_dec is a
  // [d_in] x [d_in, d_sae] product instead of a second [batch, d_sae] x [d_sae, d_in] GEMM.
  if (x.dim() != 2) {  // leading dims [..., d_in]
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = W.size(1);
    return affine(x.reshape({-1, x.size(-1)}), W, b).view(shape);
  }
  if (!config_.apply_b_dec_to_input) return torch::addmm(b, x, W);
  return torch::addmm(b - torch::mv(W.t(), p_.at("b_dec")), x, W);
}

torch::Tensor Sae::encode(const torch::Tensor& x) const {
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == config_.d_in, "SAE input must be [..., ", config_.d_in, "] (got ", x.sizes(), ")");
  const Architecture a = config_.architecture;
  if (a == Architecture::kGated) {
    const torch::Tensor gate = affine(x, p_.at("W_enc"), p_.at("b_gate"));
    const torch::Tensor mag = affine(x, p_.at("W_enc") * p_.at("r_mag").exp(), p_.at("b_mag"));
    return (gate > 0).to(mag.dtype()) * torch::relu(mag);
  }
  const torch::Tensor pre = affine(x, p_.at("W_enc"), p_.at("b_enc"));
  switch (a) {
    case Architecture::kStandard: return torch::relu(pre);
    case Architecture::kTopK: {
      auto [top, idx] = pre.topk(config_.k, -1);
      return torch::zeros_like(pre).scatter(-1, idx, top.clamp_min(0));
    }
    case Architecture::kBatchTopK:
    case Architecture::kMatryoshkaBatchTopK:
      TORCH_CHECK(batchtopk_threshold_.item<double>() >= 0,
                  "this batchtopk SAE has no threshold estimate yet (train it on at least one batch)");
      [[fallthrough]];
    case Architecture::kJumpReLU:  // JumpReLU at inference
    case Architecture::kGated: break;
  }
  const torch::Tensor theta = threshold();
  return pre * (pre > theta).to(pre.dtype());
}

torch::Tensor Sae::decode(const torch::Tensor& f) const {
  return torch::matmul(f, p_.at("W_dec")) + p_.at("b_dec");
}

torch::Tensor Sae::skip_term(const torch::Tensor& x) const {
  if (!config_.skip) return {};
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == config_.d_in, "coder input must be [..., ", config_.d_in, "] (got ", x.sizes(), ")");
  return torch::matmul(x, p_.at("W_skip").t());
}

torch::Tensor Sae::predict(const torch::Tensor& x, const torch::Tensor& f) const {
  const torch::Tensor y = decode(f);
  return config_.skip ? y + skip_term(x) : y;
}

torch::Tensor Sae::output_base(const torch::Tensor& x) const {
  const torch::Tensor& b_dec = p_.at("b_dec");
  if (!config_.skip) return b_dec;
  return torch::addmm(b_dec, x, p_.at("W_skip").t());
}

SaeOutput Sae::forward(const torch::Tensor& x, double l1, const torch::Tensor& dead, const torch::Tensor& target) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == config_.d_in, "SAE input must be [batch, ", config_.d_in, "] (got ",
              x.sizes(), ")");
  const torch::Tensor& y = target.defined() ? target : x;
  TORCH_CHECK(y.dim() == 2 && y.size(0) == x.size(0) && y.size(1) == config_.out_width(), "the target must be [",
              x.size(0), ", ", config_.out_width(), "] (got ", y.sizes(), ")");
  SaeOutput o;
  const torch::Tensor zero = torch::zeros({}, x.options());
  o.sparsity = zero;
  o.aux = zero;
  o.nested = zero;
  // Only AuxK and JumpReLU's pre-activation loss look at dead latents.
  auto any_dead = [&dead] { return dead.defined() && dead.any().item<bool>(); };
  const torch::Tensor& W_enc = p_.at("W_enc");
  const torch::Tensor& W_dec = p_.at("W_dec");
  const torch::Tensor& b_dec = p_.at("b_dec");
  // b_dec, plus the skip path x W_skipᵀ: what every prediction adds to its decoded code.
  const torch::Tensor base = output_base(x);
  const Architecture a = config_.architecture;
  if (!uses_k(a) && sparse_code_forward(x, y, l1, dead, o)) {
    // standard, gated or jumprelu with a sparse code: done (the terms and the code are set)
  } else if (a == Architecture::kStandard) {
    // f = ReLU((x − b_dec) W_enc + b_enc); penalty λ Σ_i f_i ‖W_dec,i‖ (Anthropic, April 2024 update).
    o.features = torch::relu(affine(x, W_enc, p_.at("b_enc")));
    o.x_hat = torch::matmul(o.features, W_dec) + base;
    o.sparsity = l1 * torch::mv(o.features, W_dec.norm(2, {1})).mean();
  } else if (a == Architecture::kGated) {
    // Rajamanoharan et al. 2024: π_gate = (x − b_dec) W_enc + b_gate,
    // π_mag = (x − b_dec)(W_enc ⊙ exp(r_mag)) + b_mag, f = 1[π_gate > 0] · ReLU(π_mag).
    const torch::Tensor gate = affine(x, W_enc, p_.at("b_gate"));
    const torch::Tensor mag = affine(x, W_enc * p_.at("r_mag").exp(), p_.at("b_mag"));
    o.features = (gate > 0).to(mag.dtype()) * torch::relu(mag);
    o.x_hat = torch::matmul(o.features, W_dec) + base;
    const torch::Tensor gate_relu = torch::relu(gate);
    // λ Σ ReLU(π_gate)_i ‖W_dec,i‖
    o.sparsity = l1 * torch::mv(gate_relu, W_dec.norm(2, {1})).mean();
    // Auxiliary reconstruction from ReLU(π_gate) through a detached decoder: no gradient reaches
    // W_dec or b_dec from this term.
    o.aux = squared_error(y, torch::matmul(gate_relu, W_dec.detach()) + base.detach());
  } else if (uses_k(a)) {
    // topk (Gao et al. 2024): keep the k largest pre-activations of each row (after ReLU).
    // batchtopk (Bussmann et al. 2024): keep the k·batch largest ReLU pre-activations of the whole batch.
    // matryoshka_batchtopk (Bussmann et al. 2025): the batchtopk code, and each inner level w also
    // reconstructs x from the code's latents below w alone.
    // All through the sparse kernels, with no dense [batch, d_sae] view (it would cost more than they
    // save), except for the matryoshka levels while that view is small.
    // With sparse gradients on, W_enc's and W_dec's gradients are recorded as factored terms for
    // the trainer's fused update (sae/sparse_grad.h) instead of dense .grad.
    SparseGrad* enc_grad = sinks_ ? &sinks_->W_enc : nullptr;
    SparseGrad* dec_grad = sinks_ ? &sinks_->W_dec : nullptr;
    const torch::Tensor centre = config_.apply_b_dec_to_input ? b_dec : torch::Tensor();
    const torch::Tensor& b_enc = p_.at("b_enc");
    const bool across_replicas = uses_batch_topk(a) && replica_gather_ && replica_sum_;
    int64_t total = config_.k * x.size(0);  // BatchTopK keeps k per row of the (global) batch
    if (across_replicas) {
      torch::Tensor rows = torch::full({1}, static_cast<double>(x.size(0)), torch::kFloat64);
      replica_sum_(rows);
      total = config_.k * static_cast<int64_t>(rows.item<double>());
    }
    TopKCode code = a == Architecture::kTopK ? topk_encode(x, W_enc, b_enc, config_.k, centre, enc_grad)
                                : batch_topk_encode(x, W_enc, b_enc, total, centre, enc_grad);
    if (across_replicas) {
      // Each replica's code holds its largest `total` entries: candidates that include its share
      // of the global selection. The global threshold is the total-th largest of all candidates.
      torch::Tensor keep;
      {
        torch::NoGradGuard g;
        const torch::Tensor v = code.values.detach();
        const torch::Tensor positive = v.masked_select(v > 0);
        torch::Tensor candidates = torch::zeros({total}, v.options());
        candidates.narrow(0, 0, positive.numel()).copy_(positive);
        const torch::Tensor all = replica_gather_(candidates);
        const torch::Tensor tau = std::get<0>(all.topk(total, 0, true, /*sorted=*/false)).min();
        keep = (v >= tau).logical_and(v > 0).to(v.dtype());
      }
      code.values = code.values * keep;  // dropped entries: value and gradient 0
    }
    o.code_values = code.values;
    o.code_indices = code.indices;
    o.x_hat = topk_decode(code.values, code.indices, W_dec, dec_grad) + base;
    if (uses_batch_topk(a)) {
      // A running average of the smallest kept positive activation, for checkpoints and
      // monitoring; the saved inference threshold is calibrated after training
      // (calibrate_batchtopk_threshold).
      torch::NoGradGuard g;
      const torch::Tensor values = code.values.detach();
      const torch::Tensor positive = values.masked_select(values > 0);
      torch::Tensor mine = positive.numel() > 0 ? positive.min().reshape({1})
                                                : torch::full({1}, std::numeric_limits<float>::infinity(), values.options());
      if (across_replicas) mine = replica_gather_(mine).min().reshape({1});  // the global batch's smallest
      if (std::isfinite(mine.item<double>())) {
        const torch::Tensor smallest = mine.squeeze();
        const double r = config_.batchtopk_threshold_rate;
        batchtopk_threshold_ = batchtopk_threshold_.item<double>() < 0 ? smallest : (1 - r) * batchtopk_threshold_ + r * smallest;
      }
    }
    if (a == Architecture::kMatryoshkaBatchTopK) {
      const std::vector<int64_t>& widths = config_.matryoshka_widths;
      const int64_t rows = x.size(0);
      if (rows * config_.d_sae <= (int64_t{1} << 24)) {
        // The levels partition the latents, so one dense decode, group by group and accumulated,
        // gives every level: cheaper than a sparse decode per level while [rows, d_sae] is small.
        const torch::Tensor dense = topk_to_dense(code, config_.d_sae);
        torch::Tensor partial = base.expand({rows, config_.out_width()});
        int64_t start = 0;
        for (size_t level = 0; level + 1 < widths.size(); ++level) {
          const int64_t width = widths[level];
          partial = torch::addmm(partial, dense.narrow(1, start, width - start), W_dec.narrow(0, start, width - start));
          start = width;
          o.nested = o.nested + squared_error(y, partial);
        }
      } else {
        for (size_t level = 0; level + 1 < widths.size(); ++level) {
          const torch::Tensor inner = code.values * (code.indices < widths[level]).to(code.values.dtype());
          o.nested = o.nested + squared_error(y, topk_decode(inner, code.indices, W_dec, dec_grad) + base);
        }
      }
    }
    if (any_dead()) {
      // AuxK: model the detached residual e = y − ŷ with the top-k_aux pre-activations of dead
      // latents; loss ‖e − ê‖² / ‖e − mean(e)‖² times the coefficient (1/32 by default).
      const torch::Tensor dead_idx = dead.nonzero().squeeze(1);
      const int64_t k_aux = std::min<int64_t>(config_.aux_k > 0 ? config_.aux_k : config_.out_width() / 2, dead_idx.size(0));
      const torch::Tensor e = (y - o.x_hat).detach();
      torch::Tensor top, latents;
      {
        // The selection among dead latents without gradient; the selected entries are then made
        // differentiable by the same kernels as the main code (no dense gradient for W_enc or W_dec).
        torch::NoGradGuard no_grad;
        const torch::Tensor pre_dead =
            torch::matmul(centred(x), W_enc.index_select(1, dead_idx)) + b_enc.index_select(0, dead_idx);
        torch::Tensor idx;
        std::tie(top, idx) = pre_dead.topk(k_aux, -1);
        latents = dead_idx.index_select(0, idx.reshape(-1)).view_as(idx);
      }
      const torch::Tensor values = gathered_encode(x, W_enc, b_enc, latents, top, centre, enc_grad);
      const torch::Tensor e_hat = topk_decode(values, latents, W_dec, dec_grad);
      torch::Tensor var;
      if (replica_sum_) {
        const CentredSquares sq = centred_squares(e, replica_sum_);
        var = torch::tensor(sq.sum / std::max(1.0, sq.rows), e.options());
      } else {
        var = (e - e.mean(0)).pow(2).sum(-1).mean();
      }
      o.aux = config_.aux_k_coefficient * squared_error(e, e_hat) / var.clamp_min(1e-12);
    }
  } else {
    TORCH_CHECK(a == Architecture::kJumpReLU, "unhandled architecture ", architecture_name(a));
    // Rajamanoharan et al. 2024b (Gemma Scope): f = π · H(π − θ) with θ = exp(log_threshold) per
    // latent, straight-through rectangle-kernel gradients of bandwidth ε. Penalty: λ · L0 through
    // the step's pseudo-gradient (Gemma Scope), or λ Σ_i tanh(c · f_i ‖W_dec,i‖) (Anthropic, January
    // 2025, as SAELens computes it: the tanh of the JumpReLU output, so its gradient reaches θ
    // through the pseudo-derivative and π through active latents).
    const torch::Tensor pre = affine(x, W_enc, p_.at("b_enc"));
    const torch::Tensor theta = p_.at("log_threshold").exp();
    o.features = JumpReluFn::apply(pre, theta, config_.jumprelu_bandwidth);
    o.x_hat = torch::matmul(o.features, W_dec) + base;
    const torch::Tensor dec_norm = W_dec.norm(2, {1});
    if (config_.jumprelu_sparsity == JumpReluSparsity::kStep) {
      o.sparsity = l1 * StepFn::apply(pre, theta, config_.jumprelu_bandwidth).sum(-1).mean();
    } else {
      o.sparsity = l1 * torch::tanh(config_.jumprelu_tanh_scale * o.features * dec_norm).sum(-1).mean();
    }
    if (config_.pre_act_loss_coefficient > 0 && any_dead()) {
      // Anthropic's pre-activation loss on dead latents: λ_P Σ_i ReLU(θ_i − π_i) ‖W_dec,i‖.
      const torch::Tensor mask = dead.to(pre.dtype());
      o.aux = config_.pre_act_loss_coefficient * (torch::relu(theta - pre) * (mask * dec_norm)).sum(-1).mean();
    }
  }
  o.mse = squared_error(y, o.x_hat);
  o.loss = o.mse + o.sparsity + o.aux + o.nested;
  if (o.features.defined()) {
    const torch::Tensor active = o.features.detach() != 0;
    o.fire_counts = active.sum(0).to(torch::kInt64);
    o.l0 = active.sum(-1).to(torch::kFloat32).mean();
  } else {  // a sparse code [batch, k'], padding 0
    const torch::Tensor active = o.code_values.detach() > 0;
    o.fire_counts = torch::zeros({config_.d_sae}, torch::kInt64)
                        .index_add_(0, o.code_indices.masked_select(active), torch::ones({active.sum().item<int64_t>()}, torch::kInt64));
    o.l0 = active.sum(-1).to(torch::kFloat32).mean();
  }
  return o;
}

bool Sae::sparse_code_forward(const torch::Tensor& x, const torch::Tensor& y, double l1, const torch::Tensor& dead,
                              SaeOutput& o) {
  const Architecture a = config_.architecture;
  const int64_t d_sae = config_.d_sae;
  const int64_t cap = sparse_code_cap_ < 0 ? std::max<int64_t>(64, d_sae / 8) : std::min(sparse_code_cap_, d_sae);
  if (cap == 0) return false;
  SparseGrad* enc_grad = sinks_ ? &sinks_->W_enc : nullptr;
  SparseGrad* dec_grad = sinks_ ? &sinks_->W_dec : nullptr;
  const torch::Tensor& W_enc = p_.at("W_enc");
  const torch::Tensor& W_dec = p_.at("W_dec");
  const torch::Tensor& b_dec = p_.at("b_dec");
  const torch::Tensor centre = config_.apply_b_dec_to_input ? b_dec : torch::Tensor();
  const double eps = config_.jumprelu_bandwidth;
  const torch::Tensor& b = p_.at(a == Architecture::kGated ? "b_gate" : "b_enc");
  // The candidates: every entry that carries value or gradient. ReLU and the gate: above 0.
  // JumpReLU: above θ − ε/2, where the rectangle kernel of the threshold's pseudo-gradient starts.
  torch::Tensor theta, floor;
  if (a == Architecture::kJumpReLU) {
    theta = p_.at("log_threshold").exp();
    floor = theta.detach() - eps / 2;
  } else {
    floor = torch::zeros({d_sae}, x.options());
  }
  // Early in training most batches are too dense: a probe of 64 rows (a 64-row GEMM) says so before
  // the full selection would compute most of the product and give up.
  const int64_t probe = 64;
  if (x.size(0) >= 4 * probe && !threshold_select(x.narrow(0, 0, probe), W_enc, b, floor, cap, centre).defined()) {
    return false;
  }
  const ThresholdCode sel = threshold_select(x, W_enc, b, floor, cap, centre);
  if (!sel.defined()) return false;
  const torch::Tensor& latents = sel.indices;
  const torch::Tensor flat = latents.reshape(-1);
  auto at_latents = [&](const torch::Tensor& per_latent) { return per_latent.index_select(0, flat).view_as(latents); };
  const torch::Tensor dec_norms = row_norms(W_dec, dec_grad);  // gradient as a norm term, no dense matrix
  const torch::Tensor base = output_base(x);  // b_dec (+ the skip path)
  const torch::Tensor dec_norm = at_latents(dec_norms);
  torch::Tensor f;
  if (a == Architecture::kStandard) {
    // the positive pre-activations (padding: 0, no gradient); penalty λ Σ_i f_i ‖W_dec,i‖
    f = gathered_encode(x, W_enc, b, latents, sel.pre, centre, enc_grad);
    o.x_hat = topk_decode(f, latents, W_dec, dec_grad) + base;
    o.sparsity = l1 * (f * dec_norm).sum(-1).mean();
  } else if (a == Architecture::kGated) {
    // ReLU(π_gate) at the open gates; π_mag from the same (x − b_dec) W_enc column: z · exp(r_mag) + b_mag.
    const torch::Tensor gate = gathered_encode(x, W_enc, b, latents, sel.pre, centre, enc_grad);
    const torch::Tensor z = gate - at_latents(b);
    const torch::Tensor mag = z * at_latents(p_.at("r_mag").exp()) + at_latents(p_.at("b_mag"));
    f = sel.valid.to(mag.dtype()) * torch::relu(mag);
    o.x_hat = topk_decode(f, latents, W_dec, dec_grad) + base;
    o.sparsity = l1 * (gate * dec_norm).sum(-1).mean();
    o.aux = squared_error(y, topk_decode(gate, latents, W_dec.detach()) + base.detach());
  } else {
    TORCH_CHECK(a == Architecture::kJumpReLU, "no sparse code path for ", architecture_name(a));
    const torch::Tensor valid = sel.valid.to(x.dtype());
    const torch::Tensor z = gathered_encode(x, W_enc, b, latents, sel.pre, centre, enc_grad, /*relu=*/false);
    const torch::Tensor th = at_latents(theta);
    f = JumpReluFn::apply(z, th, eps) * valid;
    o.x_hat = topk_decode(f, latents, W_dec, dec_grad) + base;
    if (config_.jumprelu_sparsity == JumpReluSparsity::kStep) {
      o.sparsity = l1 * (StepFn::apply(z, th, eps) * valid).sum(-1).mean();
    } else {
      o.sparsity = l1 * torch::tanh(config_.jumprelu_tanh_scale * f * dec_norm).sum(-1).mean();
    }
    if (config_.pre_act_loss_coefficient > 0 && dead.defined() && dead.any().item<bool>()) {
      // λ_P Σ_{i dead} ReLU(θ_i − π_i) ‖W_dec,i‖ over every row: the dead latents' pre-activations
      // (one small GEMM), differentiable through the gathered kernel when there are few of them.
      const torch::Tensor dead_idx = dead.nonzero().squeeze(1);
      const int64_t B = x.size(0), n = dead_idx.size(0);
      const torch::Tensor th_dead = theta.index_select(0, dead_idx).unsqueeze(0);
      const torch::Tensor norm_dead = dec_norms.index_select(0, dead_idx).unsqueeze(0);
      torch::Tensor pre_dead;
      if (n <= cap) {
        torch::Tensor pre0, idx;
        {
          torch::NoGradGuard g;
          pre0 = torch::matmul(centred(x), W_enc.index_select(1, dead_idx)) + b.index_select(0, dead_idx);
          idx = dead_idx.unsqueeze(0).expand({B, n}).contiguous();
        }
        pre_dead = gathered_encode(x, W_enc, b, idx, pre0, centre, enc_grad, /*relu=*/false);
      } else {
        pre_dead = affine(x, W_enc.index_select(1, dead_idx), b.index_select(0, dead_idx));
      }
      o.aux = config_.pre_act_loss_coefficient * (torch::relu(th_dead - pre_dead) * norm_dead).sum(-1).mean();
    }
  }
  o.code_values = f;
  o.code_indices = latents;
  return true;
}

torch::Tensor SaeOutput::dense_features(int64_t d_sae) const {
  if (features.defined()) return features;
  return topk_to_dense({code_values, code_indices}, d_sae);
}

}  // namespace saelab
