// circuit-tracer's per-layer transcoder sets (model_kind: transcoder_set): a folder with
// config.yaml and one layer_{i}.safetensors per layer, i = 0 … N − 1. Read and written as
// circuit_tracer 0.5 (transcoder/single_layer_transcoder.py, utils/hf_utils.py) reads them:
//   config.yaml   model_kind: transcoder_set, model_name, feature_input_hook and feature_output_hook
//                 (TransformerLens names below blocks.{i}., e.g. hook_resid_mid and hook_mlp_out),
//                 optionally transcoders: [paths of the layer files, in layer order]
//   layer_i       W_enc [F, d_in] (transposed against SAELens), b_enc [F], W_dec [F, d_out],
//                 b_dec [d_out], optionally activation_function.threshold [F] (JumpReLU; none: ReLU)
//                 and W_skip [d_out, d_in]
//   code          φ(x W_encᵀ + b_enc), no b_dec subtracted: ReLU, or JumpReLU x·1[x > θ] (no ReLU:
//                 a negative θ would pass negative values, which saelab refuses);
//                 ŷ = f W_dec + b_dec + x W_skipᵀ
// Each layer file is one transcoder; a set folder stands for all of them (find_sae_dirs).
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <regex>
#include <set>

#include "core/files.h"
#include "core/safetensors.h"
#include "sae/sae_formats.h"

namespace saelab::formats {

namespace fs = std::filesystem;

namespace {

struct SetConfig {
  std::string model_name, input_hook, output_hook;
  std::vector<std::string> transcoders;  // explicit layer paths, when listed
};

SetConfig read_set_config(const fs::path& dir) {
  const std::string path = (dir / "config.yaml").string();
  TORCH_CHECK(fs::is_regular_file(path), "'", dir.string(), "' has no config.yaml (a circuit-tracer transcoder set)");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    TORCH_CHECK(false, path, ": not valid YAML (", e.what(), ")");
  }
  TORCH_CHECK(root.IsMap(), path, ": must be a mapping of keys");
  auto text = [&](const char* key, bool required) {
    const YAML::Node n = root[key];
    if (!n || n.IsNull()) {
      TORCH_CHECK(!required, path, ": key '", key, "' is required");
      return std::string();
    }
    TORCH_CHECK(n.IsScalar(), path, ": key '", key, "' must be a string");
    return n.as<std::string>();
  };
  const std::string kind = text("model_kind", true);
  TORCH_CHECK(kind == "transcoder_set", path, ": key 'model_kind' is '", kind,
              "'; saelab reads circuit-tracer's per-layer transcoder sets (transcoder_set), not cross-layer transcoders");
  SetConfig c;
  c.model_name = text("model_name", false);
  c.input_hook = text("feature_input_hook", true);
  c.output_hook = text("feature_output_hook", true);
  if (const YAML::Node list = root["transcoders"]; list && !list.IsNull()) {
    TORCH_CHECK(list.IsSequence(), path, ": key 'transcoders' must be a list of paths");
    for (const auto& item : list) {
      TORCH_CHECK(item.IsScalar(), path, ": key 'transcoders' must be a list of paths");
      const std::string p = item.as<std::string>();
      TORCH_CHECK(p.rfind("hf://", 0) != 0, path, ": transcoder '", p,
                  "' is on the Hugging Face hub; download the layer files next to config.yaml (no hub is reached)");
      c.transcoders.push_back(p);
    }
  }
  return c;
}

// The layer number of layer_{i}.safetensors; −1 for any other name.
int64_t layer_of(const fs::path& file) {
  static const std::regex kLayer("layer_([0-9]{1,6})\\.safetensors");
  std::smatch m;
  const std::string name = file.filename().string();
  return std::regex_match(name, m, kLayer) ? std::stoll(m[1].str()) : -1;
}

}  // namespace

bool is_circuit_tracer_set(const std::string& dir) {
  return fs::is_regular_file(fs::path(dir) / "config.yaml") && !circuit_tracer_layers(dir).empty();
}

