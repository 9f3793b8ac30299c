// Threshold-type sparse codes (standard, gated, jumprelu): the entries of the pre-activations
// above a per-latent floor, selected block by block while the encoder GEMM runs, and the band
// below the floor that JumpReLU's threshold gradient still reaches (topk_kernels.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "core/simd.h"
#include "sae/topk_kernels.h"

namespace saelab {
namespace {

// Appends row r's entries of a block above their floor to the row's list (values, latents, count);
// returns false when the list would pass `cap`. Blocks of 16 with none above are skipped after
// one vector comparison.
template <class T>
SAELAB_INLINE bool select_above_one(const T* row, const T* floor, int64_t w, int64_t offset, T* vals, int64_t* idx,
                                    int64_t& count, int64_t cap) {
  constexpr int64_t kBlock = 16;
  auto take = [&](int64_t c) {
    if (!(row[c] > floor[c])) return true;
    if (count == cap) return false;
    vals[count] = row[c];
    idx[count++] = c + offset;
    return true;
  };
  int64_t c = 0;
  for (; c + kBlock <= w; c += kBlock) {
    int hit = 0;
#pragma omp simd reduction(| : hit)
    for (int64_t j = 0; j < kBlock; ++j) hit |= row[c + j] > floor[c + j];
    if (!hit) continue;
    for (int64_t j = 0; j < kBlock; ++j) {
      if (!take(c + j)) return false;
    }
  }
  for (; c < w; ++c) {
    if (!take(c)) return false;
  }
  return true;
}
SAELAB_VECTOR_CLONES bool select_above(const float* row, const float* floor, int64_t w, int64_t offset, float* vals,
                                       int64_t* idx, int64_t& count, int64_t cap) {
  return select_above_one(row, floor, w, offset, vals, idx, count, cap);
}
bool select_above(const double* row, const double* floor, int64_t w, int64_t offset, double* vals, int64_t* idx,
                  int64_t& count, int64_t cap) {
  return select_above_one(row, floor, w, offset, vals, idx, count, cap);
}

// band[c] = 1 where lower[c] < row[c] ≤ upper[c], else 0.
template <class T>
SAELAB_INLINE void mark_band_one(const T* row, const T* lower, const T* upper, int64_t w, uint8_t* band) {
#pragma omp simd
  for (int64_t c = 0; c < w; ++c) band[c] = static_cast<uint8_t>((row[c] > lower[c]) & !(row[c] > upper[c]));
}
SAELAB_VECTOR_CLONES void mark_band(const float* row, const float* lower, const float* upper, int64_t w, uint8_t* band) {
  mark_band_one(row, lower, upper, w, band);
}
void mark_band(const double* row, const double* lower, const double* upper, int64_t w, uint8_t* band) {
  mark_band_one(row, lower, upper, w, band);
}

// acc[c] += p[c] where band[c].
template <class T>
SAELAB_INLINE void masked_accumulate_one(T* acc, const T* p, const uint8_t* band, int64_t w) {
#pragma omp simd
  for (int64_t c = 0; c < w; ++c) acc[c] += band[c] ? p[c] : T(0);
}
SAELAB_VECTOR_CLONES void masked_accumulate(float* acc, const float* p, const uint8_t* band, int64_t w) {
  masked_accumulate_one(acc, p, band, w);
}
void masked_accumulate(double* acc, const double* p, const uint8_t* band, int64_t w) {
  masked_accumulate_one(acc, p, band, w);
}

}  // namespace

ThresholdCode threshold_select(const torch::Tensor& x, const torch::Tensor& W_enc, const torch::Tensor& b,
                               const torch::Tensor& floor, int64_t cap, const torch::Tensor& b_dec,
                               const torch::Tensor& band_floor, int64_t max_overflow) {
  TORCH_CHECK(x.dim() == 2 && W_enc.dim() == 2 && x.size(1) == W_enc.size(0), "threshold_select: x [batch, d_in] and W_enc [d_in, d_sae] disagree (got ",
              x.sizes(), " and ", W_enc.sizes(), ")");
  TORCH_CHECK(floor.dim() == 1 && floor.size(0) == W_enc.size(1) && b.sizes() == floor.sizes(),
              "threshold_select: b and floor must be [d_sae]");
  TORCH_CHECK(cap > 0, "threshold_select: cap must be positive");
  torch::NoGradGuard no_grad;
  const torch::Tensor xc = (b_dec.defined() ? x - b_dec : x).contiguous();
  const int64_t B = xc.size(0), d_sae = W_enc.size(1), block = std::min(encoder_block(B), d_sae);
  const auto opts = xc.options();
  const torch::Tensor bias = b.detach().to(opts.dtype()), lower = floor.detach().to(opts.dtype()).contiguous();
  torch::Tensor vals = torch::empty({B, cap}, opts), idx = torch::empty({B, cap}, opts.dtype(torch::kInt64));
  std::vector<int64_t> count(static_cast<size_t>(B), 0);
  torch::Tensor buffer = torch::empty({B, block}, opts);
  std::atomic<bool> over{false};
  std::atomic<int64_t> overflowing{0};
  std::vector<uint8_t> row_over(static_cast<size_t>(B), 0);
  torch::Tensor band, band_lower;
  if (band_floor.defined()) {
    TORCH_CHECK(band_floor.sizes() == floor.sizes(), "threshold_select: band_floor must be [d_sae]");
    band = torch::empty({B, d_sae}, opts.dtype(torch::kUInt8));
    band_lower = band_floor.detach().to(opts.dtype()).contiguous();
  }
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "threshold_select", [&] {
    scalar_t* vp = vals.data_ptr<scalar_t>();
    int64_t* ip = idx.data_ptr<int64_t>();
    const scalar_t* fp = lower.data_ptr<scalar_t>();
    const scalar_t* bfp = band.defined() ? band_lower.data_ptr<scalar_t>() : nullptr;
    uint8_t* bp = band.defined() ? band.data_ptr<uint8_t>() : nullptr;
    for (int64_t j0 = 0; j0 < d_sae && !over.load(); j0 += block) {
      const int64_t w = std::min(block, d_sae - j0);
      torch::Tensor out = buffer.narrow(1, 0, w);
      torch::addmm_out(out, bias.narrow(0, j0, w), xc, W_enc.detach().narrow(1, j0, w).to(opts.dtype()));
      const scalar_t* op = buffer.data_ptr<scalar_t>();
      at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end && !over.load(std::memory_order_relaxed); ++r) {
          if (row_over[r] == 0 && !select_above(op + r * block, fp + j0, w, j0, vp + r * cap, ip + r * cap, count[r], cap)) {
            // A row past the cap: left to the caller's dense path while few rows are.
            row_over[r] = 1;
            if (++overflowing > max_overflow) over = true;
          }
          if (bp != nullptr) mark_band(op + r * block, bfp + j0, fp + j0, w, bp + r * d_sae + j0);
        }
      });
    }
  });
  if (over.load()) return {};
  std::vector<int64_t> overflow_rows;
  for (int64_t r = 0; r < B; ++r) {
    if (row_over[static_cast<size_t>(r)] != 0) {
      overflow_rows.push_back(r);
      count[static_cast<size_t>(r)] = 0;
    }
  }
  const int64_t widest = std::max<int64_t>(1, *std::max_element(count.begin(), count.end()));
  const torch::Tensor counts = torch::tensor(count, opts.dtype(torch::kInt64));
  const torch::Tensor valid = torch::arange(widest, counts.options()).unsqueeze(0) < counts.unsqueeze(1);
  ThresholdCode code;
  code.valid = valid;
  code.pre = vals.narrow(1, 0, widest).masked_fill(valid.logical_not(), 0);
  code.indices = idx.narrow(1, 0, widest).masked_fill(valid.logical_not(), 0);
  code.band = band;
  if (!overflow_rows.empty()) code.overflow = torch::tensor(overflow_rows, opts.dtype(torch::kInt64));
  return code;
}

