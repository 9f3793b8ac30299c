// The model bundle's model.json reader (models/model_bundle.h). The input is written as model.json
// into a scratch folder that also holds a tiny valid model.pt and GPT-2 tokenizer (vocab.json,
// merges.txt; fuzz/fuzz_models.h). ModelInfo::from_json (what LanguageModel::open parses
// model.json with) must accept or reject it; an accepted description must survive to_json /
// from_json. When it names files of the folder by plain names and a GPT-2 tokenizer, the folder is
// opened with LanguageModel::open and the model run once, so the logits spec is exercised too.
// SentencePiece entries are not opened: the shim is opened with RTLD_DEEPBIND, which
// AddressSanitizer refuses (the sentencepiece target covers that tokenizer).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>

#include "core/json_options.h"
#include "fuzz/fuzz_target.h"
#include "fuzz/fuzz_models.h"
#include "fuzz/fuzz_util.h"
#include "models/model_bundle.h"
#include "models/tokenizer.h"

namespace {

using namespace saelab;

bool plain_name(const std::string& name) {
  return name.find('/') == std::string::npos && name != "." && name != "..";
}

bool plain_name(const nlohmann::json& entry, const char* key) {
  if (!entry.contains(key) || !entry[key].is_string()) return true;  // open_tokenizer rejects it
  return plain_name(entry[key].get<std::string>());
}

}  // namespace

SAELAB_FUZZ_TARGET(model_json) {
  static const fuzz::fs::path dir = [] {
    torch::set_num_threads(1);
    const fuzz::fs::path d = fuzz::fresh_dir("model");
    fuzz::write_tiny_model(d);
    return d;
  }();
  const std::string path = (dir / "model.json").string();
  fuzz::write_bytes(path, fuzz::as_string(data, size));
  ModelInfo info;
  bool accepted = false;
  fuzz::rejecting([&] {
    info = ModelInfo::from_json(load_json_file(path, "model description"), path);
    accepted = true;
  });
  if (!accepted) return 0;
  fuzz::must_succeed("rereading ModelInfo::to_json", [&] {
    const ModelInfo back = ModelInfo::from_json(info.to_json(), path + " (rewritten)");
    fuzz::require(back.to_json() == info.to_json(), "a model description survives to_json / from_json");
  });
  const nlohmann::json& t = info.tokenizer;
  if (!(t.is_object() && t.contains("kind") && t["kind"] == "gpt2" && plain_name(t, "encoder") &&
        plain_name(t, "merges") && plain_name(info.model_file))) {
    return 0;
  }
  fuzz::rejecting([&] {
    LanguageModel lm = LanguageModel::open(dir.string());
    const int64_t n = std::min<int64_t>(lm.info().context_length, 4);
    const torch::Tensor logits = lm.logits(torch::zeros({1, n}, torch::kInt64));
    fuzz::require(logits.dim() == 3 && logits.size(0) == 1 && logits.size(1) == n, "logits are [batch, pos, vocab]");
    const std::string text = "the theme";
    fuzz::require(lm.tokenizer().decode(lm.tokenizer().encode_ids(text)) == text, "decode(encode(text)) == text");
  });
  return 0;
}
