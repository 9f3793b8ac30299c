// BatchTopK's selection: the `total` largest positive entries of a [rows, n] matrix, found by a
// radix select on the entries' bit patterns instead of a sort. Positive IEEE floats order as their
// bits do, so one histogram of the top 16 bits says which bucket holds the total-th largest entry;
// only that bucket's entries are then ordered. Four passes over the matrix in all (histogram,
// bucket, row counts, row lists), each split over the threads by rows.
#include "sae/topk_kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>
#include <vector>

namespace saelab {
namespace {

template <class T>
using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;

// The top 16 bits of an entry's pattern. Positive entries have sign bit 0: buckets below 2^15,
// ordered as the values are; negative ones fall in the upper half, and positive NaN above +inf's
// bucket, where the scan starts. Bucket 0 also counts +0, which is not selected.
template <class T>
inline uint32_t bucket_of(T v) {
  Bits<T> u;
  std::memcpy(&u, &v, sizeof(T));
  return static_cast<uint32_t>(u >> (8 * sizeof(T) - 16));
}

constexpr int64_t kBuckets = int64_t{1} << 15;
// Every pattern's bucket, negative ones included, so that counting needs no branch.
constexpr int64_t kAllBuckets = int64_t{1} << 16;

template <class T>
BatchSelection select_largest(const T* p, int64_t B, int64_t n, int64_t total, const torch::TensorOptions& opts) {
  // Row ranges, one per thread (at most): each fills its own histogram and lists.
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), B));
  const int64_t per = (B + parts - 1) / parts;
  auto for_parts = [&](const std::function<void(int64_t part, int64_t r0, int64_t r1)>& f) {
    at::parallel_for(0, parts, 1, [&](int64_t a, int64_t b) {
      for (int64_t part = a; part < b; ++part) f(part, part * per, std::min(B, (part + 1) * per));
    });
  };
  std::vector<std::vector<int64_t>> hist(static_cast<size_t>(parts));
  for_parts([&](int64_t part, int64_t r0, int64_t r1) {
    std::vector<int64_t>& h = hist[static_cast<size_t>(part)];
    h.assign(kAllBuckets, 0);
    for (const T* q = p + r0 * n; q < p + r1 * n; ++q) ++h[bucket_of(*q)];
  });
  std::vector<int64_t> counts(kBuckets, 0);
  for (const auto& h : hist) {
    for (int64_t b = 0; b < kBuckets; ++b) counts[static_cast<size_t>(b)] += h[static_cast<size_t>(b)];
  }
  // The bucket of the total-th largest positive entry, and how many come before it.
  int64_t above = 0, bucket = -1;
  for (int64_t b = bucket_of(std::numeric_limits<T>::infinity()); b >= 0; --b) {
    if (above + counts[static_cast<size_t>(b)] >= total) {
      bucket = b;
      break;
    }
    above += counts[static_cast<size_t>(b)];
  }
  // The threshold t: entries above it are kept, and of the entries equal to it only the first
  // `ties` in row-major order. No bucket: fewer positive entries than `total`, all kept (t = 0).
  T t = 0;
  int64_t ties = 0, need = 0;
  std::vector<T> in_bucket;
  if (bucket >= 0) {
    std::vector<std::vector<T>> found(static_cast<size_t>(parts));
    for_parts([&](int64_t part, int64_t r0, int64_t r1) {
      for (const T* q = p + r0 * n; q < p + r1 * n; ++q) {
        if (*q > 0 && bucket_of(*q) == static_cast<uint32_t>(bucket)) found[static_cast<size_t>(part)].push_back(*q);
      }
    });
    for (const auto& f : found) in_bucket.insert(in_bucket.end(), f.begin(), f.end());
    need = total - above;
    if (need > static_cast<int64_t>(in_bucket.size())) {
      // Only where the bucket's count held entries that are not positive (+0 in bucket 0, NaN
      // beside +inf): every positive entry is kept.
      bucket = -1;
    }
  }
  if (bucket >= 0) {  // 1 ≤ need ≤ in_bucket.size()
    std::nth_element(in_bucket.begin(), in_bucket.begin() + (need - 1), in_bucket.end(), std::greater<T>());
    t = in_bucket[static_cast<size_t>(need - 1)];
    const int64_t greater = std::count_if(in_bucket.begin(), in_bucket.end(), [t](T v) { return v > t; });
    ties = need - greater;
  }
  // Per row: entries above t, and entries equal to t (only counted when some tie is kept).
  std::vector<int64_t> row_above(static_cast<size_t>(B), 0), row_equal(static_cast<size_t>(B), 0);
  for_parts([&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* q = p + r * n;
      int64_t a = 0, e = 0;
      for (int64_t j = 0; j < n; ++j) {
        a += q[j] > t;
        e += q[j] == t;
      }
      row_above[static_cast<size_t>(r)] = a;
      row_equal[static_cast<size_t>(r)] = bucket >= 0 ? e : 0;
    }
  });
  std::vector<int64_t> row_ties(static_cast<size_t>(B), 0);
  int64_t widest = 1;
  for (int64_t r = 0; r < B; ++r) {
    const int64_t take = std::min(row_equal[static_cast<size_t>(r)], ties);
    row_ties[static_cast<size_t>(r)] = take;
    ties -= take;
    widest = std::max(widest, row_above[static_cast<size_t>(r)] + take);
  }
  BatchSelection out;
  out.values = torch::zeros({B, widest}, opts);
  out.indices = torch::zeros({B, widest}, opts.dtype(torch::kInt64));
  T* vp = out.values.data_ptr<T>();
  int64_t* ip = out.indices.data_ptr<int64_t>();
  for_parts([&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* q = p + r * n;
      int64_t c = 0, tied = row_ties[static_cast<size_t>(r)];
      for (int64_t j = 0; j < n; ++j) {
        if (q[j] > t || (q[j] == t && tied > 0 && tied--)) {
          vp[r * widest + c] = q[j];
          ip[r * widest + c++] = j;
        }
      }
    }
  });
  const torch::Tensor kept = torch::tensor(row_above, opts.dtype(torch::kInt64)) +
                             torch::tensor(row_ties, opts.dtype(torch::kInt64));
  out.valid = torch::arange(widest, kept.options()).unsqueeze(0) < kept.unsqueeze(1);
  return out;
}

}  // namespace

BatchSelection batch_select(const torch::Tensor& pre_in, int64_t total) {
  TORCH_CHECK(pre_in.dim() == 2 && pre_in.is_floating_point(), "batch_select: pre must be a [rows, n] float matrix");
  TORCH_CHECK(total > 0, "batch_select: the number of kept entries must be positive (got ", total, ")");
  const torch::Tensor pre = pre_in.detach().contiguous();
  BatchSelection out;
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "batch_select", [&] {
    out = select_largest<scalar_t>(pre.data_ptr<scalar_t>(), pre.size(0), pre.size(1), total, pre.options());
  });
  return out;
}

}  // namespace saelab
