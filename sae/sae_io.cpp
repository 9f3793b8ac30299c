#include "sae/sae_io.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <type_traits>

#include "sae/sae_formats.h"

namespace saelab {

namespace fs = std::filesystem;

const char* format_name(SaeFormat f) {
  switch (f) {
    case SaeFormat::kSaeLens: return "saelens";
    case SaeFormat::kSaeLensV5: return "saelens-v5";
    case SaeFormat::kSparsify: return "sparsify";
    case SaeFormat::kDictionaryLearning: return "dictionary_learning";
  }
  TORCH_CHECK(false, "unknown SAE format ", static_cast<int>(f));
}

SaeFormat parse_write_format(const std::string& name) {
  for (SaeFormat f : {SaeFormat::kSaeLens, SaeFormat::kSaeLensV5, SaeFormat::kSparsify}) {
    if (name == format_name(f)) return f;
  }
  TORCH_CHECK(false, "the SAE format to write must be saelens, saelens-v5 or sparsify (got '", name, "')");
}

nlohmann::json SaeMetadata::to_json() const {
  nlohmann::json j = {{"model_name", model_name},
          {"hook_name", hook_name},
          {"context_size", context_size},
          {"prepend_bos", prepend_bos},
          {"dataset_path", dataset_path},
          {"hook_layer", layer()},
          {"hook_head_index", hook_head_index < 0 ? nlohmann::json() : nlohmann::json(hook_head_index)},
          {"model_sha256", model_sha256}};
  if (!hook_name_out.empty()) j["hook_name_out"] = hook_name_out;
  return j;
}

int64_t SaeMetadata::layer() const {
  if (hook_layer >= 0) return hook_layer;
  for (size_t i = 0; i < hook_name.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(hook_name[i]))) {
      size_t j = i;
      while (j < hook_name.size() && std::isdigit(static_cast<unsigned char>(hook_name[j]))) ++j;
      return j - i < 10 ? std::stoll(hook_name.substr(i, j - i)) : 0;
    }
  }
  return 0;
}

bool is_sae_folder(const std::string& dir) {
  const fs::path d(dir);
  return fs::exists(d / "cfg.json") || fs::exists(d / "ae.pt") || fs::exists(d / "params.npz");
}

std::vector<std::string> transcoder_set_layers(const std::string& dir) {
  return formats::is_circuit_tracer_set(dir) ? formats::circuit_tracer_layers(dir) : std::vector<std::string>();
}

void save_transcoder_set(const std::string& dir, const std::vector<const LoadedSae*>& transcoders) {
  formats::save_circuit_tracer_set(dir, transcoders);
}

LoadedSae load_sae(const std::string& dir) {
  const fs::path d(dir);
  if (formats::is_circuit_tracer_layer(dir)) return formats::load_circuit_tracer_layer(dir);
  TORCH_CHECK(!fs::is_regular_file(d), "'", dir, "' is a file, not an SAE folder (a circuit-tracer layer file is "
              "layer_<N>.safetensors with config.yaml beside it)");
  TORCH_CHECK(fs::is_directory(d), "SAE folder '", dir, "' does not exist");
  TORCH_CHECK(!formats::is_circuit_tracer_set(dir), "'", dir, "' is a circuit-tracer transcoder set (one transcoder per "
              "layer): name one layer file (", dir, "/layer_0.safetensors), or give the folder to a command that takes "
              "every coder below a folder (eval, top, convert)");
  if (fs::exists(d / "sae_weights.safetensors")) return formats::load_saelens(dir);
  if (fs::exists(d / "sae.safetensors")) return formats::load_sparsify(dir);
  if (fs::exists(d / "ae.pt")) return formats::load_dictionary_learning(dir);
  if (fs::exists(d / "params.npz")) return formats::load_gemma_scope(dir);
  // A SAELens cfg.json whose weights are missing is the common damage: name that file.
  TORCH_CHECK(!fs::exists(d / "cfg.json"), "SAE folder '", dir,
              "' has a cfg.json but no weights: sae_weights.safetensors (SAELens) or sae.safetensors (sparsify) is "
              "missing");
  TORCH_CHECK(false, "'", dir,
              "' is not an SAE folder: expected cfg.json with sae_weights.safetensors (SAELens) or sae.safetensors "
              "(sparsify), or ae.pt (dictionary_learning)");
}

void save_sae(const std::string& dir, const Sae& sae, const SaeMetadata& metadata, const torch::Tensor& log10_density,
              SaeFormat format, torch::Dtype dtype) {
  TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kFloat16 || dtype == torch::kBFloat16,
              "SAE weights are written as float32, float16 or bfloat16 (got ", dtype, ")");
  switch (format) {
    case SaeFormat::kSaeLens: return formats::save_saelens(dir, sae, metadata, log10_density, false, dtype);
    case SaeFormat::kSaeLensV5: return formats::save_saelens(dir, sae, metadata, log10_density, true, dtype);
    case SaeFormat::kSparsify: return formats::save_sparsify(dir, sae, metadata, dtype);
    case SaeFormat::kDictionaryLearning: break;
  }
  TORCH_CHECK(false, "saelab reads dictionary_learning's ae.pt but does not write it; write saelens, saelens-v5 or "
                     "sparsify");
}