std::vector<std::string> circuit_tracer_layers(const std::string& dir) {
  std::map<int64_t, std::string> layers;
  if (!fs::is_directory(dir)) return {};
  for (const auto& e : fs::directory_iterator(dir)) {
    const int64_t l = layer_of(e.path());
    if (l >= 0 && e.is_regular_file()) layers[l] = e.path().string();
  }
  std::vector<std::string> out;
  for (const auto& [l, p] : layers) out.push_back(p);
  return out;
}

bool is_circuit_tracer_layer(const std::string& path) {
  const fs::path p(path);
  return layer_of(p) >= 0 && fs::is_regular_file(p) && fs::is_regular_file(p.parent_path() / "config.yaml");
}

LoadedSae load_circuit_tracer_layer(const std::string& file) {
  const fs::path p(file);
  const SetConfig cfg = read_set_config(p.parent_path());
  const int64_t layer = layer_of(p);
  TORCH_CHECK(cfg.transcoders.empty() || cfg.transcoders.size() > static_cast<size_t>(layer), (p.parent_path() / "config.yaml").string(),
              ": key 'transcoders' lists ", cfg.transcoders.size(), " layers, so layer ", layer, " is not part of the set");
  const std::map<std::string, torch::Tensor> w = load_safetensors(file).tensors;
  const bool jump = w.count("activation_function.threshold") > 0;
  const bool skip = w.count("W_skip") > 0;
  std::set<std::string> known = {"W_enc", "b_enc", "W_dec", "b_dec"};
  if (jump) known.insert("activation_function.threshold");
  if (skip) known.insert("W_skip");
  refuse_unknown_tensors(w, known, file, "circuit-tracer transcoder");
  auto it = w.find("W_enc");
  TORCH_CHECK(it != w.end(), file, ": tensor 'W_enc' is missing");
  TORCH_CHECK(it->second.dim() == 2, file, ": tensor 'W_enc' must be [d_transcoder, d_model] (got ", it->second.sizes(), ")");
  auto dec = w.find("W_dec");
  TORCH_CHECK(dec != w.end(), file, ": tensor 'W_dec' is missing");
  TORCH_CHECK(dec->second.dim() == 2, file, ": tensor 'W_dec' must be [d_transcoder, d_model] (got ", dec->second.sizes(), ")");
  SaeConfig c;
  c.architecture = jump ? Architecture::kJumpReLU : Architecture::kStandard;
  c.d_sae = it->second.size(0);
  c.d_in = it->second.size(1);
  c.d_out = dec->second.size(1);
  c.apply_b_dec_to_input = false;
  c.skip = skip;
  c.jumprelu_bandwidth = 0.1;  // what circuit-tracer's loaders give its JumpReLU
  try {
    c.validate();
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, file, ": ", e.msg());
  }
  std::map<std::string, torch::Tensor> params;
  params["W_enc"] = weight(w, "W_enc", {c.d_sae, c.d_in}, file).t().contiguous();
  params["b_enc"] = weight(w, "b_enc", {c.d_sae}, file);
  params["W_dec"] = weight(w, "W_dec", {c.d_sae, c.d_out}, file);
  params["b_dec"] = weight(w, "b_dec", {c.d_out}, file);
  if (skip) params["W_skip"] = weight(w, "W_skip", {c.d_out, c.d_in}, file);
  if (jump) {
    const torch::Tensor t = weight(w, "activation_function.threshold", {c.d_sae}, file);
    TORCH_CHECK((t >= 0).all().item<bool>(), file, ": a JumpReLU threshold is negative; circuit-tracer's JumpReLU has no "
                "ReLU, so it passes negative pre-activations above such a threshold, which saelab does not model");
    params["threshold"] = t;
  }
  SaeMetadata m;
  m.model_name = cfg.model_name;
  m.hook_name = "blocks." + std::to_string(layer) + "." + cfg.input_hook;
  m.hook_name_out = "blocks." + std::to_string(layer) + "." + cfg.output_hook;
  m.hook_layer = layer;
  return LoadedSae{Sae(c, params, file), m, {}, "circuit-tracer transcoder set", {}};
}

