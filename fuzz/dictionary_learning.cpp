// dictionary_learning folder loader (sae/sae_dictionary_learning.cpp through load_sae), and with it
// the restricted torch.save unpickler (core/torch_pickle.h). The input is config.json, a line
// "--8<--", then ae.pt (a zip archive). An SAE that loads must encode and decode a small batch.
#include <torch/torch.h>

#include <string>

#include "fuzz/fuzz_target.h"
#include "fuzz/fuzz_sae.h"
#include "fuzz/fuzz_util.h"
#include "sae/sae_io.h"

SAELAB_FUZZ_TARGET(dictionary_learning) {
  using namespace saelab;
  static const bool once = (torch::set_num_threads(1), true);
  (void)once;
  const auto parts = fuzz::split_parts(fuzz::as_string(data, size), 2);
  const fuzz::fs::path dir = fuzz::fresh_dir("dl");
  fuzz::write_bytes(dir / "config.json", parts[0]);
  fuzz::write_bytes(dir / "ae.pt", parts.size() > 1 ? parts[1] : std::string());
  fuzz::rejecting([&] {
    fuzz::require_sae_runs(load_sae(dir.string()));
  });
  return 0;
}
