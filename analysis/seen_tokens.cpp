#include "analysis/seen_tokens.h"

#include "models/corpus.h"

namespace saelab {

SeenTokens tokens_seen_in_training(const LanguageModel& lm, const std::string& cache_dir) {
  SeenTokens out;
  const nlohmann::json& extra = lm.info().extra;
  const bool recorded = extra.contains("training") && extra["training"].is_object() &&
                        extra["training"].contains("corpus") && extra["training"]["corpus"].is_string();
  if (!recorded) {
    out.note = "every token is ranked: model.json records no training corpus to tell never-seen tokens by";
    return out;
  }
  const std::string spec = extra["training"]["corpus"].get<std::string>();
  Corpus corpus;
  try {
    corpus = open_corpus(spec, cache_dir);
  } catch (const std::exception& e) {
    out.note = "every token is ranked: the training corpus '" + spec + "' cannot be read here";
    return out;
  }
  const Tokenizer& tok = lm.tokenizer();
  const int64_t vocab = lm.info().vocab_size;
  std::vector<uint8_t> seen(static_cast<size_t>(vocab), 0);
  auto mark = [&](int64_t id) {
    if (id >= 0 && id < vocab) seen[static_cast<size_t>(id)] = 1;
  };
  mark(tok.bos_id());
  mark(tok.eos_id());
  for (const Document* doc : split_documents(corpus, Split::kTrain)) {
    for (const int64_t id : tok.encode(doc->text).ids) mark(id);
  }
  out.seen = torch::from_blob(seen.data(), {vocab}, torch::kUInt8).to(torch::kBool);
  out.never_seen = vocab - out.seen.sum().item<int64_t>();
  out.note = "tokens never seen in the model's training corpus (" + spec + ", train split) are left out: " +
             std::to_string(out.never_seen) + " of " + std::to_string(vocab) +
             " (untrained embeddings, which would otherwise top many features)";
  return out;
}

}  // namespace saelab