void save_circuit_tracer_set(const std::string& dir, const std::vector<const LoadedSae*>& layers) {
  TORCH_CHECK(!layers.empty(), "a circuit-tracer transcoder set needs at least one transcoder");
  // Layer l's hooks are blocks.l.<input> → blocks.l.<output>, the same <input>, <output> everywhere.
  std::map<int64_t, const LoadedSae*> by_layer;
  std::string input, output;
  for (const LoadedSae* s : layers) {
    const SaeMetadata& m = s->metadata;
    const SaeConfig& c = s->sae.config();
    const std::string what = "transcoder at '" + m.hook_name + "'";
    TORCH_CHECK(!m.hook_name_out.empty(), what, " is an SAE; circuit-tracer sets hold transcoders");
    TORCH_CHECK(c.architecture == Architecture::kStandard || c.architecture == Architecture::kJumpReLU ||
                    uses_batch_topk(c.architecture),
                what, " is ", architecture_name(c.architecture), "; circuit-tracer 0.5 reads ReLU and JumpReLU "
                "transcoders (BatchTopK ones are written as JumpReLU with their threshold)");
    TORCH_CHECK(!c.apply_b_dec_to_input, what, " subtracts b_dec from its input, which circuit-tracer does not");
    TORCH_CHECK(c.out_width() == c.d_in, what, " maps width ", c.d_in, " to ", c.out_width(),
                "; circuit-tracer's transcoders read and write d_model");
    const int64_t l = m.layer();
    const std::string prefix = "blocks." + std::to_string(l) + ".";
    TORCH_CHECK(m.hook_name.rfind(prefix, 0) == 0 && m.hook_name_out.rfind(prefix, 0) == 0, what, " -> '",
                m.hook_name_out, "': circuit-tracer names hooks blocks.<layer>.<name> (TransformerLens names)");
    const std::string in = m.hook_name.substr(prefix.size()), out = m.hook_name_out.substr(prefix.size());
    TORCH_CHECK(input.empty() || (in == input && out == output), what, " reads '", in, "' and writes '", out,
                "', but another layer of the set reads '", input, "' and writes '", output, "'");
    input = in, output = out;
    TORCH_CHECK(by_layer.emplace(l, s).second, "two transcoders of the set are at layer ", l);
  }
  TORCH_CHECK(by_layer.rbegin()->first + 1 == static_cast<int64_t>(by_layer.size()), "circuit-tracer needs a transcoder "
              "for every layer from 0 to the last; this set has layers ", by_layer.begin()->first, " to ",
              by_layer.rbegin()->first, " with ", by_layer.size(), " transcoders");
  fs::create_directories(dir);
  for (const auto& [l, s] : by_layer) {
    const auto state = s->sae.state();
    std::vector<std::pair<std::string, torch::Tensor>> t = {{"W_enc", state.at("W_enc").t().contiguous()},
                                                            {"b_enc", state.at("b_enc")},
                                                            {"W_dec", state.at("W_dec")},
                                                            {"b_dec", state.at("b_dec")}};
    if (state.count("threshold")) t.emplace_back("activation_function.threshold", state.at("threshold"));
    if (state.count("W_skip")) t.emplace_back("W_skip", state.at("W_skip"));
    save_safetensors((fs::path(dir) / ("layer_" + std::to_string(l) + ".safetensors")).string(), t);
  }
  // JSON strings are YAML scalars.
  const std::string model = by_layer.begin()->second->metadata.model_name;
  write_file_atomic(fs::path(dir) / "config.yaml",
                    "model_kind: transcoder_set\nmodel_name: " + nlohmann::json(model).dump() +
                        "\nfeature_input_hook: " + nlohmann::json(input).dump() +
                        "\nfeature_output_hook: " + nlohmann::json(output).dump() + "\n");
}

}  // namespace saelab::formats
