// Token-level annotations: which word of the document each token belongs to, whether it starts
// that word, and (through the word and the document) its POS tag and genre. Later analysis uses
// these as ground-truth labels when interpreting features.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/corpus.h"
#include "models/tokenizer.h"

namespace saelab {

struct AnnotatedTokens {
  std::vector<int64_t> ids;          // [n_tokens]
  std::vector<int64_t> begins;       // [n_tokens] byte span of the token in Document::text
  std::vector<int64_t> ends;         // [n_tokens]
  std::vector<int32_t> word;         // [n_tokens] index into Document::words, -1 for none (whitespace, or no annotations)
  std::vector<uint8_t> word_start;   // [n_tokens] 1 when the token holds the word's first character

  /// The POS tag of token i, or "" when it belongs to no annotated word.
  const std::string& tag(const Document& doc, size_t i) const;
};

/// Encodes the document and aligns each token with the first word its text (leading whitespace
/// ignored) overlaps.
AnnotatedTokens annotate(const Tokenizer& tokenizer, const Document& doc);

/// "nn" for "nn-tl", "nn-hl", "fw-nn", "nn-tl-hl": the tag without title/headline/foreign marks.
std::string base_tag(const std::string& tag);

}  // namespace saelab
