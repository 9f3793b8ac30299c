// safetensors reader (core/safetensors.h): the input is a whole file. A file the reader accepts
// must survive a round trip: written back with save_safetensors and read with load_safetensors, it
// holds the same tensors (names, dtypes, shapes, bytes) and metadata.
#include <torch/torch.h>

#include <cstring>

#include "core/safetensors.h"
#include "fuzz/fuzz_target.h"
#include "fuzz/fuzz_util.h"

namespace {

bool same_bytes(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const size_t n = static_cast<size_t>(a.numel()) * a.element_size();
  return n == 0 || std::memcmp(a.data_ptr(), b.data_ptr(), n) == 0;
}

}  // namespace

SAELAB_FUZZ_TARGET(safetensors) {
  using namespace saelab;
  static const bool once = (torch::set_num_threads(1), true);
  (void)once;
  const std::string bytes = fuzz::as_string(data, size);
  SafetensorsFile f;
  bool parsed = false;
  fuzz::rejecting([&] {
    f = parse_safetensors(bytes, "fuzz input");
    parsed = true;
  });
  if (!parsed) return 0;
  for (const auto& [name, t] : f.tensors) {
    fuzz::require(t.defined() && t.is_contiguous() && t.device().is_cpu(), "a parsed tensor is contiguous on the CPU");
  }
  std::vector<std::pair<std::string, torch::Tensor>> tensors(f.tensors.begin(), f.tensors.end());
  const std::string path = (fuzz::scratch_dir() / "roundtrip.safetensors").string();
  SafetensorsFile back;
  fuzz::must_succeed("writing and rereading an accepted safetensors file", [&] {
    save_safetensors(path, tensors, f.metadata);
    back = load_safetensors(path);
  });
  fuzz::require(back.metadata == f.metadata, "metadata survives a round trip");
  fuzz::require(back.tensors.size() == f.tensors.size(), "every tensor survives a round trip");
  for (const auto& [name, t] : f.tensors) {
    auto it = back.tensors.find(name);
    fuzz::require(it != back.tensors.end() && same_bytes(t, it->second), "a tensor survives a round trip unchanged");
  }
  return 0;
}
