// SAE folder loader (sae/sae_io.h load_sae). The input is cfg.json, a line "--8<--", then
// sae_weights.safetensors; an optional third part is sparsity.safetensors (fuzz/fuzz_util.h
// kSeparator). An SAE that loads must run (encode and decode a small batch with the shapes its
// config gives) and survive save_sae / load_sae.
#include <torch/torch.h>

#include <string>

#include "fuzz/fuzz_target.h"
#include "fuzz/fuzz_sae.h"
#include "fuzz/fuzz_util.h"
#include "sae/sae_io.h"

SAELAB_FUZZ_TARGET(sae_folder) {
  using namespace saelab;
  static const bool once = (torch::set_num_threads(1), true);
  (void)once;
  const auto parts = fuzz::split_parts(fuzz::as_string(data, size), 3);
  const fuzz::fs::path dir = fuzz::fresh_dir("sae");
  fuzz::write_bytes(dir / "cfg.json", parts[0]);
  if (parts.size() > 1) fuzz::write_bytes(dir / "sae_weights.safetensors", parts[1]);
  if (parts.size() > 2) fuzz::write_bytes(dir / "sparsity.safetensors", parts[2]);
  fuzz::rejecting([&] {
    const LoadedSae loaded = load_sae(dir.string());
    const SaeConfig& c = loaded.sae.config();
    fuzz::require_sae_runs(loaded);
    // JumpReLU stores exp(log(threshold)), which may round a tiny threshold to 0 and be rejected.
    if (c.architecture == Architecture::kJumpReLU) return;
    fuzz::must_succeed("saving and reloading a loaded SAE", [&] {
      const fuzz::fs::path again = fuzz::fresh_dir("sae-again");
      save_sae(again.string(), loaded.sae, loaded.metadata, loaded.log10_density);
      const LoadedSae back = load_sae(again.string());
      const SaeConfig& b = back.sae.config();
      fuzz::require(b.architecture == c.architecture && b.d_in == c.d_in && b.d_sae == c.d_sae &&
                        b.apply_b_dec_to_input == c.apply_b_dec_to_input && (!uses_k(c.architecture) || b.k == c.k),
                    "an SAE's config survives save_sae / load_sae");
      for (const auto& [name, t] : loaded.sae.state()) {
        fuzz::require(torch::equal(t, back.sae.state().at(name)), "an SAE's tensors survive save_sae / load_sae");
      }
    });
  });
  return 0;
}
