#include "core/runtime.h"

#include <torch/torch.h>

#include <malloc.h>

#include <thread>

namespace saelab {

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void init_runtime(const RuntimeOptions& options) {
  TORCH_CHECK(options.threads >= 0, "--threads must be >= 0 (got ", options.threads, ")");
  torch::set_num_threads(options.threads == 0 ? hardware_threads() : options.threads);
  at::globalContext().setFlushDenormal(true);
  // glibc serves allocations above 32 MiB with fresh mmaps whose pages fault in on first touch:
  // ~80 ms per [4096, 16384] float tensor here, more than an elementwise pass over it. SAE steps
  // allocate several such tensors, so keep freed memory in the heap for reuse instead.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  torch::manual_seed(options.seed);
}

}  // namespace saelab
