#include "sae/topk_kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "core/simd.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
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
SAELAB_INLINE T dot(const T* a, const T* b, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t c = 0; c < n; ++c) acc += a[c] * b[c];
  return acc;
}

// out[j] = g · W[idx[j]] for j < k: one row of gathered_dots.
template <class T>
SAELAB_INLINE void row_dots(const T* g, const T* W, const int64_t* idx, int64_t k, int64_t d, T* out) {
  for (int64_t j = 0; j < k; ++j) out[j] = dot(g, W + idx[j] * d, d);
}
SAELAB_VECTOR_CLONES void row_dots_of(const float* g, const float* W, const int64_t* idx, int64_t k, int64_t d, float* out) {
  row_dots(g, W, idx, k, d, out);
}
void row_dots_of(const double* g, const double* W, const int64_t* idx, int64_t k, int64_t d, double* out) {
  row_dots(g, W, idx, k, d, out);
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
        row_dots_of(gp + b * d, Wp, ip + b * k, k, d, op + b * k);
      }
    });
  });
  return out;
}

// The k largest entries of one row, sorted descending (as torch::topk), into vals / idx. One pass
// with a sorted buffer of the k best so far; blocks of 16 entries none of which beats the
// buffer's minimum are skipped after one vector comparison, which after the first few hundred
// entries is almost every block: about one read of the row (torch::topk copies each row into a
// scratch buffer and partially sorts it: several times slower here).
// `filled` is how many of vals / idx already hold earlier entries of the row (0, or k when a row is
// scanned block by block); `offset` is added to the column indices recorded.
template <class T>
SAELAB_INLINE void row_topk_one(const T* row, int64_t n, int64_t k, T* vals, int64_t* idx, int64_t filled = 0,
                                int64_t offset = 0) {
  auto insert = [&](T v, int64_t c) {
    if (filled == k && !(v > vals[k - 1])) return;
    int64_t pos = filled < k ? filled++ : k - 1;  // keep vals descending; the smallest drops out when full
    while (pos > 0 && vals[pos - 1] < v) {
      vals[pos] = vals[pos - 1];
      idx[pos] = idx[pos - 1];
      --pos;
    }
    vals[pos] = v;
    idx[pos] = c + offset;
  };
  constexpr int64_t kBlock = 16;
  int64_t c = 0;
  for (; c < n && filled < k; ++c) insert(row[c], c);
  for (; c + kBlock <= n; c += kBlock) {
    const T least = vals[k - 1];
    int hit = 0;  // an OR of comparisons vectorises where a float max reduction does not
#pragma omp simd reduction(| : hit)
    for (int64_t j = 0; j < kBlock; ++j) hit |= row[c + j] > least;
    if (!hit) continue;
    for (int64_t j = 0; j < kBlock; ++j) insert(row[c + j], c + j);
  }
  for (; c < n; ++c) insert(row[c], c);
}
SAELAB_VECTOR_CLONES void row_topk_of(const float* row, int64_t n, int64_t k, float* vals, int64_t* idx,
                                      int64_t filled = 0, int64_t offset = 0) {
  row_topk_one(row, n, k, vals, idx, filled, offset);
}
void row_topk_of(const double* row, int64_t n, int64_t k, double* vals, int64_t* idx, int64_t filled = 0,
                 int64_t offset = 0) {
  row_topk_one(row, n, k, vals, idx, filled, offset);
}

