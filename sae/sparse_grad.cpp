#include "sae/sparse_grad.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "core/simd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace saelab {

void SparseGrad::add(const torch::Tensor& values, const torch::Tensor& latents, const torch::Tensor& rows,
                     const torch::Tensor& M) {
  TORCH_CHECK(values.dim() == 1 && latents.sizes() == values.sizes() && rows.sizes() == values.sizes(),
              "SparseGrad::add: values, latents and rows must be [n] alike");
  TORCH_CHECK(M.dim() == 2, "SparseGrad::add: M must be [rows, d] (got ", M.sizes(), ")");
  TORCH_CHECK(latents.scalar_type() == torch::kInt64 && rows.scalar_type() == torch::kInt64,
              "SparseGrad::add: latents and rows must be int64");
  const torch::Tensor v = values.detach().contiguous(), l = latents.contiguous(), r = rows.contiguous();
  const int64_t n = v.numel();
  const int64_t* lp = l.data_ptr<int64_t>();
  const int64_t* rp = r.data_ptr<int64_t>();
  // Sorted by latent once here, for both walks of the update over the latents: a counting sort
  // (stable, so rows stay in order within a latent; linear where a comparison sort of the
  // entries cost more than the rest of a small step). Entries with value 0 are dropped.
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "SparseGrad::add", [&] {
    const scalar_t* vp = v.data_ptr<scalar_t>();
    int64_t top = -1, kept = 0;
    for (int64_t e = 0; e < n; ++e) {
      if (vp[e] == 0) continue;
      TORCH_CHECK(lp[e] >= 0 && rp[e] >= 0 && rp[e] < M.size(0), "SparseGrad::add: entry ", e, " has latent ", lp[e],
                  " and row ", rp[e], " (M has ", M.size(0), " rows)");
      top = std::max(top, lp[e]);
      ++kept;
    }
    if (kept == 0) return;
    std::vector<int64_t> offsets(static_cast<size_t>(top + 2), 0);
    for (int64_t e = 0; e < n; ++e) {
      if (vp[e] != 0) ++offsets[static_cast<size_t>(lp[e] + 1)];
    }
    for (size_t i = 1; i < offsets.size(); ++i) offsets[i] += offsets[i - 1];
    Term t;
    t.values = torch::empty({kept}, v.options());
    t.latents = torch::empty({kept}, l.options());
    t.rows = torch::empty({kept}, r.options());
    scalar_t* tv = t.values.data_ptr<scalar_t>();
    int64_t* tl = t.latents.data_ptr<int64_t>();
    int64_t* tr = t.rows.data_ptr<int64_t>();
    std::vector<int64_t> next(offsets.begin(), offsets.end() - 1);
    for (int64_t e = 0; e < n; ++e) {
      if (vp[e] == 0) continue;
      const int64_t p = next[static_cast<size_t>(lp[e])]++;
      tv[p] = vp[e];
      tl[p] = lp[e];
      tr[p] = rp[e];
    }
    t.offsets = torch::tensor(offsets, l.options());
    t.M = M.contiguous();
    terms_.push_back(std::move(t));
  });
}

void SparseGrad::add_code(const torch::Tensor& values, const torch::Tensor& indices, const torch::Tensor& M) {
  TORCH_CHECK(values.dim() == 2 && indices.sizes() == values.sizes() && M.size(0) == values.size(0),
              "SparseGrad::add_code: values and indices must be [batch, k] and M [batch, d]");
  const int64_t B = values.size(0), k = values.size(1);
  const torch::Tensor rows = torch::arange(B, indices.options()).unsqueeze(1).expand({B, k}).reshape(-1);
  add(values.reshape(-1), indices.reshape(-1), rows, M);
}

void SparseGrad::add_self(const torch::Tensor& scale) {
  TORCH_CHECK(scale.dim() == 1, "SparseGrad::add_self: scale must be [d_sae] (got ", scale.sizes(), ")");
  const torch::Tensor s = scale.detach();
  self_ = self_.defined() ? self_ + s : s.contiguous();
}

