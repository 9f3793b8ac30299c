// GPT-2's byte-level BPE, reproducing OpenAI's encoder token for token. Opens OpenAI's
// encoder.json + vocab.bpe or Hugging Face's vocab.json + merges.txt (the same content).
#pragma once
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "models/tokenizer.h"

namespace saelab {

/// Splits text the way GPT-2's pattern
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// does, returning the byte span [begin, end) of each piece. Invalid UTF-8 bytes count as
/// single "other" characters.
std::vector<std::pair<int64_t, int64_t>> gpt2_pretokenize(std::string_view text);

class Gpt2Tokenizer : public Tokenizer {
 public:
  Gpt2Tokenizer(const std::string& encoder_path, const std::string& merges_path);

  Encoding encode(std::string_view text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  std::string id_to_piece(int64_t id) const override;
  int64_t piece_to_id(const std::string& piece) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }
  int64_t bos_id() const override { return eot_id_; }
  int64_t eos_id() const override { return eot_id_; }
  std::string kind() const override { return "gpt2"; }
  nlohmann::json describe() const override;

 private:
  /// Byte-pair merges over one pre-token (already mapped to GPT-2's byte alphabet, one symbol
  /// per byte); returns the ids and the byte length of each resulting token.
  const std::vector<std::pair<int64_t, int>>& bpe(const std::string& bytes) const;

  std::string encoder_path_, merges_path_;
  std::vector<std::string> pieces_;                      // id → piece (UTF-8 of the byte alphabet)
  std::vector<std::string> piece_bytes_;                 // id → raw bytes the piece stands for
  std::unordered_map<std::string, int64_t> raw_to_id_;   // raw bytes → id
  std::unordered_map<std::string, int64_t> piece_to_id_;
  std::unordered_map<std::string, int> merge_rank_;      // raw bytes of a + '\0' + raw bytes of b → rank
  int64_t eot_id_ = -1;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<std::pair<int64_t, int>>> cache_;
};

}  // namespace saelab
