#include "core/runtime.h"

#include <torch/torch.h>

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
  torch::manual_seed(options.seed);
}

}  // namespace saelab
