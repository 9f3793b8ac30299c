// SentencePiece tokenizer (Debian's libsentencepiece): training a BPE model on a corpus, and using it.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/options.h"
#include "models/corpus.h"
#include "models/tokenizer.h"

namespace saelab {

struct SentencePieceTrainOptions {
  int64_t vocab_size = 8192;
  std::string model_type = "bpe";
  int64_t max_chunk_bytes = 2000;
  int threads = 2;

  template <class V>
  void fields(V& v) {
    v("vocab_size", vocab_size, "vocabulary size, including <unk>, <s>, </s> and the 256 byte-fallback pieces", at_least(8));
    v("model_type", model_type, "bpe or unigram");
    v("max_chunk_bytes", max_chunk_bytes, "longest chunk of text handed to the trainer as one sentence, in bytes", at_least(1));
    v("trainer_threads", threads, "SentencePiece trainer threads", in_range(0, 1024));
  }
};

/// Trains on the documents' text and writes the model file atomically to `model_path`.
/// Normalisation is the identity and whitespace is kept as is, so decode(encode(s)) == s;
/// unseen characters fall back to byte pieces.
void train_sentencepiece(const std::vector<const Document*>& documents, const SentencePieceTrainOptions& options,
                         const std::string& model_path);

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& model_path);
  ~SentencePieceTokenizer() override;
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  Encoding encode(std::string_view text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  std::string id_to_piece(int64_t id) const override;
  int64_t piece_to_id(const std::string& piece) const override;
  int64_t vocab_size() const override;
  int64_t bos_id() const override;
  int64_t eos_id() const override;
  std::string kind() const override { return "sentencepiece"; }
  nlohmann::json describe() const override;

 private:
  std::string model_path_;
  void* handle_ = nullptr;  // a processor inside the SentencePiece shim
};

}  // namespace saelab
