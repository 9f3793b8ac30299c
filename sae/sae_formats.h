// Internal to sae/: the per-format readers and writers behind sae_io.h, and the strict field reads
// they share. Each format's file says where its rules come from.
#pragma once
#include <optional>
#include <set>
#include <string>

#include "sae/sae_io.h"

namespace saelab::formats {

/// Strict typed reads of one JSON object; errors name the file and the key ("a.b" for nested ones).
class Fields {
 public:
  Fields(const nlohmann::json& object, std::string file, std::string prefix = "");
  /// Present and not null.
  bool has(const std::string& key) const;
  const nlohmann::json* find(const std::string& key) const;
  /// The value as T (bool, int64_t, double, std::string), `fallback` when absent or null.
  template <class T>
  T get(const std::string& key, T fallback) const;
  /// As get, but absent or null is an error.
  template <class T>
  T require(const std::string& key) const;
  /// A nested object (absent or null: an empty one); anything else is an error.
  Fields object(const std::string& key) const;
  const std::string& file() const { return file_; }
  std::string name(const std::string& key) const { return prefix_ + key; }
  [[noreturn]] void fail(const std::string& key, const std::string& why) const;

 private:
  const nlohmann::json* object_;
  nlohmann::json empty_ = nlohmann::json::object();
  std::string file_, prefix_;
};

/// W_dec row norms [d_sae]; an error names `where` when one is 0 (it would be divided by).
torch::Tensor decoder_row_norms(const torch::Tensor& W_dec, const std::string& where);
/// Checks a tensor of the file: present, floating point, of `shape`, finite. Returns it as float32.
torch::Tensor weight(const std::map<std::string, torch::Tensor>& tensors, const std::string& name,
                     const std::vector<int64_t>& shape, const std::string& where);
/// Refuses tensors of the file that the format does not have (the libraries load strictly).
void refuse_unknown_tensors(const std::map<std::string, torch::Tensor>& tensors, const std::set<std::string>& known,
                            const std::string& where, const std::string& format);

LoadedSae load_saelens(const std::string& dir);
void save_saelens(const std::string& dir, const Sae& sae, const SaeMetadata& metadata,
                  const torch::Tensor& log10_density, bool v5_only, torch::Dtype dtype);

LoadedSae load_sparsify(const std::string& dir);
void save_sparsify(const std::string& dir, const Sae& sae, const SaeMetadata& metadata, torch::Dtype dtype);

LoadedSae load_dictionary_learning(const std::string& dir);

/// circuit-tracer transcoder sets (sae_circuit_tracer.cpp): a folder with config.yaml and
/// layer_{i}.safetensors files; each layer file is one transcoder.
bool is_circuit_tracer_set(const std::string& dir);
std::vector<std::string> circuit_tracer_layers(const std::string& dir);
bool is_circuit_tracer_layer(const std::string& path);
LoadedSae load_circuit_tracer_layer(const std::string& file);
void save_circuit_tracer_set(const std::string& dir, const std::vector<const LoadedSae*>& layers);

/// Gemma Scope's params.npz (sae_gemma_scope.cpp).
LoadedSae load_gemma_scope(const std::string& dir);

/// The dtype name SAELens' cfg.json uses ("float32", "float16", "bfloat16").
std::string dtype_name(torch::Dtype dtype);

}  // namespace saelab::formats
