// The differences between the two LibTorch builds saelab compiles against (cmake/libtorch.cmake):
// Debian 12's 1.13 and the 2.x inside the torch wheel. Code that depends on the version asks here;
// nothing else tests TORCH_VERSION_MAJOR.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#include <string>

namespace saelab::torch_version {

/// The key torch::optim keeps a parameter's state under: its TensorImpl's address, printed as a
/// string by 1.13, the pointer itself since 2.0.
#if TORCH_VERSION_MAJOR >= 2
inline void* optimizer_state_key(const torch::Tensor& p) { return p.unsafeGetTensorImpl(); }
#else
inline std::string optimizer_state_key(const torch::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }
#endif

/// "1.13.0" or "2.11.0", as the headers say: the LibTorch saelab was built against (bench, bench-sae).
inline std::string libtorch_version() { return TORCH_VERSION; }

}  // namespace saelab::torch_version