// The k largest entries of a whole row, sorted descending with ties in column order (the order
// row_topk_one gives), for rows only a few times wider than k, where row_topk_one's insertions
// cost more than the scan. The row is cut into chunks of 16 (at least k of them): the k-th largest
// of the chunks' maxima is at most the row's k-th largest entry (k entries, one a chunk, are at
// least it), so the top k are all at or above it; only the chunks whose maximum reaches it are
// scanned, and only the entries that do (about 1.4 k for n = 32 k) are ranked. scratch: n values,
// n columns and n positions, plus 2 n / 16 values. Returns false (nothing written) on a NaN.
template <class T>
SAELAB_INLINE bool row_topk_chunked_one(const T* row, int64_t n, int64_t k, T* vals, int64_t* idx, T* maxima,
                                        T* cand_v, int64_t* cand_i, int64_t* order) {
  constexpr int64_t kChunk = 16;
  const int64_t full = n / kChunk, chunks = (n + kChunk - 1) / kChunk;
  int bad = 0;
  for (int64_t q = 0; q < full; ++q) {
    const T* p = row + q * kChunk;
    T best = p[0];
#pragma omp simd reduction(max : best) reduction(| : bad)
    for (int64_t c = 0; c < kChunk; ++c) {
      best = p[c] > best ? p[c] : best;
      bad |= p[c] != p[c];
    }
    maxima[q] = best;
  }
  if (full < chunks) {
    T best = row[full * kChunk];
    for (int64_t c = full * kChunk; c < n; ++c) {
      best = row[c] > best ? row[c] : best;
      bad |= row[c] != row[c];
    }
    maxima[full] = best;
  }
  if (bad != 0) return false;
  T* ranked = maxima + chunks;
  std::copy(maxima, maxima + chunks, ranked);
  std::nth_element(ranked, ranked + (k - 1), ranked + chunks, std::greater<T>());
  const T least = ranked[k - 1];
  int64_t m = 0;
  for (int64_t q = 0; q < chunks; ++q) {
    if (maxima[q] < least) continue;
    const int64_t end = std::min(n, (q + 1) * kChunk);
    for (int64_t c = q * kChunk; c < end; ++c) {  // branch-free: the count moves on candidates only
      cand_v[m] = row[c];
      cand_i[m] = c;
      m += row[c] >= least;
    }
  }
  // cand_i ascending, so (value descending, column ascending) is the order of row_topk_one.
  for (int64_t j = 0; j < m; ++j) order[j] = j;
  auto before = [&](int64_t a, int64_t b) { return cand_v[a] > cand_v[b] || (cand_v[a] == cand_v[b] && a < b); };
  if (m > k) std::nth_element(order, order + (k - 1), order + m, before);
  std::sort(order, order + k, before);
  for (int64_t j = 0; j < k; ++j) {
    vals[j] = cand_v[order[j]];
    idx[j] = cand_i[order[j]];
  }
  return true;
}
SAELAB_VECTOR_CLONES bool row_topk_chunked(const float* row, int64_t n, int64_t k, float* vals, int64_t* idx,
                                           float* maxima, float* cand_v, int64_t* cand_i, int64_t* order) {
  return row_topk_chunked_one(row, n, k, vals, idx, maxima, cand_v, cand_i, order);
}
bool row_topk_chunked(const double* row, int64_t n, int64_t k, double* vals, int64_t* idx, double* maxima,
                      double* cand_v, int64_t* cand_i, int64_t* order) {
  return row_topk_chunked_one(row, n, k, vals, idx, maxima, cand_v, cand_i, order);
}

// Per-row top-k of a [rows, n] matrix (n >= 16 k), sorted descending: by chunk maxima for rows up
// to 64 k wide, by insertion with skipped blocks for wider ones (and for a row holding a NaN,
// which it ranks as row_topk_one always has).
template <class T>
void row_topk_kernel(const T* pre, int64_t rows, int64_t n, int64_t k, T* out_values, int64_t* out_indices) {
  const bool chunked = n <= 64 * k;
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    const size_t width = chunked ? static_cast<size_t>(n) : 0;
    std::vector<T> values(2 * width / 16 + 2 + width);
    std::vector<int64_t> columns(2 * width);
    T* maxima = values.data();
    T* cand_v = values.data() + 2 * width / 16 + 2;
    for (int64_t r = begin; r < end; ++r) {
      if (chunked && row_topk_chunked(pre + r * n, n, k, out_values + r * k, out_indices + r * k, maxima, cand_v,
                                      columns.data(), columns.data() + width)) {
        continue;
      }
      row_topk_of(pre + r * n, n, k, out_values + r * k, out_indices + r * k);
    }
  });
}

}  // namespace

