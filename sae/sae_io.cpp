#include "sae/sae_io.h"

#include <filesystem>
#include <type_traits>

#include "core/files.h"
#include "core/json_options.h"
#include "core/safetensors.h"

namespace saelab {

namespace fs = std::filesystem;

nlohmann::json SaeMetadata::to_json() const {
  return {{"model_name", model_name},
          {"hook_name", hook_name},
          {"context_size", context_size},
          {"prepend_bos", prepend_bos},
          {"model_sha256", model_sha256}};
}

void save_sae(const std::string& dir, const Sae& sae, const SaeMetadata& metadata, const torch::Tensor& log10_density) {
  const SaeConfig& c = sae.config();
  nlohmann::json cfg = {{"architecture", architecture_name(c.architecture)},
                        {"d_in", c.d_in},
                        {"d_sae", c.d_sae},
                        {"dtype", "float32"},
                        {"device", "cpu"},
                        {"apply_b_dec_to_input", c.apply_b_dec_to_input},
                        {"normalize_activations", "none"},  // the trainer folds its scaling into the weights
                        {"metadata", metadata.to_json()},
                        {"saelab_format_version", 1}};
  if (uses_k(c.architecture)) cfg["k"] = c.k;
  if (c.architecture == Architecture::kJumpReLU) cfg["jumprelu_bandwidth"] = c.jumprelu_bandwidth;
  fs::create_directories(dir);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, t] : sae.state()) tensors.emplace_back(name, t.to(torch::kFloat32));
  save_safetensors((fs::path(dir) / "sae_weights.safetensors").string(), tensors);
  if (log10_density.defined()) {
    save_safetensors((fs::path(dir) / "sparsity.safetensors").string(), {{"sparsity", log10_density}});
  }
  write_file_atomic(fs::path(dir) / "cfg.json", cfg.dump(2) + "\n");
}

LoadedSae load_sae(const std::string& dir) {
  const std::string cfg_path = (fs::path(dir) / "cfg.json").string();
  const nlohmann::json cfg = load_json_file(cfg_path, "SAE config");
  TORCH_CHECK(cfg.is_object(), cfg_path, ": expected a JSON object");
  auto get = [&](const char* key, auto fallback) {
    using T = decltype(fallback);
    const nlohmann::json* v = nullptr;
    if (cfg.contains(key)) v = &cfg[key];
    else if (cfg.contains("metadata") && cfg["metadata"].is_object() && cfg["metadata"].contains(key)) v = &cfg["metadata"][key];
    if (v == nullptr || v->is_null()) return fallback;
    bool ok = false;
    const char* expected = "";
    if constexpr (std::is_same_v<T, bool>) {
      ok = v->is_boolean(), expected = "true or false";
    } else if constexpr (std::is_integral_v<T>) {
      ok = v->is_number_integer(), expected = "an integer";
    } else if constexpr (std::is_floating_point_v<T>) {
      ok = v->is_number(), expected = "a number";
    } else {
      ok = v->is_string(), expected = "a string";
    }
    std::string shown = v->dump();
    if (shown.size() > 40) shown = shown.substr(0, 40) + "...";
    TORCH_CHECK(ok, cfg_path, ": key '", key, "' must be ", expected, " (got ", shown, ")");
    return v->get<T>();
  };
  SaeConfig c;
  std::string architecture = get("architecture", std::string("standard"));
  // Older SAELens files describe TopK SAEs as standard ones with a topk activation function.
  if (architecture == "standard" && get("activation_fn_str", std::string("relu")) == "topk") {
    architecture = "topk";
    if (cfg.contains("activation_fn_kwargs")) {
      const nlohmann::json& kw = cfg["activation_fn_kwargs"];
      TORCH_CHECK(kw.is_object(), cfg_path, ": key 'activation_fn_kwargs' must be an object (got ", kw.type_name(), ")");
      if (kw.contains("k")) {
        TORCH_CHECK(kw["k"].is_number_integer(), cfg_path, ": activation_fn_kwargs.k must be an integer (got ",
                    kw["k"].dump(), ")");
        c.k = kw["k"].get<int64_t>();
      }
    }
  }
  TORCH_CHECK(cfg.contains("d_in") && cfg.contains("d_sae"), cfg_path, ": d_in and d_sae are required");
  try {
    c.architecture = parse_architecture(architecture);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, cfg_path, ": ", e.msg());
  }
  c.d_in = get("d_in", int64_t{0});
  c.d_sae = get("d_sae", int64_t{0});
  c.k = get("k", c.k);
  c.apply_b_dec_to_input = get("apply_b_dec_to_input", true);
  c.jumprelu_bandwidth = get("jumprelu_bandwidth", c.jumprelu_bandwidth);
  const std::string norm = get("normalize_activations", std::string("none"));
  TORCH_CHECK(norm == "none" || norm.empty(), cfg_path, ": normalize_activations '", norm,
              "' needs a scaling factor that is not stored with the weights; fold it into the weights first");
  try {
    c.validate();
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, cfg_path, ": ", e.msg());
  }
  SaeMetadata m;
  m.model_name = get("model_name", std::string());
  m.hook_name = get("hook_name", std::string());
  m.context_size = get("context_size", int64_t{0});
  m.prepend_bos = get("prepend_bos", true);
  m.model_sha256 = get("model_sha256", std::string());

  const std::string weights_path = (fs::path(dir) / "sae_weights.safetensors").string();
  const SafetensorsFile w = load_safetensors(weights_path);
  LoadedSae out{Sae(c, w.tensors, weights_path), m, {}};
  const fs::path sparsity = fs::path(dir) / "sparsity.safetensors";
  if (fs::exists(sparsity)) {
    const SafetensorsFile s = load_safetensors(sparsity.string());
    out.log10_density = s.at("sparsity");
    TORCH_CHECK(out.log10_density.dim() == 1 && out.log10_density.size(0) == c.d_sae, sparsity.string(),
                ": sparsity has shape ", out.log10_density.sizes(), ", expected [", c.d_sae, "]");
  }
  return out;
}

}  // namespace saelab
