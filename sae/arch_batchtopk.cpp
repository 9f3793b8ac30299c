// batchtopk (Bussmann et al. 2024): keep the k · batch largest ReLU pre-activations of the whole
// batch (of the global batch under data parallelism); at inference a threshold, calibrated after
// training (Sae::calibrate_batchtopk_threshold), with a running estimate kept for checkpoints.
#include "sae/architecture.h"

#include <cmath>
#include <limits>

namespace saelab {

void BatchTopKRules::add_shapes(const SaeConfig& c, TensorShapes& shapes) const {
  shapes["b_enc"] = {c.d_sae};
  shapes["threshold"] = {c.d_sae};
}

void BatchTopKRules::init(Sae& s) const {
  ArchitectureRules::init(s);
  running_threshold(s) = torch::full({}, -1.0);  // unset until the first batch
}

void BatchTopKRules::load_threshold(Sae& s, const torch::Tensor& threshold, const std::string& where) const {
  (void)where;
  running_threshold(s) = threshold.max();  // −1 everywhere: not estimated yet
}

torch::Tensor BatchTopKRules::threshold(const Sae& s) const {
  return running_threshold(s).clamp_min(0).expand({s.config().d_sae}).clone();
}

torch::Tensor BatchTopKRules::encode(const Sae& s, const torch::Tensor& x) const {
  const torch::Tensor pre = affine(s, x, p(s, "W_enc"), p(s, "b_enc"));
  TORCH_CHECK(running_threshold(s).item<double>() >= 0,
              "this batchtopk SAE has no threshold estimate yet (train it on at least one batch)");
  const torch::Tensor theta = threshold(s);
  return pre * (pre > theta).to(pre.dtype());
}

TopKCode BatchTopKRules::batch_code(Sae& s, const CoderBatch& b, SaeOutput& o) const {
  const torch::Tensor& x = b.x;
  const auto& sum = replica_sum(s);
  const auto& gather = replica_gather(s);
  const bool across_replicas = gather && sum;
  int64_t total = s.config().k * x.size(0);  // k per row of the (global) batch
  if (across_replicas) {
    torch::Tensor rows = torch::full({1}, static_cast<double>(x.size(0)), torch::kFloat64);
    sum(rows);
    total = s.config().k * static_cast<int64_t>(rows.item<double>());
  }
  TopKCode code = batch_topk_encode(x, p(s, "W_enc"), p(s, "b_enc"), total, centre(s), enc_grad(s));
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
      const torch::Tensor all = gather(candidates);
      const torch::Tensor tau = std::get<0>(all.topk(total, 0, true, /*sorted=*/false)).min();
      keep = (v >= tau).logical_and(v > 0).to(v.dtype());
    }
    code.values = code.values * keep;  // dropped entries: value and gradient 0
  }
  o.code_values = code.values;
  o.code_indices = code.indices;
  o.x_hat = topk_decode(code.values, code.indices, p(s, "W_dec"), dec_grad(s)) + b.base;
  {
    // A running average of the smallest kept positive activation, for checkpoints and monitoring.
    torch::NoGradGuard g;
    const torch::Tensor values = code.values.detach();
    const torch::Tensor positive = values.masked_select(values > 0);
    torch::Tensor mine = positive.numel() > 0 ? positive.min().reshape({1})
                                              : torch::full({1}, std::numeric_limits<float>::infinity(), values.options());
    if (across_replicas) mine = gather(mine).min().reshape({1});  // the global batch's smallest
    if (std::isfinite(mine.item<double>())) {
      const torch::Tensor smallest = mine.squeeze();
      const double r = s.config().batchtopk_threshold_rate;
      torch::Tensor& theta = running_threshold(s);
      theta = theta.item<double>() < 0 ? smallest : (1 - r) * theta + r * smallest;
    }
  }
  return code;
}

void BatchTopKRules::forward(Sae& s, const CoderBatch& b, SaeOutput& o) const {
  batch_code(s, b, o);
  if (b.any_dead()) o.aux = aux_k_loss(s, b, o.x_hat);
}

const ArchitectureRules& batchtopk_architecture() {
  static const BatchTopKRules rules;
  return rules;
}

}  // namespace saelab