std::tuple<torch::Tensor, torch::Tensor> row_topk(const torch::Tensor& pre_in, int64_t k) {
  TORCH_CHECK(pre_in.dim() == 2 && k > 0 && k <= pre_in.size(1), "row_topk: pre must be [rows, n] with 1 <= k <= n (got ",
              pre_in.sizes(), " and k ", k, ")");
  // For k near n a full sort is better.
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

namespace {

// out[i] = Σ values[b, j] over the entries with indices[b, j] = i, summed in entry order (as
// index_add_ does; its 1-D form makes a BLAS call an entry, which cost more than the rest of the
// bias gradient).
torch::Tensor latent_sums(const torch::Tensor& values_in, const torch::Tensor& indices_in, int64_t d_sae) {
  const torch::Tensor values = values_in.contiguous(), indices = indices_in.contiguous();
  torch::Tensor out = torch::zeros({d_sae}, values.options());
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "latent_sums", [&] {
    const scalar_t* vp = values.data_ptr<scalar_t>();
    const int64_t* ip = indices.data_ptr<int64_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t n = values.numel();
    for (int64_t e = 0; e < n; ++e) {
      TORCH_CHECK(ip[e] >= 0 && ip[e] < d_sae, "latent index ", ip[e], " outside 0..", d_sae - 1);
      op[ip[e]] += vp[e];
    }
  });
  return out;
}

// The selected pre-activations as a differentiable [batch, k] code: forward returns ReLU(top),
// where top [batch, k] holds the pre-activations (x − b_dec) W_enc + b_enc at `indices`, computed
// without gradient by the caller (entries dropped by the selection hold 0). Backward: the gradient
// reaches W_enc, b_enc (and b_dec, x) through the selected positive entries only. W_enc's gradient
// is recorded in the sink when there is one (a factored term, no dense matrix).
class GatheredEncodeFn : public torch::autograd::Function<GatheredEncodeFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& W_enc,
                               const torch::Tensor& b_enc, const torch::Tensor& b_dec, const torch::Tensor& indices,
                               const torch::Tensor& top, int64_t sink, bool centred, bool relu) {
    ctx->save_for_backward({x, W_enc, b_dec, indices, top});
    ctx->saved_data["d_sae"] = W_enc.size(1);
    ctx->saved_data["sink"] = sink;
    ctx->saved_data["centred"] = centred;
    ctx->saved_data["relu"] = relu;
    (void)b_enc;
    return relu ? top.clamp_min(0) : top.clone();
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &W_enc = saved[1], &b_dec = saved[2], &indices = saved[3], &top = saved[4];
    const int64_t d_sae = ctx->saved_data["d_sae"].toInt();
    auto* sink = reinterpret_cast<SparseGrad*>(static_cast<intptr_t>(ctx->saved_data["sink"].toInt()));
    const bool centred = ctx->saved_data["centred"].toBool();
    const torch::Tensor g = ctx->saved_data["relu"].toBool() ? grads[0] * (top > 0).to(grads[0].dtype())  // ReLU'
                                                             : grads[0];
    // d pre[b, i] = g at the selected (b, i), zero elsewhere: a sparse [batch, d_sae] matrix S.
    const torch::Tensor grad_b_enc = latent_sums(g, indices, d_sae);
    torch::Tensor grad_x, grad_W_enc, grad_b_dec;
    if (ctx->needs_input_grad(1)) {
      const torch::Tensor xc = centred ? x - b_dec : x;
      if (sink != nullptr) {
        sink->add_code(g, indices, xc);
      } else {
        // x^T S, stored contiguous like W_enc (the optimizer's elementwise passes are faster on it).
        grad_W_enc = sparse_t_mm(g, indices, xc, d_sae).t().contiguous();
      }
    }
    // Σ_b ∂L/∂x_b = Σ_b S[b] W_encᵀ = W_enc (Σ_b S[b]) = W_enc · grad_b_enc: one matrix-vector product.
    if (centred && ctx->needs_input_grad(3)) grad_b_dec = -torch::mv(W_enc, grad_b_enc);
    if (ctx->needs_input_grad(0)) {
      // grad_x[b] = Σ_j g[b, j] W_enc[:, idx[b, j]]: a weighted bag of rows of W_encᵀ. The
      // transposed copy (d_in × d_sae) costs far less than gathering strided columns.
      const int64_t B = indices.size(0), k = indices.size(1);
      const torch::Tensor offsets = torch::arange(0, B * k, k, indices.options());
      grad_x = std::get<0>(torch::embedding_bag(W_enc.t().contiguous(), indices.reshape(-1), offsets, false,
                                                /*mode sum=*/0, false, g.reshape(-1), false));
    }
    return {grad_x, grad_W_enc, grad_b_enc, grad_b_dec, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

int64_t sink_handle(SparseGrad* sink) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(sink)); }

// Custom functions take no undefined tensors: no centring is an empty b_dec and a flag.
torch::Tensor centre_or_empty(const torch::Tensor& b_dec, const torch::Tensor& x) {
  return b_dec.defined() ? b_dec : torch::empty({0}, x.options());
}

