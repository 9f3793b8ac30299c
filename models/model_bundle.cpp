#include "models/model_bundle.h"

#include <cctype>

#include <c10/util/Exception.h>

#include <filesystem>

#include "core/files.h"
#include "core/torchscript_storages.h"
#include "core/json_options.h"

namespace saelab {

nlohmann::json LogitsSpec::to_json() const {
  if (output == "tuple") return {{"output", "tuple"}, {"index", index}};
  if (output == "dict") return {{"output", "dict"}, {"key", key}};
  return {{"output", "tensor"}};
}

nlohmann::json ModelInfo::to_json() const {
  nlohmann::json j = {{"format_version", 1},
                      {"name", name},
                      {"model_file", model_file},
                      {"d_model", d_model},
                      {"n_layers", n_layers},
                      {"context_length", context_length},
                      {"vocab_size", vocab_size},
                      {"prepend_bos", prepend_bos},
                      {"logits", logits.to_json()},
                      {"tokenizer", tokenizer},
                      {"hook_aliases", hook_aliases}};
  for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
  return j;
}

ModelInfo ModelInfo::from_json(const nlohmann::json& j, const std::string& where) {
  ModelInfo m;
  JsonFields f(j, where);
  int64_t version = 0;
  f.read("format_version", version);
  TORCH_CHECK(version == 1, where, ": format_version must be 1 (got ", version, ")");
  f.read("name", m.name);
  f.read("model_file", m.model_file);
  check_path_name(m.model_file, where + ": model_file");
  f.read("d_model", m.d_model);
  f.read("n_layers", m.n_layers);
  f.read("context_length", m.context_length);
  f.read("vocab_size", m.vocab_size);
  f.read("prepend_bos", m.prepend_bos);
  TORCH_CHECK(m.d_model > 0, where, ": d_model must be a positive integer (got ", m.d_model, ")");
  TORCH_CHECK(m.n_layers > 0, where, ": n_layers must be a positive integer (got ", m.n_layers, ")");
  TORCH_CHECK(m.context_length > 0, where, ": context_length must be a positive integer (got ", m.context_length, ")");
  TORCH_CHECK(j.contains("logits"), where, ": key 'logits' is missing (say where the logits are: {\"output\": \"tensor\"})");
  JsonFields lf(j["logits"], where + ": logits");
  lf.read("output", m.logits.output);
  lf.read("index", m.logits.index);
  lf.read("key", m.logits.key);
  lf.finish();
  TORCH_CHECK(m.logits.output == "tensor" || m.logits.output == "tuple" || m.logits.output == "dict", where,
              ": logits.output must be tensor, tuple or dict (got ", m.logits.output, ")");
  TORCH_CHECK(f.allow("tokenizer") != nullptr, where, ": key 'tokenizer' is missing");
  m.tokenizer = j["tokenizer"];
  f.allow("logits");
  if (f.allow("hook_aliases") != nullptr) {
    TORCH_CHECK(j["hook_aliases"].is_object(), where, ": hook_aliases must be an object of name -> hook point");
    for (auto it = j["hook_aliases"].begin(); it != j["hook_aliases"].end(); ++it) {
      TORCH_CHECK(it.value().is_string() || it.value().is_object(), where, ": hook_aliases.", it.key(),
                  " must be a hook point name or a computed target object");
    }
    m.hook_aliases = j["hook_aliases"];
  }
  for (const char* key : {"architecture", "training", "evaluation", "source", "logit_lens"}) {
    if (const nlohmann::json* v = f.allow(key)) m.extra[key] = *v;
  }
  f.finish();
  return m;
}

nlohmann::json residual_aliases(const std::string& blocks_prefix, int64_t n_layers) {
  nlohmann::json a = nlohmann::json::object();
  for (int64_t i = 0; i < n_layers; ++i) {
    a["blocks." + std::to_string(i) + ".hook_resid_pre"] = blocks_prefix + std::to_string(i) + ".input";
    a["blocks." + std::to_string(i) + ".hook_resid_post"] = blocks_prefix + std::to_string(i) + ".output";
  }
  return a;
}


std::string error_line(const std::string& message, bool* in_forward) {
  std::string s = message;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  const bool forward = s.rfind("The following operation failed in the TorchScript interpreter", 0) == 0;
  if (in_forward != nullptr) *in_forward = forward;
  if (forward) return s.substr(s.rfind('\n') + 1);
  return s.substr(0, s.find('\n'));
}

std::string error_line(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  return error_line(c10_error != nullptr ? c10_error->what_without_backtrace() : e.what());
}

// The first line of a loading error and, for a compile error in the archive's code, the place the
// compiler reports (`Serialized   File "code/__torch__/m.py", line 12` → "at code/__torch__/m.py:12").
std::string torchscript_error(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  const std::string msg = c10_error != nullptr ? c10_error->what_without_backtrace() : e.what();
  std::string out = msg.substr(0, msg.find('\n'));
  const size_t code = msg.find("code/");
  if (code != std::string::npos) {
    size_t end = code;
    while (end < msg.size() && msg[end] != '\n' && msg[end] != '"' && msg[end] != ' ') ++end;
    std::string where = msg.substr(code, end - code);
    // `Serialized   File "code/__torch__/m.py", line 12`
    const std::string line_mark = "\", line ";
    if (msg.compare(end, line_mark.size(), line_mark) == 0) {
      size_t digits = end + line_mark.size();
      while (digits < msg.size() && std::isdigit(static_cast<unsigned char>(msg[digits]))) ++digits;
      where += ":" + msg.substr(end + line_mark.size(), digits - end - line_mark.size());
    }
    out += " (at " + where + " in the archive)";
  }
  return out;
}

torch::jit::Module load_torchscript(const std::string& path) {
  verify_torch_archive(path, "model file");
  try {
    return torch::jit::load(path);
  } catch (const std::exception& e) {  // c10::Error, or the TorchScript compiler's ErrorReport
    TORCH_CHECK(false, "model file '", path, "' is not a loadable TorchScript file: ", torchscript_error(e));
  }
}

LanguageModel LanguageModel::open(const std::string& path) {
  namespace fs = std::filesystem;
  LanguageModel lm;
  std::error_code ec;
  TORCH_CHECK(!starts_like_zip(path), "'", path, "' is a TorchScript file, but saelab needs a model folder: ",
              "model.json beside the model says where its logits are and which tokenizer it reads. Make one with "
              "`saelab model-init ", path, " --tokenizer TOKENIZER --out DIR` (`saelab hooks ", path,
              "` lists its hook points as it is)");
  lm.json_path_ = fs::is_directory(path, ec) ? (fs::path(path) / "model.json").string() : path;
  lm.folder_ = fs::path(lm.json_path_).parent_path().string();
  if (lm.folder_.empty()) lm.folder_ = ".";
  const nlohmann::json j = load_json_file(lm.json_path_, "model description");
  lm.info_ = ModelInfo::from_json(j, lm.json_path_);
  lm.model_path_ = (fs::path(lm.folder_) / lm.info_.model_file).string();
  lm.module_ = load_torchscript(lm.model_path_);
  lm.module_.eval();
  lm.tokenizer_ = open_tokenizer(lm.info_.tokenizer, lm.folder_, lm.json_path_);
  if (lm.info_.vocab_size > 0) {
    TORCH_CHECK(lm.tokenizer_->vocab_size() <= lm.info_.vocab_size, lm.json_path_, ": the tokenizer has ",
                lm.tokenizer_->vocab_size(), " pieces but vocab_size is ", lm.info_.vocab_size);
  }
  lm.probe();
  return lm;
}

void LanguageModel::probe() {
  // One forward pass over the longest input model.json promises, holding the highest token id it
  // promises, so a description that does not match the model fails here with a clear line
  // rather than deep inside a capture.
  const int64_t vocab = info_.vocab_size > 0 ? info_.vocab_size : tokenizer_->vocab_size();
  const torch::Tensor tokens = torch::full({1, info_.context_length}, vocab - 1, torch::kInt64);
  torch::Tensor out;
  try {
    torch::NoGradGuard no_grad;
    out = logits(tokens);
  } catch (const std::exception& e) {  // c10::Error, or the interpreter's wrapped error
    const std::string msg = error_line(e);
    TORCH_CHECK(false, "model '", model_path_, "' fails on ", info_.context_length, " tokens (context_length in ",
                json_path_, ") with token id ", vocab - 1, " (vocab_size - 1): ", msg);
  }
  TORCH_CHECK(out.size(2) >= tokenizer_->vocab_size(), json_path_, ": the model's logits have ", out.size(2),
              " entries but the tokenizer has ", tokenizer_->vocab_size(), " pieces");
  TORCH_CHECK(info_.vocab_size <= 0 || out.size(2) == info_.vocab_size, json_path_, ": vocab_size is ",
              info_.vocab_size, " but the model's logits have ", out.size(2), " entries");
}

torch::Tensor LanguageModel::logits_from_output(const c10::IValue& out) const {
  const LogitsSpec& s = info_.logits;
  c10::IValue v = out;
  if (s.output == "tuple") {
    TORCH_CHECK(out.isTuple(), json_path_, ": logits.output is 'tuple' but the model returned ", out.tagKind());
    const auto& elems = out.toTupleRef().elements();
    TORCH_CHECK(s.index >= 0 && s.index < static_cast<int64_t>(elems.size()), json_path_, ": logits.index ", s.index,
                " is outside the model's output tuple of ", elems.size());
    v = elems[s.index];
  } else if (s.output == "dict") {
    TORCH_CHECK(out.isGenericDict(), json_path_, ": logits.output is 'dict' but the model returned ", out.tagKind());
    const auto dict = out.toGenericDict();
    auto it = dict.find(c10::IValue(s.key));
    TORCH_CHECK(it != dict.end(), json_path_, ": the model's output dict has no key '", s.key, "'");
    v = it->value();
  }
  TORCH_CHECK(v.isTensor(), json_path_, ": the model's output holds no logits tensor where logits.output says (got ",
              v.tagKind(), ")");
  torch::Tensor logits = v.toTensor();
  TORCH_CHECK(logits.dim() == 3, json_path_, ": logits must have shape [batch, pos, vocab] (got ", logits.sizes(), ")");
  return logits.to(torch::kFloat32);
}

torch::Tensor LanguageModel::logits(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2, "tokens must have shape [batch, pos] (got ", tokens.sizes(), ")");
  TORCH_CHECK(tokens.size(1) <= info_.context_length, "input of ", tokens.size(1),
              " tokens is longer than the model's context length ", info_.context_length);
  const torch::Tensor out = logits_from_output(module_.forward({tokens.to(torch::kInt64)}));
  TORCH_CHECK(out.size(0) == tokens.size(0) && out.size(1) == tokens.size(1), json_path_, ": logits of shape ",
              out.sizes(), " do not match the input of shape ", tokens.sizes());
  return out;
}

void save_model_folder(torch::jit::Module& module, const ModelInfo& info, const std::string& folder) {
  namespace fs = std::filesystem;
  fs::create_directories(folder);
  const fs::path model_path = fs::path(folder) / info.model_file;
  write_atomic_stream(model_path, [&](const ByteSink& sink) {
    SinkStreambuf buf(sink);
    std::ostream out(&buf);
    module.save(out);
  });
  write_file_atomic(fs::path(folder) / "model.json", info.to_json().dump(2) + "\n");
}

}  // namespace saelab
