// topk (Gao et al. 2024): keep the k largest pre-activations of each row (after ReLU), through the
// sparse kernels with no dense [batch, d_sae] view; AuxK on dead latents. aux_k_loss, which the
// whole TopK family uses, lives here.
#include "sae/architecture.h"

#include <algorithm>

namespace saelab {
namespace {

class TopK final : public ArchitectureRules {
 public:
  Architecture id() const override { return Architecture::kTopK; }
  const char* name() const override { return "topk"; }
  bool uses_k() const override { return true; }

  torch::Tensor encode(const Sae& s, const torch::Tensor& x) const override {
    const torch::Tensor pre = affine(s, x, p(s, "W_enc"), p(s, "b_enc"));
    const torch::Tensor rows = pre.reshape({-1, pre.size(-1)});
    auto [top, idx] = row_topk(rows, s.config().k);  // ties in latent order, as the trainer's selection
    return torch::zeros_like(rows).scatter(1, idx, top.clamp_min(0)).view(pre.sizes());
  }

  void forward(Sae& s, const CoderBatch& b, SaeOutput& o) const override {
    // With sparse gradients on, W_enc's and W_dec's gradients are recorded as factored terms for
    // the trainer's fused update (sae/sparse_grad.h) instead of dense .grad.
    const TopKCode code = topk_encode(b.x, p(s, "W_enc"), p(s, "b_enc"), s.config().k, centre(s), enc_grad(s));
    o.code_values = code.values;
    o.code_indices = code.indices;
    o.x_hat = topk_decode(code.values, code.indices, p(s, "W_dec"), dec_grad(s)) + b.base;
    if (b.any_dead()) o.aux = aux_k_loss(s, b, o.x_hat);
  }
};

}  // namespace

const ArchitectureRules& topk_architecture() {
  static const TopK rules;
  return rules;
}

torch::Tensor ArchitectureRules::aux_k_loss(const Sae& s, const CoderBatch& b, const torch::Tensor& x_hat) {
  const SaeConfig& c = s.config();
  const torch::Tensor& W_enc = p(s, "W_enc");
  const torch::Tensor& b_enc = p(s, "b_enc");
  const torch::Tensor dead_idx = b.dead.nonzero().squeeze(1);
  const int64_t k_aux = std::min<int64_t>(c.aux_k > 0 ? c.aux_k : c.out_width() / 2, dead_idx.size(0));
  const torch::Tensor e = (b.y - x_hat).detach();
  torch::Tensor top, latents;
  {
    // The selection among dead latents without gradient; the selected entries are then made
    // differentiable by the same kernels as the main code (no dense gradient for W_enc or W_dec).
    torch::NoGradGuard no_grad;
    const torch::Tensor pre_dead =
        torch::matmul(centred(s, b.x), W_enc.index_select(1, dead_idx)) + b_enc.index_select(0, dead_idx);
    torch::Tensor idx;
    std::tie(top, idx) = pre_dead.topk(k_aux, -1);
    latents = dead_idx.index_select(0, idx.reshape(-1)).view_as(idx);
  }
  const torch::Tensor values = gathered_encode(b.x, W_enc, b_enc, latents, top, centre(s), enc_grad(s));
  const torch::Tensor e_hat = topk_decode(values, latents, p(s, "W_dec"), dec_grad(s));
  torch::Tensor var;
  if (replica_sum(s)) {  // the global batch's ‖e − mean e‖², as in one process
    const CentredSquares sq = centred_squares(e, replica_sum(s));
    var = torch::tensor(sq.sum / std::max(1.0, sq.rows), e.options());
  } else {
    var = (e - e.mean(0)).pow(2).sum(-1).mean();
  }
  return c.aux_k_coefficient * squared_error(e, e_hat) / var.clamp_min(1e-12);
}

}  // namespace saelab
