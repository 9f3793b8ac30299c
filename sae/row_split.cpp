// The sparse code of threshold-type coders (standard, gated, jumprelu) and the rows it leaves out.
//
// Their codes stay sparse only while no row has more than the cap of candidates, and early in
// training (and for JumpReLU with a wide tanh window, all along) a few rows are far denser than
// the rest: the fullest of 2,048 rows may hold 4 × the mean. Those rows alone (up to 1/16 of the
// batch) take the dense path and the others the sparse one; every loss term is a mean over rows,
// so the two parts, weighted by their row counts, give the step one pass would have given.
#include "sae/architecture.h"

#include <algorithm>

namespace saelab {
namespace {

// What sparse_candidates answers inside a split: the rows' code already selected, or the dense path.
struct Given {
  const ThresholdCode* code = nullptr;
  bool dense = false;
};
thread_local Given t_given;

class GivenScope {
 public:
  GivenScope(const ThresholdCode* code, bool dense) : saved_(t_given) { t_given = Given{code, dense}; }
  ~GivenScope() { t_given = saved_; }
  GivenScope(const GivenScope&) = delete;
  GivenScope& operator=(const GivenScope&) = delete;

 private:
  Given saved_;
};

// A training code as [rows, k'] values and indices (padding 0 at latent 0), from either form.
std::pair<torch::Tensor, torch::Tensor> padded_code(const SaeOutput& o) {
  if (!o.features.defined()) return {o.code_values, o.code_indices};
  const torch::Tensor active = o.features.detach() != 0;
  const int64_t width = std::max<int64_t>(1, active.sum(1).max().item<int64_t>());
  const torch::Tensor indices = std::get<1>(active.to(torch::kFloat32).topk(width, 1));  // active latents first
  return {o.features.gather(1, indices), indices};
}

torch::Tensor pad_columns(const torch::Tensor& t, int64_t width) {
  return t.size(1) == width ? t : torch::constant_pad_nd(t, {0, width - t.size(1)}, 0);
}

}  // namespace

int64_t ArchitectureRules::sparse_code_cap(const Sae& s) {
  const int64_t d_sae = s.config_.d_sae;
  return s.sparse_code_cap_ < 0 ? std::max<int64_t>(64, d_sae / 8) : std::min(s.sparse_code_cap_, d_sae);
}

ThresholdCode ArchitectureRules::sparse_candidates(const Sae& s, const torch::Tensor& x, const torch::Tensor& bias,
                                                   const torch::Tensor& floor, const torch::Tensor& band_floor) {
  if (t_given.dense) return {};
  if (t_given.code != nullptr) {
    const ThresholdCode given = *t_given.code;
    t_given.code = nullptr;  // for this forward only
    return given;
  }
  const int64_t cap = sparse_code_cap(s);
  if (cap == 0) return {};
  const torch::Tensor& W_enc = p(s, "W_enc");
  const torch::Tensor c = centre(s);
  const int64_t rows = x.size(0), spare = rows / 16;
  // Early in training most batches are too dense: a probe of 64 rows (a 64-row GEMM) says so before
  // the full selection would compute most of the product and give up.
  const int64_t probe = 64;
  if (rows >= 4 * probe && !threshold_select(x.narrow(0, 0, probe), W_enc, bias, floor, cap, c, {}, probe / 16).defined()) {
    return {};
  }
  return threshold_select(x, W_enc, bias, floor, cap, c, band_floor, spare);
}

bool ArchitectureRules::split_rows(Sae& s, const CoderBatch& b, const ThresholdCode& sel, SaeOutput& o) const {
  if (!sel.overflow.defined()) return false;
  const int64_t B = b.x.size(0);
  const torch::Tensor over = sel.overflow;
  const torch::Tensor fits = torch::ones({B}, torch::kBool).index_fill_(0, over, false).nonzero().squeeze(1);
  ThresholdCode code;
  code.pre = sel.pre.index_select(0, fits);
  code.indices = sel.indices.index_select(0, fits);
  code.valid = sel.valid.index_select(0, fits);
  if (sel.band.defined()) code.band = sel.band.index_select(0, fits);
  auto part = [&](const torch::Tensor& rows, const ThresholdCode* given) {
    const torch::Tensor x = b.x.index_select(0, rows), y = b.y.index_select(0, rows);
    const torch::Tensor base = b.base.dim() == 2 ? b.base.index_select(0, rows) : b.base;
    SaeOutput out;
    out.sparsity = out.aux = out.nested = torch::zeros({}, b.x.options());
    GivenScope scope(given, given == nullptr);
    forward(s, CoderBatch{x, y, b.l1, b.dead, base}, out);
    return out;
  };
  const SaeOutput sparse = part(fits, &code), dense = part(over, nullptr);
  const double wf = static_cast<double>(fits.size(0)) / static_cast<double>(B), wo = 1.0 - wf;
  // Back to the batch's row order.
  const torch::Tensor order = torch::cat({fits, over});
  const torch::Tensor back = torch::empty_like(order).index_copy_(0, order, torch::arange(B, order.options()));
  o.x_hat = torch::cat({sparse.x_hat, dense.x_hat}).index_select(0, back);
  o.sparsity = sparse.sparsity * wf + dense.sparsity * wo;
  o.aux = sparse.aux * wf + dense.aux * wo;
  o.nested = sparse.nested * wf + dense.nested * wo;
  auto [sv, si] = padded_code(sparse);
  auto [dv, di] = padded_code(dense);
  const int64_t width = std::max(sv.size(1), dv.size(1));
  o.code_values = torch::cat({pad_columns(sv, width), pad_columns(dv, width)}).index_select(0, back);
  o.code_indices = torch::cat({pad_columns(si, width), pad_columns(di, width)}).index_select(0, back);
  return true;
}

}  // namespace saelab
