#include "models/annotations.h"

namespace saelab {

const std::string& AnnotatedTokens::tag(const Document& doc, size_t i) const {
  static const std::string kNone;
  return word[i] < 0 ? kNone : doc.words[word[i]].tag;
}

AnnotatedTokens annotate(const Tokenizer& tokenizer, const Document& doc) {
  Encoding enc = tokenizer.encode(doc.text);
  AnnotatedTokens out;
  const size_t n = enc.ids.size();
  out.word.assign(n, -1);
  out.word_start.assign(n, 0);
  size_t w = 0;
  for (size_t i = 0; i < n; ++i) {
    int64_t b = enc.begins[i];
    const int64_t e = enc.ends[i];
    while (b < e && (doc.text[b] == ' ' || doc.text[b] == '\n' || doc.text[b] == '\t' || doc.text[b] == '\r')) ++b;
    if (b >= e) continue;
    while (w < doc.words.size() && doc.words[w].end <= b) ++w;
    if (w < doc.words.size() && doc.words[w].begin < e) {
      out.word[i] = static_cast<int32_t>(w);
      out.word_start[i] = doc.words[w].begin >= b && doc.words[w].begin < e;
    }
  }
  out.ids = std::move(enc.ids);
  out.begins = std::move(enc.begins);
  out.ends = std::move(enc.ends);
  return out;
}

std::string base_tag(const std::string& tag) {
  std::string t = tag;
  if (t.rfind("fw-", 0) == 0) t = t.substr(3);
  for (const char* suffix : {"-hl", "-tl", "-nc"}) {
    for (size_t pos; (pos = t.find(suffix)) != std::string::npos;) t.erase(pos, 3);
  }
  return t;
}

}  // namespace saelab