namespace formats {

Fields::Fields(const nlohmann::json& object, std::string file, std::string prefix)
    : object_(&object), file_(std::move(file)), prefix_(std::move(prefix)) {
  TORCH_CHECK(object.is_object(), file_, ": ", prefix_.empty() ? "the file" : prefix_.substr(0, prefix_.size() - 1),
              " must be a JSON object (got ", object.type_name(), ")");
}

const nlohmann::json* Fields::find(const std::string& key) const {
  auto it = object_->find(key);
  return it == object_->end() ? nullptr : &*it;
}

bool Fields::has(const std::string& key) const {
  const nlohmann::json* v = find(key);
  return v != nullptr && !v->is_null();
}

void Fields::fail(const std::string& key, const std::string& why) const {
  TORCH_CHECK(false, file_, ": ", key.empty() ? "" : "key '" + name(key) + "' ", why);
}

template <class T>
T Fields::get(const std::string& key, T fallback) const {
  const nlohmann::json* v = find(key);
  if (v == nullptr || v->is_null()) return fallback;
  bool ok = false;
  const char* expected = "";
  if constexpr (std::is_same_v<T, bool>) {
    ok = v->is_boolean(), expected = "true or false";
  } else if constexpr (std::is_integral_v<T>) {
    ok = v->is_number_integer(), expected = "an integer";
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = v->is_number(), expected = "a number";
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    ok = v->is_array() && std::all_of(v->begin(), v->end(), [](const nlohmann::json& e) { return e.is_number_integer(); });
    expected = "a list of integers";
  } else {
    ok = v->is_string(), expected = "a string";
  }
  if (!ok) {
    std::string shown = v->dump();
    if (shown.size() > 40) shown = shown.substr(0, 40) + "...";
    fail(key, std::string("must be ") + expected + " (got " + shown + ")");
  }
  return v->get<T>();
}

template <class T>
T Fields::require(const std::string& key) const {
  if (!has(key)) fail(key, "is required");
  return get<T>(key, T{});
}

Fields Fields::object(const std::string& key) const {
  const nlohmann::json* v = find(key);
  if (v == nullptr || v->is_null()) return Fields(empty_, file_, prefix_ + key + ".");
  if (!v->is_object()) fail(key, std::string("must be an object (got ") + v->type_name() + ")");
  return Fields(*v, file_, prefix_ + key + ".");
}

template bool Fields::get<bool>(const std::string&, bool) const;
template int64_t Fields::get<int64_t>(const std::string&, int64_t) const;
template double Fields::get<double>(const std::string&, double) const;
template std::string Fields::get<std::string>(const std::string&, std::string) const;
template int64_t Fields::require<int64_t>(const std::string&) const;
template std::string Fields::require<std::string>(const std::string&) const;
template std::vector<int64_t> Fields::require<std::vector<int64_t>>(const std::string&) const;

torch::Tensor decoder_row_norms(const torch::Tensor& W_dec, const std::string& where) {
  const torch::Tensor n = W_dec.norm(2, {1});
  const torch::Tensor zero = (n == 0).nonzero();
  TORCH_CHECK(zero.numel() == 0, where, ": W_dec row ", zero.numel() ? zero[0].item<int64_t>() : 0,
              " has norm 0, and rescale_acts_by_decoder_norm divides the codes by it");
  return n;
}

torch::Tensor weight(const std::map<std::string, torch::Tensor>& tensors, const std::string& name,
                     const std::vector<int64_t>& shape, const std::string& where) {
  auto it = tensors.find(name);
  TORCH_CHECK(it != tensors.end(), where, ": tensor '", name, "' is missing");
  const torch::Tensor& t = it->second;
  TORCH_CHECK(t.is_floating_point(), where, ": tensor '", name, "' has dtype ", t.dtype(),
              "; SAE weights must be floating point (float32, float16, bfloat16 or float64)");
  TORCH_CHECK(t.sizes().vec() == shape, where, ": tensor '", name, "' has shape ", t.sizes(), ", expected ",
              c10::IntArrayRef(shape));
  torch::Tensor f = t.to(torch::kFloat32).contiguous();
  TORCH_CHECK(torch::isfinite(f).all().item<bool>(), where, ": tensor '", name, "' holds NaN or Inf");
  return f;
}

void refuse_unknown_tensors(const std::map<std::string, torch::Tensor>& tensors, const std::set<std::string>& known,
                            const std::string& where, const std::string& format) {
  for (const auto& [name, t] : tensors) {
    TORCH_CHECK(known.count(name), where, ": tensor '", name, "' is not part of a ", format,
                " (its library loads the weights strictly, so this file is not one it wrote)");
  }
}

std::string dtype_name(torch::Dtype dtype) {
  if (dtype == torch::kFloat16) return "float16";
  if (dtype == torch::kBFloat16) return "bfloat16";
  if (dtype == torch::kFloat64) return "float64";
  return "float32";
}

}  // namespace formats

}  // namespace saelab