torch::Tensor SparseGrad::dense(int64_t d_sae, const torch::Tensor& param) const {
  TORCH_CHECK(!empty(), "SparseGrad::dense: no gradient was recorded");
  torch::Tensor out;
  if (self_.defined()) {
    TORCH_CHECK(param.defined() && param.dim() == 2 && param.size(0) == d_sae && self_.size(0) == d_sae,
                "SparseGrad::dense: a norm term needs the [d_sae, d] parameter");
    out = self_.to(param.dtype()).unsqueeze(1) * param.detach();
  }
  for (const Term& t : terms_) {
    const torch::Tensor S = torch::sparse_coo_tensor(torch::stack({t.latents, t.rows}), t.values.to(t.M.dtype()),
                                                     {d_sae, t.M.size(0)});
    const torch::Tensor part = torch::mm(S, t.M);
    out = out.defined() ? out + part : part;
  }
  return out;
}

namespace {

// The terms sorted by latent, with offsets, so that latent i's entries of term t are
// offsets[t][i] … offsets[t][i + 1].
struct ByLatent {
  struct Part {
    torch::Tensor values, rows, offsets, M;  // keep the storage alive
    const float* v = nullptr;
    const int64_t* r = nullptr;
    const int64_t* off = nullptr;
    const float* m = nullptr;
  };
  std::vector<Part> parts;
  int64_t d = 0;
  torch::Tensor self_scale;    // [d_sae] or undefined (SparseGrad::add_self)
  const float* self = nullptr;

  ByLatent(const SparseGrad& grad, int64_t d_sae, int64_t d_) : d(d_) {
    if (grad.self_scale().defined()) {
      TORCH_CHECK(grad.self_scale().size(0) == d_sae, "a recorded norm gradient has ", grad.self_scale().size(0),
                  " latents, the parameter ", d_sae);
      self_scale = grad.self_scale().to(torch::kFloat32).contiguous();
      self = self_scale.data_ptr<float>();
    }
    for (const SparseGrad::Term& t : grad.terms()) {
      TORCH_CHECK(t.M.size(1) == d, "a recorded gradient term has width ", t.M.size(1), ", the parameter ", d);
      Part p;  // the term's entries are sorted by latent (SparseGrad::add)
      p.values = t.values.to(torch::kFloat32).contiguous();
      p.rows = t.rows.contiguous();
      const int64_t named = t.offsets.size(0) - 1;  // latents 0 … named − 1 have offsets
      TORCH_CHECK(named <= d_sae, "a recorded gradient names latent ", named - 1, ", beyond d_sae ", d_sae);
      p.offsets = named == d_sae ? t.offsets
                                 : torch::cat({t.offsets, t.offsets.narrow(0, named, 1).expand({d_sae - named})}).contiguous();
      p.M = t.M.to(torch::kFloat32).contiguous();
      p.v = p.values.data_ptr<float>();
      p.r = p.rows.data_ptr<int64_t>();
      p.off = p.offsets.data_ptr<int64_t>();
      p.m = p.M.data_ptr<float>();
      parts.push_back(std::move(p));
    }
  }

