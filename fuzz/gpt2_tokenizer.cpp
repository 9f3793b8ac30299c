// GPT-2 tokenizer file loader (models/gpt2_tokenizer.h). The input is vocab.json, a line
// "--8<--", then merges.txt (fuzz/fuzz_util.h kSeparator); a third part, when present, is text to
// encode. A tokenizer that loads must encode losslessly: the tokens' byte spans tile the text,
// decode(encode(text)) == text, and every id maps to a piece and back.
#include <string>

#include "fuzz/fuzz_target.h"
#include "fuzz/fuzz_util.h"
#include "models/gpt2_tokenizer.h"

namespace {

using namespace saelab;

void check_encoding(const Gpt2Tokenizer& tok, const std::string& text) {
  const Encoding e = tok.encode(text);
  fuzz::require(e.ids.size() == e.begins.size() && e.ids.size() == e.ends.size(), "one span per token");
  int64_t at = 0;
  for (size_t i = 0; i < e.ids.size(); ++i) {
    fuzz::require(e.ids[i] >= 0 && e.ids[i] < tok.vocab_size(), "token ids lie in the vocabulary");
    fuzz::require(e.begins[i] == at && e.ends[i] > e.begins[i], "token spans tile the text");
    at = e.ends[i];
    fuzz::require(tok.piece_to_id(tok.id_to_piece(e.ids[i])) == e.ids[i], "piece_to_id(id_to_piece(id)) == id");
  }
  fuzz::require(at == static_cast<int64_t>(text.size()), "token spans cover the text");
  fuzz::require(tok.decode(e.ids) == text, "decode(encode(text)) == text");
}

}  // namespace

SAELAB_FUZZ_TARGET(gpt2_tokenizer) {
  static const fuzz::fs::path dir = fuzz::fresh_dir("gpt2");
  const auto parts = fuzz::split_parts(fuzz::as_string(data, size), 3);
  const std::string vocab = (dir / "vocab.json").string(), merges = (dir / "merges.txt").string();
  fuzz::write_bytes(vocab, parts[0]);
  fuzz::write_bytes(merges, parts.size() > 1 ? parts[1] : std::string());
  fuzz::rejecting([&] {
    const Gpt2Tokenizer tok(vocab, merges);
    fuzz::require(tok.bos_id() >= 0 && tok.bos_id() < tok.vocab_size(), "<|endoftext|> lies in the vocabulary");
    check_encoding(tok, "Hello world, it's 2024: the théâtre\t\n  naïve 日本語 \xff\xfe end.");
    if (parts.size() > 2) check_encoding(tok, parts[2].substr(0, 4096));
    if (parts.size() > 1) check_encoding(tok, parts[1].substr(0, 4096));
  });
  return 0;
}
