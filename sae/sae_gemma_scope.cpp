// Gemma Scope folders: params.npz, NumPy arrays read with no Python (core/npz.h), as SAELens'
// gemma_2_sae_huggingface_loader and circuit-tracer's load_gemma_scope_transcoder read them:
//   W_enc [d_in, F] (w_enc in Gemma Scope 2), W_dec [F, d_out], b_enc [F], b_dec [d_out],
//   threshold [F]; Gemma Scope 2's affine_skip_connection [d_in, d_out] is x · A, a skip path
//   W_skip = Aᵀ
//   code  JumpReLU: pre · 1[pre > θ], pre = x W_enc + b_enc (no b_dec subtracted; SAELens gives
//         these SAEs apply_b_dec_to_input false); ŷ = f W_dec + b_dec (+ x A)
// The same file is an SAE or a transcoder: the folder records no hook. Give them with `saelab
// convert DIR OUT --hook H [--hook-out H']`.
#include <filesystem>
#include <set>

#include "core/npz.h"
#include "sae/sae_formats.h"

namespace saelab::formats {

namespace fs = std::filesystem;

LoadedSae load_gemma_scope(const std::string& dir) {
  const std::string path = (fs::path(dir) / "params.npz").string();
  std::map<std::string, torch::Tensor> w;
  for (auto& [name, t] : load_npz(path)) w[name.rfind("w_", 0) == 0 ? "W_" + name.substr(2) : name] = t;
  const bool skip = w.count("affine_skip_connection") > 0;
  std::set<std::string> known = {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"};
  if (skip) known.insert("affine_skip_connection");
  refuse_unknown_tensors(w, known, path, "Gemma Scope JumpReLU coder");
  TORCH_CHECK(w.count("W_enc") && w.at("W_enc").dim() == 2, path, ": array 'W_enc' [d_in, d_sae] is missing");
  TORCH_CHECK(w.count("W_dec") && w.at("W_dec").dim() == 2, path, ": array 'W_dec' [d_sae, d_out] is missing");
  SaeConfig c;
  c.architecture = Architecture::kJumpReLU;
  c.d_in = w.at("W_enc").size(0);
  c.d_sae = w.at("W_enc").size(1);
  c.d_out = w.at("W_dec").size(1);
  c.apply_b_dec_to_input = false;
  c.skip = skip;
  c.jumprelu_bandwidth = 0.1;  // circuit-tracer's, for a loaded JumpReLU
  try {
    c.validate();
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, path, ": ", e.msg());
  }
  std::map<std::string, torch::Tensor> p;
  p["W_enc"] = weight(w, "W_enc", {c.d_in, c.d_sae}, path);
  p["W_dec"] = weight(w, "W_dec", {c.d_sae, c.d_out}, path);
  p["b_enc"] = weight(w, "b_enc", {c.d_sae}, path);
  p["b_dec"] = weight(w, "b_dec", {c.d_out}, path);
  p["threshold"] = weight(w, "threshold", {c.d_sae}, path);
  TORCH_CHECK((p["threshold"] >= 0).all().item<bool>(), path, ": a JumpReLU threshold is negative (SAELens and "
              "circuit-tracer would read this file differently)");
  if (skip) p["W_skip"] = weight(w, "affine_skip_connection", {c.d_in, c.d_out}, path).t().contiguous();
  SaeMetadata m;
  return LoadedSae{Sae(c, p, path), m, {}, "Gemma Scope params.npz",
                   {"Gemma Scope's params.npz records no hook: give it (and a transcoder's output hook) with "
                    "`saelab convert DIR OUT --hook NAME --hook-out NAME`"}};
}

}  // namespace saelab::formats
