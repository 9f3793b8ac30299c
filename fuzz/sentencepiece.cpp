// SentencePiece tokenizer file loader (models/sentencepiece_tokenizer.h): the input is a
// tokenizer.model file. A model that loads is used as saelab uses one: ids of every encoding lie
// in the vocabulary (they index the embedding), token spans lie inside the text, and decode,
// id_to_piece and piece_to_id answer for every id.
//
// The parsing happens in Debian's libsentencepiece behind the shim libsaelab_spm.so, which
// SentencePieceTokenizer opens with dlopen(RTLD_DEEPBIND); AddressSanitizer refuses RTLD_DEEPBIND,
// so in the libFuzzer build this target alone is built without ASan (-fsanitize=fuzzer only, its
// library sources compiled in; see fuzz/CMakeLists.txt), and only crashes, hangs and running out of
// memory show.
#include <string>
#include <vector>

#include "fuzz/fuzz_target.h"
#include "fuzz/fuzz_util.h"
#include "models/sentencepiece_tokenizer.h"

namespace {

using namespace saelab;

void check_encoding(const SentencePieceTokenizer& tok, const std::string& text) {
  const Encoding e = tok.encode(text);
  fuzz::require(e.ids.size() == e.begins.size() && e.ids.size() == e.ends.size(), "one span per token");
  const int64_t n = static_cast<int64_t>(text.size());
  for (size_t i = 0; i < e.ids.size(); ++i) {
    fuzz::require(e.ids[i] >= 0 && e.ids[i] < tok.vocab_size(), "token ids lie in the vocabulary");
    fuzz::require(e.begins[i] >= 0 && e.begins[i] <= e.ends[i] && e.ends[i] <= n, "token spans lie in the text");
  }
  fuzz::rejecting([&] { tok.decode(e.ids); });
}

}  // namespace

SAELAB_FUZZ_TARGET(sentencepiece) {
  static const fuzz::fs::path dir = fuzz::fresh_dir("spm");
  const std::string path = (dir / "tokenizer.model").string();
  fuzz::write_bytes(path, fuzz::as_string(data, size));
  fuzz::rejecting([&] {
    const SentencePieceTokenizer tok(path);
    const int64_t vocab = tok.vocab_size();
    fuzz::require(vocab > 0, "a loaded model has pieces");
    tok.bos_id();
    tok.eos_id();
    for (int64_t id : {int64_t{0}, int64_t{1}, int64_t{2}, vocab / 2, vocab - 1}) {
      if (id < 0 || id >= vocab) continue;
      const std::string piece = tok.id_to_piece(id);
      tok.piece_to_id(piece);
    }
    tok.piece_to_id("not a piece \xff");
    check_encoding(tok, "The jury said, \"Atlanta's election\" was 1962's best.\n\tNaïve 日本語 \xff\xfe end.");
    check_encoding(tok, std::string());
    check_encoding(tok, std::string(300, ' ') + std::string(200, 'a'));
  });
  return 0;
}