// Per-row top-k of pre = xc W_enc + b_enc without the [batch, d_sae] matrix: the GEMM runs block of
// columns by block into one reused buffer, and each block is merged into the rows' running top-k
// while it is still in cache. Same result as row_topk on the full product (ties aside), and faster
// than the full GEMM alone: the product never goes out to memory and back.
std::tuple<torch::Tensor, torch::Tensor> blocked_topk(const torch::Tensor& xc, const torch::Tensor& W_enc,
                                                      const torch::Tensor& b_enc, int64_t k) {
  const int64_t B = xc.size(0), d_sae = W_enc.size(1), block = encoder_block(B);
  torch::Tensor values = torch::empty({B, k}, xc.options());
  torch::Tensor indices = torch::empty({B, k}, xc.options().dtype(torch::kInt64));
  torch::Tensor buffer = torch::empty({B, block}, xc.options());
  float* vp = values.data_ptr<float>();
  int64_t* ip = indices.data_ptr<int64_t>();
  for (int64_t j0 = 0; j0 < d_sae; j0 += block) {
    const int64_t w = std::min(block, d_sae - j0);
    torch::Tensor out = buffer.narrow(1, 0, w);
    torch::addmm_out(out, b_enc.narrow(0, j0, w), xc, W_enc.narrow(1, j0, w));
    const float* op = buffer.data_ptr<float>();
    const int64_t filled = j0 == 0 ? 0 : k;
    at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) row_topk_of(op + r * block, w, k, vp + r * k, ip + r * k, filled, j0);
    });
  }
  return {values, indices};
}

// k > 0: the k largest per row, sorted descending. k < 0: the |k| largest over the whole batch
// (BatchTopK, batch_select), each row's in column order, padded to the fullest row's count;
// padding (and negative entries) masked to value 0.
TopKCode select_and_encode(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b_enc, int64_t k,
                           const torch::Tensor& b_dec, SparseGrad* sink) {
  torch::Tensor top, indices;
  {
    torch::NoGradGuard no_grad;
    // The centred input: [batch, d_in], far cheaper than folding b_dec W_enc into the bias (a pass
    // over W_enc).
    const torch::Tensor xc = b_dec.defined() ? x - b_dec : x;
    const int64_t d_sae = W_enc.size(1);
    torch::Tensor keep;
    if (k > 0 && xc.scalar_type() == torch::kFloat32 && W_enc.scalar_type() == torch::kFloat32 &&
        k * 16 <= encoder_block(xc.size(0)) && d_sae >= 2 * encoder_block(xc.size(0))) {
      std::tie(top, indices) = blocked_topk(xc.contiguous(), W_enc, b_enc.to(torch::kFloat32), k);
      keep = top > 0;  // ReLU
    } else if (k > 0) {
      std::tie(top, indices) = row_topk(torch::addmm(b_enc, xc, W_enc), k);  // [batch, d_sae]: the one dense GEMM
      keep = top > 0;
    } else {
      const BatchSelection sel = batch_select(torch::addmm(b_enc, xc, W_enc), -k);
      top = sel.values;
      indices = sel.indices;
      keep = sel.valid;
    }
    top = top * keep.to(top.dtype());  // entries dropped (or negative) become 0: value and gradient
  }
  const torch::Tensor values = GatheredEncodeFn::apply(x, W_enc, b_enc, centre_or_empty(b_dec, x), indices, top,
                                                       sink_handle(sink), b_dec.defined(), true);
  return {values, indices};
}

// ‖W_i‖ per row; backward: ∂/∂W_i = g_i W_i / ‖W_i‖, as a norm term of the sink when there is one.
class RowNormFn : public torch::autograd::Function<RowNormFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& W, int64_t sink) {
    const torch::Tensor n = W.norm(2, {1});
    ctx->save_for_backward({W, n});
    ctx->saved_data["sink"] = sink;
    return n;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &W = saved[0], &n = saved[1];
    auto* sink = reinterpret_cast<SparseGrad*>(static_cast<intptr_t>(ctx->saved_data["sink"].toInt()));
    // a zero row has no direction: its subgradient is taken as 0 (torch's norm backward does the same)
    const torch::Tensor scale = torch::where(n > 0, grads[0] / n, torch::zeros_like(n));
    if (sink != nullptr) {
      sink->add_self(scale);
      return {torch::Tensor(), torch::Tensor()};
    }
    return {scale.unsqueeze(1) * W, torch::Tensor()};
  }
};