  // buf[0, d) = latent i's gradient; w is latent i's row of the parameter (for the norm term).
  void gradient(int64_t i, float* buf, const float* w) const;
};

// buf = Σ_e v[e] · M[r[e]] over e in [begin, end). Columns go 64 at a time, the 64 sums held in
// eight 8-wide vectors (AVX2 registers) across the entries, so buf is read and written once a
// latent instead of once an entry; each element's sum runs over e in order as before.
// (-Wpsabi: GCC notes that a 32-byte vector returned by value has another ABI without AVX; the
// helpers are always inlined, so no call returns one.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
using Vec8 = float __attribute__((vector_size(32)));
SAELAB_INLINE Vec8 load8(const float* p) {
  Vec8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
SAELAB_INLINE void store8(float* p, const Vec8& v) { std::memcpy(p, &v, sizeof v); }

SAELAB_VECTOR_CLONES void add_rows(float* buf, const float* v, const int64_t* r, int64_t begin, int64_t end,
                                   const float* M, int64_t d) {
  if (begin == end) return;
  int64_t c0 = 0;
  for (; c0 + 64 <= d; c0 += 64) {
    Vec8 acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = load8(buf + c0 + 8 * j);
    for (int64_t e = begin; e < end; ++e) {
      const Vec8 a = {v[e], v[e], v[e], v[e], v[e], v[e], v[e], v[e]};
      const float* row = M + r[e] * d + c0;
      for (int j = 0; j < 8; ++j) acc[j] += a * load8(row + 8 * j);
    }
    for (int j = 0; j < 8; ++j) store8(buf + c0 + 8 * j, acc[j]);
  }
  if (c0 == d) return;
  for (int64_t e = begin; e < end; ++e) {
    const float a = v[e];
    const float* row = M + r[e] * d;
#pragma omp simd
    for (int64_t c = c0; c < d; ++c) buf[c] += a * row[c];
  }
}
#pragma GCC diagnostic pop

SAELAB_VECTOR_CLONES void scaled_copy(float* buf, float a, const float* w, int64_t d) {
#pragma omp simd
  for (int64_t c = 0; c < d; ++c) buf[c] = a * w[c];
}

void ByLatent::gradient(int64_t i, float* buf, const float* w) const {
  if (self != nullptr) {
    TORCH_CHECK(w != nullptr, "a norm gradient term applies to latent rows only");
    scaled_copy(buf, self[i], w, d);
  } else {
    std::fill(buf, buf + d, 0.0f);
  }
  for (const Part& p : parts) add_rows(buf, p.v, p.r, p.off[i], p.off[i + 1], p.m, d);
}

SAELAB_VECTOR_CLONES void remove_parallel_component(float* g, const float* w, int64_t d) {
  float dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t c = 0; c < d; ++c) dot += g[c] * w[c];
#pragma omp simd
  for (int64_t c = 0; c < d; ++c) g[c] -= dot * w[c];
}

SAELAB_VECTOR_CLONES double squared_norm(const float* g, int64_t d) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t c = 0; c < d; ++c) acc += g[c] * g[c];
  return acc;
}

// Latents per block of W_enc: 16 (one 64-byte line of each row) to 64, as wide as keeps the block's
// two [width, d] gradient buffers within ~512 KB of cache.
int64_t column_block(int64_t d) {
  return std::clamp<int64_t>((int64_t{1} << 19) / (8 * d) / 16 * 16, 16, 64);
}

void check_param(const torch::Tensor& param, const char* what) {
  TORCH_CHECK(param.dim() == 2 && param.scalar_type() == torch::kFloat32 && param.is_contiguous(), what,
              " needs a contiguous float32 matrix (got ", param.sizes(), " ", param.dtype(), ")");
}

}  // namespace

// gt[r * ld + c] = g[c * d + r] for c < width, r < d.
static SAELAB_VECTOR_CLONES void transpose_block(const float* g, int64_t width, int64_t d, float* gt, int64_t ld) {
  for (int64_t r = 0; r < d; ++r) {
    for (int64_t c = 0; c < width; ++c) gt[r * ld + c] = g[c * d + r];
  }
}

// adam_span on `rows` runs of `width` elements, run r at offset r * stride of p, m and v and at
// r * ld of g.
static SAELAB_VECTOR_CLONES void adam_strided(float* p, float* m, float* v, int64_t stride, const float* g,
                                              int64_t ld, int64_t width, int64_t rows, float scale, const AdamStep& a) {
  const float b1 = a.beta1, b2 = a.beta2;
  for (int64_t r = 0; r < rows; ++r) {
    float* pr = p + r * stride;
    float* mr = m + r * stride;
    float* vr = v + r * stride;
    const float* gr = g + r * ld;
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) {
      const float gi = scale * gr[c];
      const float mi = b1 * mr[c] + (1 - b1) * gi;
      const float vi = b2 * vr[c] + (1 - b2) * gi * gi;
      mr[c] = mi;
      vr[c] = vi;
      pr[c] -= a.step_size * mi / (std::sqrt(vi) * a.inv_sqrt_bc2 + a.eps);
    }
  }
}

