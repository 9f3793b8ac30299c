// The Tokenizer interface and the factory that opens one from a model.json "tokenizer" entry.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace saelab {

/// Token ids with the byte span of each token in the encoded text.
struct Encoding {
  std::vector<int64_t> ids;      // [n_tokens]
  std::vector<int64_t> begins;   // [n_tokens] byte offset where the token's text starts
  std::vector<int64_t> ends;     // [n_tokens] byte offset one past its end
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// Encodes without adding BOS/EOS. Offsets are byte offsets into `text`.
  virtual Encoding encode(std::string_view text) const = 0;
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  /// The vocabulary entry as stored ("▁the", "Ġthe", "<0x0A>").
  virtual std::string id_to_piece(int64_t id) const = 0;
  /// -1 when the piece is not in the vocabulary.
  virtual int64_t piece_to_id(const std::string& piece) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t bos_id() const = 0;
  virtual int64_t eos_id() const = 0;
  /// "sentencepiece" or "gpt2"; with `describe()` this is what model.json stores.
  virtual std::string kind() const = 0;
  /// The model.json "tokenizer" entry that reopens this tokenizer (paths relative to the model folder).
  virtual nlohmann::json describe() const = 0;

  /// Just the ids.
  std::vector<int64_t> encode_ids(std::string_view text) const { return encode(text).ids; }
  /// The text of one token as it appears in decoded output (for display).
  std::string token_text(int64_t id) const { return decode({id}); }
};

/// Opens a tokenizer described by a model.json "tokenizer" entry:
///   {"kind": "sentencepiece", "model": "tokenizer.model"}
///   {"kind": "gpt2", "encoder": "encoder.json", "merges": "vocab.bpe"}   (or vocab.json + merges.txt)
/// Relative paths are resolved against `base_dir`. `where` names the source in errors.
std::unique_ptr<Tokenizer> open_tokenizer(const nlohmann::json& entry, const std::string& base_dir,
                                          const std::string& where);

}  // namespace saelab
