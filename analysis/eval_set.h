// Held-out contexts for analysis, with the ground truth the corpus carries for every token: its
// POS tag (Brown), whether it starts a word, its document's genre and the token before it.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/model_bundle.h"
#include "core/options.h"

namespace saelab {

struct EvalSetOptions {
  std::string corpus = "brown";
  std::string split = "validation";
  int64_t contexts = 64;
  int64_t context_length = 0;

  template <class V>
  void fields(V& v) {
    v("corpus", corpus, "corpus: brown, brown:DIR, text:PATH or jsonl:PATH");
    v("split", split, "corpus split: train, validation or test");
    v("contexts", contexts, "held-out contexts; each is BOS and context_length − 1 tokens of one document", at_least(1));
    v("context_length", context_length, "context length including BOS (0: the model's)", at_least(0));
  }
  void validate() const;
};

struct EvalSet {
  torch::Tensor tokens;      // [n, T] int64; column 0 is BOS
  torch::Tensor tag;         // [n, T] int32 index into tag_names (base tags), -1 for none and for BOS
  torch::Tensor word_start;  // [n, T] bool: the token holds its word's first character
  torch::Tensor genre;       // [n] int32 index into genre_names (-1: none)
  torch::Tensor doc;         // [n] int32 index into doc_ids
  std::vector<std::string> tag_names, genre_names, doc_ids;

  int64_t contexts() const { return tokens.size(0); }
  int64_t length() const { return tokens.size(1); }
  /// The token before each position [n, T] (−1 at column 0).
  torch::Tensor previous_tokens() const;
};

/// Cuts the split's documents into contexts, taking chunk j of every document before chunk j + 1 of
/// any, so that a small set still spans documents and genres. Throws when no context fits.
EvalSet build_eval_set(const LanguageModel& lm, const EvalSetOptions& options, const std::string& cache_dir);

}  // namespace saelab
