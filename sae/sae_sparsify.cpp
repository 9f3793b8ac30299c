// EleutherAI sparsify folders: cfg.json + sae.safetensors, one per hookpoint of a run (the
// folder's name is the hookpoint, a module path such as layers.6; the run's config.json sits in
// the parent). Read as sparsify/sparse_coder.py reads and computes them:
//   cfg.json   d_in, num_latents (0: d_in · expansion_factor), k, activation ("topk" | "groupmax"),
//              skip_connection, transcode (and, in older files, signed)
//   tensors    encoder.weight [d_sae, d_in], encoder.bias [d_sae], W_dec [d_sae, d_in], b_dec [d_in],
//              W_skip [d_in, d_in] with skip_connection
//   code       the k largest of ReLU((x − b_dec) encoder.weightᵀ + encoder.bias); x̂ = f W_dec + b_dec
//              (+ x W_skipᵀ with skip_connection)
//   transcode  a transcoder: no b_dec subtracted from x, which is the module's input; the target is
//              its output (same width)
// A sparsify hookpoint is a module: saelab names an SAE's hook <hookpoint>.output, a transcoder's
// <hookpoint>.input → <hookpoint>.output.
#include <filesystem>
#include <set>

#include "core/files.h"
#include "core/json_options.h"
#include "core/safetensors.h"
#include "sae/sae_formats.h"

namespace saelab::formats {

namespace fs = std::filesystem;

LoadedSae load_sparsify(const std::string& dir) {
  const std::string cfg_path = (fs::path(dir) / "cfg.json").string();
  const nlohmann::json cfg = load_json_file(cfg_path, "sparsify SAE config");
  const Fields top(cfg, cfg_path);
  const bool transcode = top.get<bool>("transcode", false);
  const bool skip = top.get<bool>("skip_connection", false);
  if (top.get<bool>("signed", false)) {
    top.fail("signed", "is true: early sparsify's signed top-k (no ReLU, largest |pre|) is not supported");
  }
  const std::string activation = top.get<std::string>("activation", "topk");
  if (activation != "topk") {
    top.fail("activation", "is '" + activation + "'; saelab reads sparsify's topk SAEs (groupmax keeps one latent per "
                           "group, which saelab does not model)");
  }
  SaeConfig c;
  c.architecture = Architecture::kTopK;
  c.d_in = top.require<int64_t>("d_in");
  const int64_t num_latents = top.get<int64_t>("num_latents", 0);
  const int64_t expansion = top.get<int64_t>("expansion_factor", 32);
  if (num_latents < 0) top.fail("num_latents", "must be >= 0 (got " + std::to_string(num_latents) + ")");
  if (expansion <= 0 || expansion > (int64_t{1} << 20)) top.fail("expansion_factor", "must be in 1..2^20");
  c.d_sae = num_latents > 0 ? num_latents : c.d_in * expansion;
  c.k = top.get<int64_t>("k", 32);
  c.apply_b_dec_to_input = !transcode;
  c.skip = skip;
  try {
    c.validate();
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, cfg_path, ": ", e.msg());
  }
  const std::string weights_path = (fs::path(dir) / "sae.safetensors").string();
  const std::map<std::string, torch::Tensor> w = load_safetensors(weights_path).tensors;
  TORCH_CHECK(skip || !w.count("W_skip"), weights_path, ": tensor 'W_skip' is present but cfg.json's skip_connection is "
              "not true (sparsify would refuse the file)");
  std::set<std::string> known = {"encoder.weight", "encoder.bias", "W_dec", "b_dec"};
  if (skip) known.insert("W_skip");
  refuse_unknown_tensors(w, known, weights_path, "sparsify SAE");
  std::map<std::string, torch::Tensor> p;
  p["W_enc"] = weight(w, "encoder.weight", {c.d_sae, c.d_in}, weights_path).t().contiguous();
  p["b_enc"] = weight(w, "encoder.bias", {c.d_sae}, weights_path);
  p["W_dec"] = weight(w, "W_dec", {c.d_sae, c.d_in}, weights_path);
  p["b_dec"] = weight(w, "b_dec", {c.d_in}, weights_path);
  if (skip) p["W_skip"] = weight(w, "W_skip", {c.d_in, c.d_in}, weights_path);

