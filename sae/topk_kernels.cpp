#include "sae/topk_kernels.h"

namespace saelab {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// A sparse [rows, cols] matrix holding `values` [batch, k] at (batch row, indices) — transposed
// when `by_latent` (rows are latents).
torch::Tensor sparse_code(const torch::Tensor& values, const torch::Tensor& indices, int64_t d_sae, bool by_latent) {
  const int64_t B = values.size(0), k = values.size(1);
  const torch::Tensor rows = torch::arange(B, indices.options()).unsqueeze(1).expand({B, k}).reshape(-1);
  const torch::Tensor cols = indices.reshape(-1);
  const torch::Tensor idx = by_latent ? torch::stack({cols, rows}) : torch::stack({rows, cols});
  const std::vector<int64_t> size = by_latent ? std::vector<int64_t>{d_sae, B} : std::vector<int64_t>{B, d_sae};
  return torch::sparse_coo_tensor(idx, values.reshape(-1), size).coalesce();
}

// Gathers W [d_sae, d_in] rows for each (b, j) and dots them with g[b]: out[b, j] = g[b] · W[idx[b, j]].
// Chunked over the batch so the gathered rows stay small.
torch::Tensor gathered_dots(const torch::Tensor& g, const torch::Tensor& indices, const torch::Tensor& W) {
  const int64_t B = indices.size(0), k = indices.size(1), d = W.size(1);
  torch::Tensor out = torch::empty({B, k}, g.options());
  const int64_t chunk = 256;
  for (int64_t s = 0; s < B; s += chunk) {
    const int64_t n = std::min(chunk, B - s);
    const torch::Tensor rows = W.index_select(0, indices.narrow(0, s, n).reshape(-1)).view({n, k, d});
    out.narrow(0, s, n).copy_(torch::bmm(rows, g.narrow(0, s, n).unsqueeze(2)).squeeze(2));
  }
  return out;
}

class TopKEncodeFn : public torch::autograd::Function<TopKEncodeFn> {
 public:
  // k > 0: the k largest per row. k < 0: the |k| largest over the whole batch (BatchTopK), stored
  // per row padded to the fullest row's count, padding masked to value 0 with no gradient.
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& W_enc,
                             const torch::Tensor& b_enc, int64_t k) {
    const torch::Tensor pre = torch::addmm(b_enc, x, W_enc);  // [batch, d_sae]: the one dense GEMM
    torch::Tensor top, indices, keep;
    if (k > 0) {
      std::tie(top, indices) = pre.topk(k, /*dim=*/1);
      keep = top > 0;  // ReLU
    } else {
      const int64_t B = pre.size(0), d_sae = pre.size(1);
      const int64_t total = std::min<int64_t>(-k, pre.numel());
      const torch::Tensor flat_idx = std::get<1>(pre.reshape(-1).topk(total, 0, true, /*sorted=*/false));
      const torch::Tensor counts = torch::div(flat_idx, d_sae, "floor").bincount({}, B);  // [batch] kept per row
      const int64_t widest = std::max<int64_t>(1, counts.max().item<int64_t>());
      std::tie(top, indices) = pre.topk(widest, /*dim=*/1);  // a row's kept entries are its largest
      keep = (torch::arange(widest, counts.options()).unsqueeze(0) < counts.unsqueeze(1)).logical_and(top > 0);
    }
    top = top * keep.to(top.dtype());  // entries dropped (or negative) become 0: value and gradient
    const torch::Tensor values = top.clamp_min(0);
    ctx->save_for_backward({x, W_enc, indices, top});
    ctx->saved_data["d_sae"] = W_enc.size(1);
    ctx->mark_non_differentiable({indices});
    return {values, indices};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &W_enc = saved[1], &indices = saved[2], &top = saved[3];
    const int64_t d_sae = ctx->saved_data["d_sae"].toInt();
    const torch::Tensor g = grads[0] * (top > 0).to(grads[0].dtype());  // ReLU'
    // d pre[b, i] = g at the selected (b, i), zero elsewhere: a sparse [batch, d_sae] matrix S.
    const torch::Tensor grad_x = gathered_dots_t(g, indices, W_enc);
    const torch::Tensor grad_W_enc = torch::mm(sparse_code(g, indices, d_sae, /*by_latent=*/true), x).t();  // x^T S
    const torch::Tensor grad_b_enc = torch::zeros({d_sae}, g.options()).index_add_(0, indices.reshape(-1), g.reshape(-1));
    return {grad_x, grad_W_enc, grad_b_enc, torch::Tensor()};
  }

