// SAELens folders: cfg.json + sae_weights.safetensors [+ sparsity.safetensors].
//
// Read as SAELens v6.18 (sae_lens/saes/*.py, loading/pretrained_sae_loaders.py) and v5.11
// (sae_lens/sae.py, toolkit/pretrained_sae_loaders.py) read them:
// - a sae_lens_version >= 6 (top level first, then metadata) selects v6: the architecture names the
//   class, metadata is the nested object. Otherwise the pre-6 rules: flat keys (hook_point renamed
//   hook_name, ...), TopK as activation_fn_str "topk" with activation_fn_kwargs.k.
// - the code: standard ReLU(pre); gated 1[pre + b_gate > 0]·ReLU(pre·e^r_mag + b_mag); jumprelu
//   ReLU(pre)·1[pre > θ]; topk ReLU of the k largest pre, optionally of pre·‖W_dec,i‖ and then
//   divided by it again before decoding; pre = (x − b_dec·apply_b_dec_to_input) W_enc + b_enc.
// - a `scaling_factor` tensor of ones is dropped; any other is v5's fine-tuning scale, applied to
//   the code in decode, and needs finetuning_scaling_factor: true (v6 cannot load it).
#include <filesystem>
#include <set>

#include "core/files.h"
#include "core/json_options.h"
#include "core/safetensors.h"
#include "sae/sae_formats.h"

namespace saelab::formats {

namespace fs = std::filesystem;

namespace {

constexpr const char* kWrittenVersion = "6.18.0";  // the SAELens version whose layout save_saelens follows

// The major number of a version string ("6.18.0", "6.0.0-rc.0", "5.11.0"); −1 when there is none.
int64_t major_version(const std::string& v, const Fields& f, const std::string& key) {
  size_t i = 0;
  while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i]))) ++i;
  if (i == 0 || i > 6) f.fail(key, "is not a version number (got '" + v + "')");
  return std::stoll(v.substr(0, i));
}

}  // namespace

