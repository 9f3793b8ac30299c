#include "sae/topk_kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <tuple>
#include <vector>

namespace saelab {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Sᵀ M for the sparse S [batch, d_sae] holding `values` [batch, k] at (b, indices[b, j]); M is
// [batch, d]; the result [d_sae, d]. The entries are sorted by latent once (a stable sort keeps
// rows ascending within a latent) and, since a row's k latents are distinct, the sparse matrix is
// built already coalesced instead of paying for a generic coalesce.
torch::Tensor sparse_t_mm(const torch::Tensor& values, const torch::Tensor& indices, const torch::Tensor& M,
                          int64_t d_sae) {
  const int64_t B = values.size(0), k = values.size(1);
  auto [latents, perm] = torch::sort(indices.reshape(-1), /*stable=*/true, 0, /*descending=*/false);
  const torch::Tensor rows = torch::div(perm, k, "floor");
  torch::Tensor S = at::_sparse_coo_tensor_unsafe(torch::stack({latents, rows}),
                                                  values.reshape(-1).index_select(0, perm), {d_sae, B});
  S._coalesced_(true);
  return torch::mm(S, M);
}

template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t c = 0; c < n; ++c) acc += a[c] * b[c];
  return acc;
}

// out[b, j] = g[b] · W[indices[b, j]] for W [d_sae, d] and g [batch, d]: batch·k dot products read
// straight from the rows, without gathering them into a [batch, k, d] copy first.
torch::Tensor gathered_dots(const torch::Tensor& g_in, const torch::Tensor& indices_in, const torch::Tensor& W_in) {
  const torch::Tensor g = g_in.contiguous(), W = W_in.contiguous(), indices = indices_in.contiguous();
  const int64_t B = indices.size(0), k = indices.size(1), d = W.size(1);
  torch::Tensor out = torch::empty({B, k}, g.options());
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "gathered_dots", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* Wp = W.data_ptr<scalar_t>();
    const int64_t* ip = indices.data_ptr<int64_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, B, 16, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        for (int64_t j = 0; j < k; ++j) op[b * k + j] = dot(gp + b * d, Wp + ip[b * k + j] * d, d);
      }
    });
  });
  return out;
}

// Per-row top-k of a [rows, n] matrix, sorted descending (as torch::topk). One pass per row with a
// sorted buffer of the k best so far: after the first few hundred entries almost every value fails
// the single comparison against the buffer's minimum, so this costs about one read of the matrix
// (torch::topk copies each row into a scratch buffer and partially sorts it: ~3x slower here).
template <class T>
void row_topk_kernel(const T* pre, int64_t rows, int64_t n, int64_t k, T* out_values, int64_t* out_indices) {
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    std::vector<T> vals(static_cast<size_t>(k));
    std::vector<int64_t> idx(static_cast<size_t>(k));
    for (int64_t r = begin; r < end; ++r) {
      const T* row = pre + r * n;
      int64_t filled = 0;
      for (int64_t c = 0; c < n; ++c) {
        const T v = row[c];
        if (filled == k && !(v > vals[k - 1])) continue;
        // Insert v keeping vals descending; the smallest drops out when full.
        int64_t pos = filled < k ? filled++ : k - 1;
        while (pos > 0 && vals[pos - 1] < v) {
          vals[pos] = vals[pos - 1];
          idx[pos] = idx[pos - 1];
          --pos;
        }
        vals[pos] = v;
        idx[pos] = c;
      }
      std::copy(vals.begin(), vals.end(), out_values + r * k);
      std::copy(idx.begin(), idx.end(), out_indices + r * k);
    }
  });
}

std::tuple<torch::Tensor, torch::Tensor> row_topk(const torch::Tensor& pre_in, int64_t k) {
  // Insertion costs O(k): for k near n a full sort is better.
  if (k * 16 > pre_in.size(1) || !pre_in.is_floating_point()) return pre_in.topk(k, 1);
  const torch::Tensor pre = pre_in.contiguous();
  torch::Tensor values = torch::empty({pre.size(0), k}, pre.options());
  torch::Tensor indices = torch::empty({pre.size(0), k}, pre.options().dtype(torch::kInt64));
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "row_topk", [&] {
    row_topk_kernel(pre.data_ptr<scalar_t>(), pre.size(0), pre.size(1), k, values.data_ptr<scalar_t>(),
                    indices.data_ptr<int64_t>());
  });
  return {values, indices};
}

class TopKEncodeFn : public torch::autograd::Function<TopKEncodeFn> {
 public:
  // k > 0: the k largest per row. k < 0: the |k| largest over the whole batch (BatchTopK), stored
  // per row padded to the fullest row's count, padding masked to value 0 with no gradient.
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& W_enc,
                             const torch::Tensor& b_enc, int64_t k) {
    torch::Tensor top, indices, keep;
    if (k > 0) {
      const torch::Tensor pre = torch::addmm(b_enc, x, W_enc);  // [batch, d_sae]: the one dense GEMM
      std::tie(top, indices) = row_topk(pre, k);
      keep = top > 0;  // ReLU
    } else {
      const torch::Tensor pre = torch::addmm(b_enc, x, W_enc);  // [batch, d_sae]: the one dense GEMM
      const int64_t B = pre.size(0), d_sae = pre.size(1);
      const int64_t total = std::min<int64_t>(-k, pre.numel());
      const torch::Tensor flat_idx = std::get<1>(pre.reshape(-1).topk(total, 0, true, /*sorted=*/false));
      const torch::Tensor counts = torch::div(flat_idx, d_sae, "floor").bincount({}, B);  // [batch] kept per row
      const int64_t widest = std::max<int64_t>(1, counts.max().item<int64_t>());
      std::tie(top, indices) = row_topk(pre, widest);  // a row's kept entries are its largest
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
    // grad_x[b] = Σ_j g[b, j] W_enc[:, idx[b, j]]: a weighted bag of rows of W_encᵀ. The
    // transposed copy (d_in × d_sae) costs far less than gathering strided columns.
    const int64_t B = indices.size(0), k = indices.size(1);
    const torch::Tensor offsets = torch::arange(0, B * k, k, indices.options());
    const torch::Tensor grad_x = std::get<0>(torch::embedding_bag(W_enc.t().contiguous(), indices.reshape(-1), offsets,
                                                                  false, /*mode sum=*/0, false, g.reshape(-1), false));
    // x^T S, stored contiguous like W_enc (the optimizer's elementwise passes are faster on it).
    const torch::Tensor grad_W_enc =
        sparse_t_mm(g, indices, x, d_sae).t().contiguous();
    const torch::Tensor grad_b_enc = torch::zeros({d_sae}, g.options()).index_add_(0, indices.reshape(-1), g.reshape(-1));
    return {grad_x, grad_W_enc, grad_b_enc, torch::Tensor()};
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
    const torch::Tensor grad_W_dec = sparse_t_mm(values, indices, g, W_dec.size(0));
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