class TopKDecodeFn : public torch::autograd::Function<TopKDecodeFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& values, const torch::Tensor& indices,
                               const torch::Tensor& W_dec, int64_t sink) {
    const int64_t B = values.size(0), k = values.size(1);
    const torch::Tensor offsets = torch::arange(0, B * k, k, indices.options());
    // embedding_bag sums the selected rows weighted by `values` without materialising them.
    const torch::Tensor out = std::get<0>(torch::embedding_bag(W_dec, indices.reshape(-1), offsets, false,
                                                               /*mode sum=*/0, false, values.reshape(-1), false));
    ctx->save_for_backward({values, indices, W_dec});
    ctx->saved_data["sink"] = sink;
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &values = saved[0], &indices = saved[1], &W_dec = saved[2];
    const torch::Tensor& g = grads[0];  // [batch, d_in]
    auto* sink = reinterpret_cast<SparseGrad*>(static_cast<intptr_t>(ctx->saved_data["sink"].toInt()));
    torch::Tensor grad_values, grad_W_dec;
    if (ctx->needs_input_grad(0)) grad_values = gathered_dots(g, indices, W_dec);
    if (!ctx->needs_input_grad(2)) {
      // a detached decoder (gated's auxiliary reconstruction): no gradient to W_dec
    } else if (sink != nullptr) {
      sink->add_code(values, indices, g);
    } else {
      grad_W_dec = sparse_t_mm(values, indices, g, W_dec.size(0));
    }
    return {grad_values, torch::Tensor(), grad_W_dec, torch::Tensor()};
  }
};

}  // namespace

int64_t encoder_block(int64_t batch) { return std::max<int64_t>(256, (int64_t{1} << 23) / std::max<int64_t>(1, batch) / 16 * 16); }

TopKCode topk_encode(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b_enc, int64_t k,
                     const torch::Tensor& b_dec, SparseGrad* W_enc_grad) {
  TORCH_CHECK(x.dim() == 2 && W_enc.dim() == 2 && x.size(1) == W_enc.size(0), "topk_encode: x [batch, d_in] and W_enc [d_in, d_sae] disagree (got ",
              x.sizes(), " and ", W_enc.sizes(), ")");
  TORCH_CHECK(k > 0 && k <= W_enc.size(1), "k must be in 1..d_sae (got ", k, ")");
  return select_and_encode(x, W_enc, b_enc, k, b_dec, W_enc_grad);
}

TopKCode batch_topk_encode(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b_enc,
                           int64_t total, const torch::Tensor& b_dec, SparseGrad* W_enc_grad) {
  TORCH_CHECK(x.dim() == 2 && W_enc.dim() == 2 && x.size(1) == W_enc.size(0), "batch_topk_encode: x [batch, d_in] and W_enc [d_in, d_sae] disagree (got ",
              x.sizes(), " and ", W_enc.sizes(), ")");
  TORCH_CHECK(total > 0, "batch_topk_encode: the number of kept entries must be positive (got ", total, ")");
  return select_and_encode(x, W_enc, b_enc, -total, b_dec, W_enc_grad);
}

torch::Tensor gathered_encode(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b_enc,
                              const torch::Tensor& indices, const torch::Tensor& pre, const torch::Tensor& b_dec,
                              SparseGrad* W_enc_grad, bool relu) {
  TORCH_CHECK(indices.dim() == 2 && pre.sizes() == indices.sizes() && indices.size(0) == x.size(0),
              "gathered_encode: indices and pre must be [batch, k] alike");
  return GatheredEncodeFn::apply(x, W_enc, b_enc, centre_or_empty(b_dec, x), indices, pre.detach(),
                                 sink_handle(W_enc_grad), b_dec.defined(), relu);
}

torch::Tensor topk_decode(const torch::Tensor& values, const torch::Tensor& indices, const torch::Tensor& W_dec,
                          SparseGrad* W_dec_grad) {
  TORCH_CHECK(values.sizes() == indices.sizes() && values.dim() == 2, "topk_decode: values and indices must both be [batch, k]");
  return TopKDecodeFn::apply(values, indices, W_dec, sink_handle(W_dec_grad));
}

torch::Tensor topk_to_dense(const TopKCode& code, int64_t d_sae) {
  // scatter_add: a threshold code's padding (value 0 at latent 0) may share a row with latent 0 itself
  return torch::zeros({code.values.size(0), d_sae}, code.values.options()).scatter_add(1, code.indices, code.values);
}

torch::Tensor row_norms(const torch::Tensor& W_dec, SparseGrad* sink) {
  TORCH_CHECK(W_dec.dim() == 2, "row_norms: W_dec must be [d_sae, d_in] (got ", W_dec.sizes(), ")");
  return RowNormFn::apply(W_dec, sink_handle(sink));
}

}  // namespace saelab