LoadedSae load_saelens(const std::string& dir) {
  const std::string cfg_path = (fs::path(dir) / "cfg.json").string();
  const nlohmann::json cfg = load_json_file(cfg_path, "SAE config");
  const Fields top(cfg, cfg_path);
  const Fields meta = top.object("metadata");
  const Fields saelab_top = top.object("saelab"), saelab_meta = meta.object("saelab");
  const Fields& saelab = saelab_meta.has("architecture") ? saelab_meta : saelab_top;

  std::string version_key = "sae_lens_version";
  std::string version = top.get<std::string>("sae_lens_version", "");
  if (version.empty()) version = meta.get<std::string>("sae_lens_version", ""), version_key = "metadata.sae_lens_version";
  const bool v6 = !version.empty() && major_version(version, top, version_key) >= 6;

  // Metadata: v6 reads the nested object, pre-6 the top level (saelab's first files nested it
  // without a version, so each falls back to the other).
  const Fields& primary = v6 ? meta : top;
  const Fields& secondary = v6 ? top : meta;
  auto meta_string = [&](std::initializer_list<const char*> keys) {
    for (const Fields* f : {&primary, &secondary}) {
      for (const char* k : keys) {
        if (f->has(k)) return f->get<std::string>(k, "");
      }
    }
    return std::string();
  };
  auto meta_int = [&](std::initializer_list<const char*> keys, int64_t fallback) {
    for (const Fields* f : {&primary, &secondary}) {
      for (const char* k : keys) {
        if (f->has(k)) return f->get<int64_t>(k, fallback);
      }
    }
    return fallback;
  };
  SaeMetadata m;
  m.model_name = meta_string({"model_name"});
  m.hook_name = meta_string({"hook_name", "hook_point"});
  m.hook_name_out = meta_string({"hook_name_out"});
  m.context_size = meta_int({"context_size"}, 0);
  m.dataset_path = meta_string({"dataset_path"});
  m.hook_layer = meta_int({"hook_layer", "hook_point_layer"}, -1);
  m.hook_head_index = meta_int({"hook_head_index", "hook_point_head_index"}, -1);
  m.prepend_bos = primary.has("prepend_bos") ? primary.get<bool>("prepend_bos", true)
                                              : secondary.get<bool>("prepend_bos", true);
  m.model_sha256 = saelab.has("model_sha256") ? saelab.get<std::string>("model_sha256", "") : meta_string({"model_sha256"});
  m.density_tokens = saelab.get<int64_t>("density_tokens", 0);

  const std::string dtype = top.get<std::string>("dtype", "float32");
  static const std::set<std::string> kDtypes = {"float32", "float64", "float16", "bfloat16", "torch.float32",
                                                "torch.float64", "torch.float16", "torch.bfloat16"};
  if (!kDtypes.count(dtype)) top.fail("dtype", "must be float32, float64, float16 or bfloat16 (got '" + dtype + "')");

  SaeConfig c;
  c.d_in = top.require<int64_t>("d_in");
  c.d_sae = top.require<int64_t>("d_sae");
  c.apply_b_dec_to_input = top.get<bool>("apply_b_dec_to_input", true);
  std::string architecture = top.get<std::string>("architecture", "standard");
  std::vector<std::string> notes;

  // v5 takes activation_fn_str (or activation_fn, renamed); v6's pre-6 handling the same.
  const std::string act_key = top.has("activation_fn_str") ? "activation_fn_str" : "activation_fn";
  const std::string act = top.get<std::string>(act_key, "relu");
  const Fields kwargs = top.object("activation_fn_kwargs");
  if (v6 && top.has(act_key)) {
    // v6 ignores the activation; v5 reads it. A file both read must not mean two things.
    const bool v5_topk = act == "topk";
    if (v5_topk != (architecture == "topk") || (v5_topk && kwargs.get<int64_t>("k", -1) != top.get<int64_t>("k", 100))) {
      top.fail(act_key, "is '" + act + "' but architecture is '" + architecture + "'" +
                            (v5_topk ? " with k " + std::to_string(top.get<int64_t>("k", 100)) : std::string()) +
                            ": SAELens v5 and v6 would read this file as different SAEs");
    }
  }
  if (!v6) {
    if (act == "topk") {
      if (!kwargs.has("k")) top.fail(act_key, "is 'topk' but activation_fn_kwargs.k is missing (SAELens v5 refuses it)");
      if (architecture != "standard" && architecture != "topk") {
        top.fail(act_key, "is 'topk' on a " + architecture + " SAE, which saelab does not model");
      }
      architecture = "topk";
      c.k = kwargs.get<int64_t>("k", 0);
    } else if (act == "relu") {
      if (architecture == "topk") {
        top.fail("architecture", "is 'topk' but activation_fn_str is 'relu': SAELens v5 reads this file as a ReLU SAE "
                                 "and v6 as TopK; set activation_fn_str to 'topk' with activation_fn_kwargs.k");
      }
    } else {
      top.fail(act_key, "is '" + act + "'; saelab reads ReLU and TopK SAELens SAEs (SAELens v6 drops this activation "
                        "too and would read the file as ReLU)");
    }
  }
  // The hook_z layout feeds [.., n_heads, d_head] activations flattened, which saelab's hooks do not.
  const std::string reshape = top.get<std::string>("reshape_activations", "none");
  if (reshape == "hook_z" || (!v6 && m.hook_name.size() >= 2 && m.hook_name.compare(m.hook_name.size() - 2, 2, "_z") == 0)) {
    top.fail("reshape_activations", "is 'hook_z' (or hook_name ends in _z): SAEs on per-head attention outputs "
                                    "[.., n_heads, d_head] are not supported");
  }
  // Transcoders (SAELens saes/transcoder.py): ReLU or JumpReLU codes of x W_enc + b_enc (no b_dec
  // on the input), decoded to d_out, with x W_skipᵀ added by the skip variants. saelab's other
  // architectures as transcoders carry a d_out and saelab.skip.
  bool skip = saelab.get<bool>("skip", false);
  if (architecture == "transcoder" || architecture == "skip_transcoder" || architecture == "jumprelu_transcoder" ||
      architecture == "jumprelu_skip_transcoder") {
    if (!top.has("d_out")) top.fail("d_out", "is required for a transcoder");
    skip = architecture.find("skip") != std::string::npos;
    architecture = architecture.rfind("jumprelu", 0) == 0 ? "jumprelu" : "standard";
    if (top.get<bool>("apply_b_dec_to_input", false)) {
      top.fail("apply_b_dec_to_input", "is true on a transcoder (SAELens refuses it: b_dec has the output's width)");
    }
  }
  c.d_out = top.get<int64_t>("d_out", 0);
  c.skip = skip;
  if (c.d_out == c.d_in && !skip && m.hook_name_out.empty()) c.d_out = 0;  // an SAE that states its own width
  if (architecture == "matryoshka_batchtopk") {
    top.fail("architecture", "is 'matryoshka_batchtopk', a SAELens training checkpoint; SAELens saves it for "
                             "inference as 'jumprelu', which saelab reads");
  }
  const std::string saelab_architecture = saelab.get<std::string>("architecture", "");
  if (architecture == "jumprelu" && (saelab_architecture == "batchtopk" || saelab_architecture == "matryoshka_batchtopk")) {
    // saelab's BatchTopK and Matryoshka BatchTopK, written as SAELens writes them for inference
    architecture = saelab_architecture;
    c.k = saelab.require<int64_t>("k");
    if (saelab_architecture == "matryoshka_batchtopk") {
      c.matryoshka_widths = saelab.require<std::vector<int64_t>>("matryoshka_widths");
    }
  }
  try {
    c.architecture = parse_architecture(architecture);
  } catch (const c10::Error& e) {
    top.fail("architecture", "is '" + architecture + "'; saelab reads standard, gated, jumprelu, topk (SAELens) and "
                             "batchtopk (saelab)");
  }
  if (v6 && c.architecture == Architecture::kTopK) c.k = top.get<int64_t>("k", 100);  // SAELens v6's default
  if (top.get<std::string>("architecture", "") == "batchtopk") c.k = top.require<int64_t>("k");  // saelab's first files
  c.jumprelu_bandwidth = saelab.has("jumprelu_bandwidth") ? saelab.get<double>("jumprelu_bandwidth", 0.05)
                                                           : top.get<double>("jumprelu_bandwidth", c.jumprelu_bandwidth);

  // normalize_activations: the boolean of early files maps as SAELens maps it.
  std::string norm = "none";
  if (const nlohmann::json* v = top.find("normalize_activations"); v != nullptr && !v->is_null()) {
    if (v->is_boolean()) norm = v->get<bool>() ? "expected_average_only_in" : "none";
    else norm = top.get<std::string>("normalize_activations", "none");
  }
  if (norm == "expected_average_only_in") {
    notes.push_back("normalize_activations 'expected_average_only_in' is applied by neither SAELens v5 nor v6 when "
                    "loading (SAELens folds the scale into the weights before it saves), so it is read as 'none'");
  } else if (norm == "constant_norm_rescale" || norm == "layer_norm") {
    top.fail("normalize_activations",
             "is '" + norm + "': it rescales each token by its own " +
                 (norm == "layer_norm" ? std::string("mean and standard deviation") : std::string("norm")) +
                 " at run time, which no weight change can express; saelab's SAEs do not model it");
  } else if (norm != "none" && !norm.empty()) {
    top.fail("normalize_activations", "is '" + norm + "'; SAELens knows none, expected_average_only_in, "
                                      "constant_norm_rescale and layer_norm");
  }
  try {
    c.validate();
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, cfg_path, ": ", e.msg());
  }

  const std::string weights_path = (fs::path(dir) / "sae_weights.safetensors").string();
  std::map<std::string, torch::Tensor> w = load_safetensors(weights_path).tensors;
  const std::string format = v6 ? "SAELens v6 (sae_lens_version " + version + ")" : "SAELens v5 / pre-6";
  std::set<std::string> known;
  for (const auto& [name, shape] : sae_shapes(c)) known.insert(name);
  if (uses_batch_topk(c.architecture) && !w.count("threshold")) known.erase("threshold");
  TORCH_CHECK(!w.count("finetuning_scaling_factor"), weights_path,
              ": tensor 'finetuning_scaling_factor' is stored under its in-memory name; SAELens v5 and v6 both refuse "
              "it (they read the fine-tuning scale as 'scaling_factor')");
  std::map<std::string, torch::Tensor> p;
  for (const auto& name : known) p[name] = weight(w, name, sae_shapes(c).at(name), weights_path);
  if (w.count("scaling_factor")) {
    const torch::Tensor sf = weight(w, "scaling_factor", {c.d_sae}, weights_path);
    if (!torch::allclose(sf, torch::ones_like(sf))) {
      TORCH_CHECK(top.get<bool>("finetuning_scaling_factor", false), weights_path,
                  ": tensor 'scaling_factor' is not all ones, but cfg.json's finetuning_scaling_factor is not true "
                  "(SAELens refuses this file too)");
      TORCH_CHECK(c.architecture != Architecture::kGated, weights_path,
                  ": a gated SAE with a fine-tuning 'scaling_factor' (SAELens v5 gives gated SAEs none)");
      p["W_dec"] = p["W_dec"] * sf.unsqueeze(1);
      notes.push_back("the fine-tuning scaling_factor (SAELens v5 semantics: code × scale in decode) is folded into "
                      "W_dec; SAELens v6 cannot load this file");
    }
    known.insert("scaling_factor");
  }
  refuse_unknown_tensors(w, known, weights_path, std::string("SAELens ") + architecture_name(c.architecture) + " SAE");
  if (c.architecture == Architecture::kTopK && top.get<bool>("rescale_acts_by_decoder_norm", false)) {
    // codes = topk(pre · n) and x̂ = (f / n) W_dec + b_dec, with n the W_dec row norms: the same as
    // pre' = x W_enc' + b_enc' with W_enc' = W_enc · n, b_enc' = b_enc · n, and W_dec' = W_dec / n.
    const torch::Tensor n = decoder_row_norms(p["W_dec"], weights_path);
    p["W_enc"] = p["W_enc"] * n.unsqueeze(0);
    p["b_enc"] = p["b_enc"] * n;
    p["W_dec"] = p["W_dec"] / n.unsqueeze(1);
    notes.push_back("rescale_acts_by_decoder_norm is folded into the weights (W_enc and b_enc times the W_dec row "
                    "norms, W_dec rows divided by them): the same codes and reconstructions");
  }
  if (p.count("threshold") && (p["threshold"] < 0).any().item<bool>()) {
    p["threshold"] = p["threshold"].clamp_min(0);  // ReLU(pre)·1[pre > θ] with θ < 0 is ReLU(pre)
    notes.push_back("negative JumpReLU thresholds are read as 0: SAELens applies a ReLU before the threshold");
  }
  LoadedSae out{Sae(c, p, weights_path), m, {}, format, notes};
  const fs::path sparsity = fs::path(dir) / "sparsity.safetensors";
  if (fs::exists(sparsity)) {
    const SafetensorsFile s = load_safetensors(sparsity.string());
    out.log10_density = s.at("sparsity");
    TORCH_CHECK(out.log10_density.dim() == 1 && out.log10_density.size(0) == c.d_sae, sparsity.string(),
                ": sparsity has shape ", out.log10_density.sizes(), ", expected [", c.d_sae, "]");
  }
  return out;
}