 private:
  // grad_x[b] = sum_j g[b, j] * W_enc[:, idx[b, j]], computed as rows of W_enc^T.
  static torch::Tensor gathered_dots_t(const torch::Tensor& g, const torch::Tensor& indices, const torch::Tensor& W_enc) {
    const int64_t B = indices.size(0), k = indices.size(1), d_in = W_enc.size(0);
    const torch::Tensor Wt = W_enc.t();  // [d_sae, d_in] view; index_select copies only the rows used
    torch::Tensor out = torch::empty({B, d_in}, g.options());
    const int64_t chunk = 256;
    for (int64_t s = 0; s < B; s += chunk) {
      const int64_t n = std::min(chunk, B - s);
      const torch::Tensor cols = Wt.index_select(0, indices.narrow(0, s, n).reshape(-1)).view({n, k, d_in});
      out.narrow(0, s, n).copy_(torch::bmm(g.narrow(0, s, n).unsqueeze(1), cols).squeeze(1));
    }
    return out;
  }
};

class TopKDecodeFn : public torch::autograd::Function<TopKDecodeFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& values, const torch::Tensor& indices,
                               const torch::Tensor& W_dec) {
    const int64_t B = values.size(0), k = values.size(1);
    const torch::Tensor offsets = torch::arange(0, B * k, k, indices.options());
    // embedding_bag sums the selected rows weighted by `values` without materialising them.
    const torch::Tensor out = std::get<0>(torch::embedding_bag(W_dec, indices.reshape(-1), offsets, false,
                                                               /*mode sum=*/0, false, values.reshape(-1), false));
    ctx->save_for_backward({values, indices, W_dec});
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &values = saved[0], &indices = saved[1], &W_dec = saved[2];
    const torch::Tensor& g = grads[0];  // [batch, d_in]
    const torch::Tensor grad_values = gathered_dots(g, indices, W_dec);
    const torch::Tensor grad_W_dec = torch::mm(sparse_code(values, indices, W_dec.size(0), /*by_latent=*/true), g);
    return {grad_values, torch::Tensor(), grad_W_dec};
  }
};

}  // namespace

TopKCode topk_encode(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b_enc, int64_t k) {
  TORCH_CHECK(x.dim() == 2 && W_enc.dim() == 2 && x.size(1) == W_enc.size(0), "topk_encode: x [batch, d_in] and W_enc [d_in, d_sae] disagree (got ",
              x.sizes(), " and ", W_enc.sizes(), ")");
  TORCH_CHECK(k > 0 && k <= W_enc.size(1), "k must be in 1..d_sae (got ", k, ")");
  const auto out = TopKEncodeFn::apply(x, W_enc, b_enc, k);
  return {out[0], out[1]};
}

TopKCode batch_topk_encode(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b_enc,
                           int64_t total) {
  TORCH_CHECK(x.dim() == 2 && W_enc.dim() == 2 && x.size(1) == W_enc.size(0), "batch_topk_encode: x [batch, d_in] and W_enc [d_in, d_sae] disagree (got ",
              x.sizes(), " and ", W_enc.sizes(), ")");
  TORCH_CHECK(total > 0, "batch_topk_encode: the number of kept entries must be positive (got ", total, ")");
  const auto out = TopKEncodeFn::apply(x, W_enc, b_enc, -total);
  return {out[0], out[1]};
}

torch::Tensor topk_decode(const torch::Tensor& values, const torch::Tensor& indices, const torch::Tensor& W_dec) {
  TORCH_CHECK(values.sizes() == indices.sizes() && values.dim() == 2, "topk_decode: values and indices must both be [batch, k]");
  return TopKDecodeFn::apply(values, indices, W_dec);
}

torch::Tensor topk_to_dense(const TopKCode& code, int64_t d_sae) {
  return torch::zeros({code.values.size(0), d_sae}, code.values.options()).scatter(1, code.indices, code.values);
}

}  // namespace saelab