torch::Tensor band_dots(const torch::Tensor& g_in, const torch::Tensor& W_in, const torch::Tensor& band_in) {
  TORCH_CHECK(g_in.dim() == 2 && W_in.dim() == 2 && g_in.size(1) == W_in.size(1), "band_dots: g [batch, d] and W [d_sae, d] disagree");
  TORCH_CHECK(band_in.scalar_type() == torch::kUInt8 && band_in.dim() == 2 && band_in.size(0) == g_in.size(0) &&
                  band_in.size(1) == W_in.size(0), "band_dots: band must be [batch, d_sae] uint8");
  torch::NoGradGuard no_grad;
  const torch::Tensor g = g_in.detach().contiguous(), W = W_in.detach().to(g.dtype()), band = band_in.contiguous();
  const int64_t B = g.size(0), d_sae = W.size(0), block = std::min(encoder_block(B), d_sae);
  torch::Tensor out = torch::zeros({d_sae}, g.options());
  torch::Tensor buffer = torch::empty({B, block}, g.options());
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), B));
  const int64_t per = (B + parts - 1) / parts;
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "band_dots", [&] {
    std::vector<scalar_t> partial(static_cast<size_t>(parts * block));
    for (int64_t j0 = 0; j0 < d_sae; j0 += block) {
      const int64_t w = std::min(block, d_sae - j0);
      torch::Tensor P = buffer.narrow(1, 0, w);
      torch::mm_out(P, g, W.narrow(0, j0, w).t());
      const scalar_t* pp = buffer.data_ptr<scalar_t>();
      const uint8_t* bp = band.data_ptr<uint8_t>();
      at::parallel_for(0, parts, 1, [&](int64_t a, int64_t b) {
        for (int64_t part = a; part < b; ++part) {
          scalar_t* acc = partial.data() + part * block;
          std::fill(acc, acc + w, scalar_t(0));
          for (int64_t r = part * per; r < std::min(B, (part + 1) * per); ++r) {
            masked_accumulate(acc, pp + r * block, bp + r * d_sae + j0, w);
          }
        }
      });
      scalar_t* op = out.data_ptr<scalar_t>() + j0;
      for (int64_t part = 0; part < parts; ++part) {
        for (int64_t c = 0; c < w; ++c) op[c] += partial[static_cast<size_t>(part * block + c)];
      }
    }
  });
  return out;
}

}  // namespace saelab
