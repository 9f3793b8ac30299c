#include "models/tokenizer.h"

#include <c10/util/Exception.h>

#include <filesystem>

#include "models/gpt2_tokenizer.h"
#include "models/sentencepiece_tokenizer.h"

namespace saelab {

std::unique_ptr<Tokenizer> open_tokenizer(const nlohmann::json& entry, const std::string& base_dir,
                                          const std::string& where) {
  TORCH_CHECK(entry.is_object(), where, ": 'tokenizer' must be an object with a 'kind'");
  TORCH_CHECK(entry.contains("kind") && entry["kind"].is_string(), where, ": 'tokenizer.kind' is missing");
  auto path_of = [&](const char* key) {
    TORCH_CHECK(entry.contains(key) && entry[key].is_string(), where, ": 'tokenizer.", key, "' is missing");
    std::filesystem::path p = entry[key].get<std::string>();
    return (p.is_absolute() ? p : std::filesystem::path(base_dir) / p).string();
  };
  const std::string kind = entry["kind"].get<std::string>();
  if (kind == "sentencepiece") return std::make_unique<SentencePieceTokenizer>(path_of("model"));
  if (kind == "gpt2") return std::make_unique<Gpt2Tokenizer>(path_of("encoder"), path_of("merges"));
  TORCH_CHECK(false, where, ": tokenizer kind '", kind, "' is unknown (use sentencepiece or gpt2)");
}

}  // namespace saelab