  SaeMetadata m;
  const Fields saelab = top.object("saelab");
  // The folder is the hookpoint (<hookpoint>/seed<N> when a run trained several seeds).
  fs::path folder = fs::path(dir).lexically_normal();
  if (folder.filename().empty()) folder = folder.parent_path();
  if (folder.filename().string().rfind("seed", 0) == 0 && folder.has_parent_path()) folder = folder.parent_path();
  const std::string hookpoint = folder.filename().string();
  m.hook_name = saelab.get<std::string>("hook_name", hookpoint + (transcode ? ".input" : ".output"));
  if (transcode) m.hook_name_out = saelab.get<std::string>("hook_name_out", hookpoint + ".output");
  m.model_name = saelab.get<std::string>("model_name", "");
  m.context_size = saelab.get<int64_t>("context_size", 0);
  m.model_sha256 = saelab.get<std::string>("model_sha256", "");
  // The run's config.json (one folder up) names the model and the context length.
  const fs::path run_cfg = folder.parent_path() / "config.json";
  if (m.model_name.empty() && fs::is_regular_file(run_cfg)) {
    const nlohmann::json run = load_json_file(run_cfg.string(), "sparsify run config");
    if (run.is_object()) {
      const Fields r(run, run_cfg.string());
      m.model_name = r.get<std::string>("model", "");
      m.context_size = r.get<int64_t>("ctx_len", 0);
      m.dataset_path = r.get<std::string>("dataset", "");
    }
  }
  return LoadedSae{Sae(c, p, weights_path), m, {}, "sparsify", {}};
}

void save_sparsify(const std::string& dir, const Sae& sae, const SaeMetadata& meta, torch::Dtype dtype) {
  const SaeConfig& c = sae.config();
  TORCH_CHECK(c.architecture == Architecture::kTopK, "sparsify SAEs are TopK SAEs; a ", architecture_name(c.architecture),
              " SAE cannot be written as one (write it as saelens or saelens-v5)");
  const bool transcode = !meta.hook_name_out.empty() || c.out_width() != c.d_in || c.skip;
  TORCH_CHECK(c.out_width() == c.d_in, "a sparsify transcoder predicts an activation of its input's width; this one maps ",
              c.d_in, " to ", c.out_width(), " (write it as saelens)");
  const auto state = sae.state();
  torch::Tensor b_enc = state.at("b_enc");
  // sparsify subtracts b_dec before encoding unless it transcodes: an SAE that does not is written
  // with the difference in the encoder bias, (x − b_dec) W + (b + b_dec W) = x W + b.
  if (!c.apply_b_dec_to_input && !transcode) b_enc = b_enc + torch::mv(state.at("W_enc").t(), state.at("b_dec"));
  TORCH_CHECK(!transcode || !c.apply_b_dec_to_input, "a transcoder that subtracts b_dec from its input cannot be written "
              "for sparsify (its transcoders do not)");
  const torch::Tensor norms = state.at("W_dec").norm(2, {1});
  const bool unit = torch::allclose(norms, torch::ones_like(norms), 1e-4, 1e-4);
  nlohmann::json cfg = {{"activation", "topk"},
                        {"expansion_factor", std::max<int64_t>(1, c.d_sae / c.d_in)},
                        {"normalize_decoder", unit},
                        {"num_latents", c.d_sae},
                        {"k", c.k},
                        {"multi_topk", false},
                        {"skip_connection", c.skip},
                        {"transcode", transcode},
                        // sparsify drops keys it does not know; saelab reads its metadata back from here
                        {"saelab", {{"format_version", 2},
                                    {"hook_name", meta.hook_name},
                                    {"hook_name_out", meta.hook_name_out},
                                    {"model_name", meta.model_name},
                                    {"context_size", meta.context_size},
                                    {"model_sha256", meta.model_sha256}}},
                        {"d_in", c.d_in}};
  fs::create_directories(dir);
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"encoder.weight", state.at("W_enc").t().contiguous().to(dtype)},
      {"encoder.bias", b_enc.to(dtype)},
      {"W_dec", state.at("W_dec").to(dtype)},
      {"b_dec", state.at("b_dec").to(dtype)}};
  if (c.skip) tensors.emplace_back("W_skip", state.at("W_skip").to(dtype));
  save_safetensors((fs::path(dir) / "sae.safetensors").string(), tensors);
  write_file_atomic(fs::path(dir) / "cfg.json", cfg.dump() + "\n");
}

}  // namespace saelab::formats
