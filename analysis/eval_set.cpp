#include "analysis/eval_set.h"

#include <map>

#include "models/annotations.h"
#include "models/corpus.h"

namespace saelab {

void EvalSetOptions::validate() const {
  check_fields(*this, "evaluation contexts");
  // 0 means the model's length; a context needs BOS and at least one token after it.
  TORCH_CHECK(context_length != 1, "context_length must be 0 or >= 2 (got ", context_length, ")");
  parse_split(split);
}

torch::Tensor EvalSet::previous_tokens() const {
  torch::Tensor prev = torch::full_like(tokens, -1);
  prev.narrow(1, 1, length() - 1).copy_(tokens.narrow(1, 0, length() - 1));
  return prev;
}

EvalSet build_eval_set(const LanguageModel& lm, const EvalSetOptions& options, const std::string& cache_dir) {
  options.validate();
  const int64_t T = options.context_length > 0 ? options.context_length : lm.info().context_length;
  TORCH_CHECK(T <= lm.info().context_length, "context_length ", T, " exceeds the model's ", lm.info().context_length);
  const Corpus corpus = open_corpus(options.corpus, cache_dir);
  const std::vector<const Document*> docs = split_documents(corpus, parse_split(options.split));
  const Tokenizer& tok = lm.tokenizer();
  const int64_t body = T - 1;

  struct Chunked {
    const Document* doc;
    AnnotatedTokens a;
    int64_t chunks;
  };
  std::vector<Chunked> chunked;
  int64_t total_chunks = 0;
  for (const Document* d : docs) {
    AnnotatedTokens a = annotate(tok, *d);
    const int64_t n = static_cast<int64_t>(a.ids.size()) / body;
    if (n == 0) continue;
    total_chunks += n;
    chunked.push_back({d, std::move(a), n});
    if (total_chunks >= 4 * options.contexts && static_cast<int64_t>(chunked.size()) >= options.contexts) break;
  }
  TORCH_CHECK(total_chunks > 0, "the ", options.split, " split of corpus '", options.corpus, "' has no document of ",
              body, " tokens or more: no evaluation context fits");
  const int64_t n = std::min(options.contexts, total_chunks);

  EvalSet s;
  s.tokens = torch::empty({n, T}, torch::kInt64);
  s.tag = torch::full({n, T}, -1, torch::kInt32);
  s.word_start = torch::zeros({n, T}, torch::kBool);
  s.genre = torch::full({n}, -1, torch::kInt32);
  s.doc = torch::empty({n}, torch::kInt32);
  std::map<std::string, int32_t> tags, genres;
  auto index_of = [](std::map<std::string, int32_t>& m, std::vector<std::string>& names, const std::string& key) {
    auto [it, added] = m.emplace(key, static_cast<int32_t>(names.size()));
    if (added) names.push_back(key);
    return it->second;
  };
  auto tk = s.tokens.accessor<int64_t, 2>();
  auto tg = s.tag.accessor<int32_t, 2>();
  auto ws = s.word_start.accessor<bool, 2>();
  int64_t row = 0;
  for (int64_t j = 0; row < n; ++j) {
    for (size_t di = 0; di < chunked.size() && row < n; ++di) {
      const Chunked& c = chunked[di];
      if (j >= c.chunks) continue;
      tk[row][0] = tok.bos_id();
      for (int64_t p = 0; p < body; ++p) {
        const size_t i = static_cast<size_t>(j * body + p);
        tk[row][p + 1] = c.a.ids[i];
        ws[row][p + 1] = c.a.word_start[i] != 0;
        const std::string& t = c.a.tag(*c.doc, i);
        if (!t.empty()) tg[row][p + 1] = index_of(tags, s.tag_names, base_tag(t));
      }
      if (!c.doc->genre.empty()) s.genre[row] = index_of(genres, s.genre_names, c.doc->genre);
      s.doc[row] = static_cast<int32_t>(di);
      ++row;
    }
  }
  for (const auto& c : chunked) s.doc_ids.push_back(c.doc->id);
  return s;
}

}  // namespace saelab
