// A language model as saelab uses it: a TorchScript file, its tokenizer, and a model.json that
// says how to read it (where the logits are, the context length, hook-point aliases).
//
// model.json (format_version 1):
//   {"format_version": 1, "name": "brown-gpt", "model_file": "model.pt",
//    "d_model": 256, "n_layers": 4, "context_length": 128, "vocab_size": 8192,
//    "logits": {"output": "tensor"}            or {"output": "tuple", "index": 0}
//                                              or {"output": "dict", "key": "logits"},
//    "prepend_bos": true,
//    "tokenizer": {"kind": "sentencepiece", "model": "tokenizer.model"},
//    "hook_aliases": {"blocks.0.hook_resid_pre": "blocks.0.input", ...},
//    "architecture": {...}, "training": {...}, "evaluation": {...}}   (informational)
#pragma once
#include <torch/script.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

#include "models/tokenizer.h"

namespace saelab {

struct LogitsSpec {
  std::string output = "tensor";  ///< "tensor", "tuple" or "dict"
  int64_t index = 0;              ///< tuple element, for "tuple"
  std::string key = "logits";     ///< dict key, for "dict"
  nlohmann::json to_json() const;
};

struct ModelInfo {
  std::string name;
  std::string model_file = "model.pt";
  int64_t d_model = 0;
  int64_t n_layers = 0;
  int64_t context_length = 0;
  int64_t vocab_size = 0;
  bool prepend_bos = true;
  LogitsSpec logits;
  nlohmann::json tokenizer;                 ///< the tokenizer entry (see open_tokenizer)
  nlohmann::json hook_aliases = nlohmann::json::object();
  nlohmann::json extra = nlohmann::json::object();  ///< architecture / training / evaluation records

  nlohmann::json to_json() const;
  /// Strict: unknown top-level keys and wrong types are errors naming the key.
  static ModelInfo from_json(const nlohmann::json& j, const std::string& where);
};

/// TransformerLens-style aliases for a model whose blocks live at `blocks_prefix`{i}:
/// blocks.{i}.hook_resid_pre → <prefix>{i}.input, blocks.{i}.hook_resid_post → <prefix>{i}.output.
nlohmann::json residual_aliases(const std::string& blocks_prefix, int64_t n_layers);

class LanguageModel {
 public:
  /// Opens a model folder holding model.json, or a model.json path.
  static LanguageModel open(const std::string& path);

  /// Runs the model on tokens [B, T] (int64) and returns logits [B, T, vocab] (float32).
  /// Checks T against the context length and the output against model.json's "logits".
  torch::Tensor logits(const torch::Tensor& tokens);

  /// Pulls the logits out of a forward pass's output as model.json describes.
  torch::Tensor logits_from_output(const c10::IValue& output) const;

  torch::jit::Module& module() { return module_; }
  const ModelInfo& info() const { return info_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const std::string& folder() const { return folder_; }
  const std::string& model_path() const { return model_path_; }

 private:
  // Runs the model once on context_length tokens of the highest id: checks model.json against it.
  void probe();
  torch::jit::Module module_;
  ModelInfo info_;
  std::shared_ptr<Tokenizer> tokenizer_;
  std::string folder_, model_path_, json_path_;
};

/// Loads a TorchScript file with a one-line error naming the file when it is missing or corrupt.
torch::jit::Module load_torchscript(const std::string& path);

/// The line of an error message worth showing: its first line, or, for an error raised inside a
/// TorchScript forward pass (wrapped in the interpreter's stack trace), the last line, the cause.
/// `in_forward` (optional) tells which.
std::string error_line(const std::string& message, bool* in_forward = nullptr);
/// The same for an exception: a c10::Error's message without its backtrace, else what().
std::string error_line(const std::exception& e);

/// Writes a model folder: model.pt (saved atomically), model.json, and nothing else; the caller
/// copies tokenizer files in.
void save_model_folder(torch::jit::Module& module, const ModelInfo& info, const std::string& folder);

}  // namespace saelab