void save_saelens(const std::string& dir, const Sae& sae, const SaeMetadata& meta, const torch::Tensor& log10_density,
                  bool v5_only, torch::Dtype dtype) {
  const SaeConfig& c = sae.config();
  const bool topk = c.architecture == Architecture::kTopK;
  const bool batchtopk = uses_batch_topk(c.architecture);
  // A transcoder: SAELens' names for ReLU and JumpReLU ones (BatchTopK ones are written as JumpReLU,
  // as its SAEs are); saelab's TopK and gated transcoders keep their names with a d_out.
  const bool transcoder = !meta.hook_name_out.empty() || c.out_width() != c.d_in || c.skip;
  TORCH_CHECK(!(transcoder && v5_only), "SAELens v5 has no transcoders; write the SAELens v6 layout (saelens)");
  if (batchtopk) {
    TORCH_CHECK(sae.batchtopk_running_threshold().item<double>() >= 0,
                "this batchtopk SAE has no threshold estimate yet; SAELens reads BatchTopK SAEs through it");
  }
  // SAELens has no inference BatchTopK: it writes one as JumpReLU with the threshold per latent.
  std::string architecture = batchtopk ? "jumprelu" : architecture_name(c.architecture);
  if (transcoder && (architecture == "jumprelu" || architecture == "standard")) {
    architecture = architecture == "jumprelu" ? (c.skip ? "jumprelu_skip_transcoder" : "jumprelu_transcoder")
                                              : (c.skip ? "skip_transcoder" : "transcoder");
  }
  nlohmann::json saelab = {{"format_version", 2},
                           {"architecture", architecture_name(c.architecture)},
                           {"model_sha256", meta.model_sha256}};
  if (batchtopk) saelab["k"] = c.k;
  if (meta.density_tokens > 0 && log10_density.defined()) saelab["density_tokens"] = meta.density_tokens;
  if (c.architecture == Architecture::kMatryoshkaBatchTopK) saelab["matryoshka_widths"] = c.matryoshka_widths;
  if (c.architecture == Architecture::kJumpReLU) saelab["jumprelu_bandwidth"] = c.jumprelu_bandwidth;
  if (transcoder) saelab["skip"] = c.skip;
  const nlohmann::json head = meta.hook_head_index < 0 ? nlohmann::json() : nlohmann::json(meta.hook_head_index);
  nlohmann::json cfg = {
      {"architecture", architecture},
      {"d_in", c.d_in},
      {"d_sae", c.d_sae},
      {"dtype", dtype_name(dtype)},
      {"device", "cpu"},
      {"apply_b_dec_to_input", c.apply_b_dec_to_input},
      {"normalize_activations", "none"},  // saelab's trainer folds its input scaling into the weights
      // v5 (and v6's pre-6 rules): the activation, and the metadata at the top level
      {"activation_fn_str", topk ? "topk" : "relu"},
      {"activation_fn_kwargs", topk ? nlohmann::json{{"k", c.k}} : nlohmann::json::object()},
      {"finetuning_scaling_factor", false},
      {"model_name", meta.model_name},
      {"hook_name", meta.hook_name},
      {"hook_layer", meta.layer()},
      {"hook_head_index", head},
      {"context_size", meta.context_size},
      {"dataset_path", meta.dataset_path},
      {"prepend_bos", meta.prepend_bos},
      {"dataset_trust_remote_code", false},
      {"sae_lens_training_version", nullptr},
      {"neuronpedia_id", nullptr},
      {"model_from_pretrained_kwargs", nlohmann::json::object()},
      {"seqpos_slice", nlohmann::json::array({nullptr})}};
  if (topk) {
    cfg["k"] = c.k;
    cfg["rescale_acts_by_decoder_norm"] = false;  // v5 cannot rescale; saelab's weights need none
  }
  if (transcoder) cfg["d_out"] = c.out_width();
  if (v5_only) {
    cfg["saelab"] = saelab;
  } else {
    cfg["reshape_activations"] = "none";
    cfg["metadata"] = {{"sae_lens_version", kWrittenVersion},
                       {"sae_lens_training_version", nullptr},
                       {"model_name", meta.model_name},
                       {"hook_name", meta.hook_name},
                       {"hook_head_index", head},
                       {"context_size", meta.context_size},
                       {"prepend_bos", meta.prepend_bos},
                       {"dataset_path", meta.dataset_path},
                       {"seqpos_slice", nlohmann::json::array({nullptr})},
                       {"model_from_pretrained_kwargs", nlohmann::json::object()},
                       {"exclude_special_tokens", false},
                       {"neuronpedia_id", nullptr},
                       {"saelab", saelab}};
    if (!meta.hook_name_out.empty()) cfg["metadata"]["hook_name_out"] = meta.hook_name_out;
  }
  fs::create_directories(dir);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, t] : sae.state()) tensors.emplace_back(name, t.to(dtype));
  save_safetensors((fs::path(dir) / "sae_weights.safetensors").string(), tensors);
  const fs::path sparsity = fs::path(dir) / "sparsity.safetensors";
  if (log10_density.defined()) {
    save_safetensors(sparsity.string(), {{"sparsity", log10_density.to(torch::kFloat32)}});
  } else {
    fs::remove(sparsity);  // a stale one would describe another SAE
  }
  write_file_atomic(fs::path(dir) / "cfg.json", cfg.dump(2) + "\n");
}

}  // namespace saelab::formats