void adam_span(float* p, float* m, float* v, const float* g, float scale, int64_t n, const AdamStep& a) {
  adam_strided(p, m, v, 0, g, 0, n, 1, scale, a);
}

double sparse_grad_norm_sq(const torch::Tensor& param, const SparseGrad& grad, LatentAxis axis, bool remove_parallel) {
  check_param(param, "sparse_grad_norm_sq");
  const bool rows = axis == LatentAxis::kRows;
  TORCH_CHECK(rows || !remove_parallel, "sparse_grad_norm_sq: parallel components are removed from rows only");
  const int64_t d_sae = rows ? param.size(0) : param.size(1), d = rows ? param.size(1) : param.size(0);
  const ByLatent by(grad, d_sae, d);
  const float* w = param.data_ptr<float>();
  return at::parallel_reduce(
      0, d_sae, 16, 0.0,
      [&](int64_t begin, int64_t end, double acc) {
        std::vector<float> buf(static_cast<size_t>(d));
        for (int64_t i = begin; i < end; ++i) {
          by.gradient(i, buf.data(), rows ? w + i * d : nullptr);
          if (remove_parallel) remove_parallel_component(buf.data(), w + i * d, d);
          acc += squared_norm(buf.data(), d);
        }
        return acc;
      },
      std::plus<double>());
}

void fused_sparse_adam(torch::Tensor& param, const SparseGrad& grad, LatentAxis axis, bool remove_parallel,
                       double clip_scale, torch::Tensor& m, torch::Tensor& v, const AdamStep& adam, bool renormalise) {
  check_param(param, "fused_sparse_adam");
  TORCH_CHECK(m.sizes() == param.sizes() && v.sizes() == param.sizes() && m.is_contiguous() && v.is_contiguous() &&
                  m.scalar_type() == torch::kFloat32 && v.scalar_type() == torch::kFloat32,
              "fused_sparse_adam: Adam's state must be contiguous float32 tensors shaped like the parameter");
  const bool rows = axis == LatentAxis::kRows;
  TORCH_CHECK(rows || (!remove_parallel && !renormalise), "fused_sparse_adam: only latent rows are projected or renormalised");
  const int64_t d_sae = rows ? param.size(0) : param.size(1), d = rows ? param.size(1) : param.size(0);
  const ByLatent by(grad, d_sae, d);
  float* P = param.data_ptr<float>();
  float* Mp = m.data_ptr<float>();
  float* Vp = v.data_ptr<float>();
  const float scale = static_cast<float>(clip_scale);
  if (rows) {
    at::parallel_for(0, d_sae, 16, [&](int64_t begin, int64_t end) {
      std::vector<float> buf(static_cast<size_t>(d));
      for (int64_t i = begin; i < end; ++i) {
        float* w = P + i * d;
        by.gradient(i, buf.data(), w);
        if (remove_parallel) remove_parallel_component(buf.data(), w, d);
        adam_span(w, Mp + i * d, Vp + i * d, buf.data(), scale, d, adam);
        if (renormalise) {
          const float n = std::max(static_cast<float>(std::sqrt(squared_norm(w, d))), 1e-12f);
#pragma omp simd
          for (int64_t c = 0; c < d; ++c) w[c] /= n;
        }
      }
    });
    return;
  }
  // Latents along columns: a block of latents' gradients is built latent by latent, transposed in
  // the buffer, and applied row by row of the parameter (`width` contiguous elements each).
  const int64_t block = column_block(d), blocks = (d_sae + block - 1) / block;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> g(static_cast<size_t>(block * d)), gt(static_cast<size_t>(block * d));
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t i0 = blk * block, width = std::min(block, d_sae - i0);
      for (int64_t c = 0; c < width; ++c) by.gradient(i0 + c, g.data() + c * d, nullptr);
      transpose_block(g.data(), width, d, gt.data(), block);
      adam_strided(P + i0, Mp + i0, Vp + i0, d_sae, gt.data(), block, width, d, scale, adam);
    }
  });
}

}  // namespace saelab
