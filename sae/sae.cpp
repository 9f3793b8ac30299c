#include "sae/sae.h"

#include <algorithm>
#include <cmath>

#include "sae/architecture.h"
#include "sae/topk_kernels.h"

namespace saelab {

JumpReluSparsity parse_jumprelu_sparsity(const std::string& name) {
  if (name == "step") return JumpReluSparsity::kStep;
  if (name == "tanh") return JumpReluSparsity::kTanh;
  TORCH_CHECK(false, "jumprelu_sparsity must be step or tanh (got '", name, "')");
}

const char* jumprelu_sparsity_name(JumpReluSparsity s) { return s == JumpReluSparsity::kStep ? "step" : "tanh"; }

double default_jumprelu_bandwidth(JumpReluSparsity s) { return s == JumpReluSparsity::kStep ? 0.05 : 2.0; }

void SaeConfig::validate() const {
  architecture_rules(architecture);  // a known architecture
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
  architecture_rules(architecture).validate(*this);
}

std::map<std::string, std::vector<int64_t>> sae_shapes(const SaeConfig& c) {
  std::map<std::string, std::vector<int64_t>> s = {
      {"W_enc", {c.d_in, c.d_sae}}, {"W_dec", {c.d_sae, c.out_width()}}, {"b_dec", {c.out_width()}}};
  if (c.skip) s["W_skip"] = {c.out_width(), c.d_in};
  architecture_rules(c.architecture).add_shapes(c, s);
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
  architecture_rules(config_.architecture).init(*this);
  for (auto& [name, t] : p_) t.requires_grad_(true);
}

Sae::Sae(const SaeConfig& config, std::map<std::string, torch::Tensor> params, const std::string& where)
    : config_(config) {
  config_.validate();
  const auto shapes = sae_shapes(config_);
  // A batchtopk SAE that has not seen a batch yet has no threshold estimate. It is made only once
  // the stored tensors match cfg.json: a 100-byte folder claiming a huge d_sae allocates nothing.
  const ArchitectureRules& rules = architecture_rules(config_.architecture);
  const bool no_threshold = rules.uses_batch_topk() && params.count("threshold") == 0;
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
      rules.load_threshold(*this, t, where);
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

torch::Tensor Sae::threshold() const { return architecture_rules(config_.architecture).threshold(*this); }

std::vector<std::pair<std::string, torch::Tensor>> Sae::parameters() const {
  return {p_.begin(), p_.end()};
}

std::map<std::string, torch::Tensor> Sae::state() const {
  std::map<std::string, torch::Tensor> s;
  for (const auto& [name, t] : p_) {
    if (name != "log_threshold") s[name] = t.detach();
  }
  if (architecture_rules(config_.architecture).has_threshold()) s["threshold"] = threshold();
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
  return architecture_rules(config_.architecture).encode(*this, x);
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
  // b_dec, plus the skip path x W_skipᵀ: what every prediction adds to its decoded code.
  architecture_rules(config_.architecture).forward(*this, CoderBatch{x, y, l1, dead, output_base(x)}, o);
  o.mse = (y - o.x_hat).pow(2).sum(-1).mean();
  o.loss = o.mse + o.sparsity + o.aux + o.nested;
  if (o.features.defined()) {
    const torch::Tensor active = o.features.detach() != 0;
    o.fire_counts = active.sum(0).to(torch::kInt64);
    o.l0 = active.sum(-1).to(torch::kFloat32).mean();
  } else {  // a sparse code [batch, k'], padding 0
    const torch::Tensor active = o.code_values.detach() > 0;
    o.fire_counts = torch::bincount(o.code_indices.masked_select(active), {}, config_.d_sae);
    o.l0 = active.sum(-1).to(torch::kFloat32).mean();
  }
  return o;
}

torch::Tensor SaeOutput::dense_features(int64_t d_sae) const {
  if (features.defined()) return features;
  return topk_to_dense({code_values, code_indices}, d_sae);
}

}  // namespace saelab
