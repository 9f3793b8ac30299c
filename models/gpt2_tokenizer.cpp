#include "models/gpt2_tokenizer.h"

#include <c10/util/Exception.h>

#include <climits>
#include <filesystem>
#include <sstream>

#include "core/files.h"
#include "core/json_options.h"
#include "models/unicode_classes.h"

namespace saelab {

namespace {

// GPT-2 maps each byte to a printable code point: printable Latin-1 bytes map to themselves, the
// other 68 bytes to 256, 257, … in byte order.
std::vector<char32_t> byte_to_codepoint() {
  std::vector<char32_t> table(256);
  int next = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
  }
  return table;
}

// Decodes one UTF-8 character at `i`; invalid sequences decode as one byte mapped to U+FFFD's
// class "other" (returns length 1, code point 0xFFFD).
int decode_utf8(std::string_view s, size_t i, char32_t& cp) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size()) {
    cp = 0xFFFD;
    return 1;
  }
  char32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < len; ++k) {
    const unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc >> 6) != 0x2) {
      cp = 0xFFFD;
      return 1;
    }
    v = (v << 6) | (cc & 0x3F);
  }
  cp = v;
  return len;
}

std::string raw_bytes_of_piece(const std::string& piece, const std::unordered_map<char32_t, int>& cp_to_byte,
                               const std::string& where) {
  std::string raw;
  for (size_t i = 0; i < piece.size();) {
    char32_t cp;
    const int len = decode_utf8(piece, i, cp);
    auto it = cp_to_byte.find(cp);
    TORCH_CHECK(it != cp_to_byte.end(), where, ": piece '", piece, "' holds a character outside GPT-2's byte alphabet");
    raw.push_back(static_cast<char>(it->second));
    i += len;
  }
  return raw;
}

}  // namespace

std::vector<std::pair<int64_t, int64_t>> gpt2_pretokenize(std::string_view text) {
  // Decode once into code points with their byte offsets.
  std::vector<char32_t> cps;
  std::vector<int64_t> offs;
  for (size_t i = 0; i < text.size();) {
    char32_t cp;
    const int len = decode_utf8(text, i, cp);
    cps.push_back(cp);
    offs.push_back(static_cast<int64_t>(i));
    i += len;
  }
  const size_t n = cps.size();
  offs.push_back(static_cast<int64_t>(text.size()));
  enum Cls { kLetter, kNumber, kSpace, kOther };
  std::vector<Cls> cls(n);
  for (size_t i = 0; i < n; ++i) {
    cls[i] = is_unicode_letter(cps[i]) ? kLetter : is_unicode_number(cps[i]) ? kNumber
             : is_unicode_space(cps[i]) ? kSpace : kOther;
  }
  auto run_end = [&](size_t i, Cls c) {
    while (i < n && cls[i] == c) ++i;
    return i;
  };
  std::vector<std::pair<int64_t, int64_t>> out;
  size_t i = 0;
  while (i < n) {
    size_t end = i;
    // 's|'t|'re|'ve|'m|'ll|'d
    if (cps[i] == '\'' && i + 1 < n) {
      const char32_t a = cps[i + 1], b = i + 2 < n ? cps[i + 2] : 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') end = i + 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) end = i + 3;
    }
    if (end == i) {
      // ' ?X+' for X in letters, numbers, others: an optional single space before the run.
      const size_t s = (cps[i] == ' ' && i + 1 < n && cls[i + 1] != kSpace) ? i + 1 : i;
      if (cls[s] != kSpace) {
        end = run_end(s, cls[s]);
      } else {
        // \s+(?!\S) then \s+: a whitespace run, leaving its last character to the next token
        // when a non-space follows and the run is longer than one.
        const size_t j = run_end(i, kSpace);
        end = (j == n || j - i == 1) ? j : j - 1;
      }
    }
    out.emplace_back(offs[i], offs[end]);
    i = end;
  }
  return out;
}

Gpt2Tokenizer::Gpt2Tokenizer(const std::string& encoder_path, const std::string& merges_path)
    : encoder_path_(encoder_path), merges_path_(merges_path) {
  const auto b2c = byte_to_codepoint();
  std::unordered_map<char32_t, int> c2b;
  for (int b = 0; b < 256; ++b) c2b[b2c[b]] = b;

  const json encoder = load_json_file(encoder_path, "GPT-2 vocabulary");
  TORCH_CHECK(encoder.is_object() && !encoder.empty(), "GPT-2 vocabulary '", encoder_path,
              "' must be a JSON object mapping pieces to ids");
  pieces_.resize(encoder.size());
  piece_bytes_.resize(encoder.size());
  std::vector<bool> seen(encoder.size(), false);
  for (auto it = encoder.begin(); it != encoder.end(); ++it) {
    TORCH_CHECK(it.value().is_number_integer(), "GPT-2 vocabulary '", encoder_path, "': id of '", it.key(),
                "' is not an integer");
    const int64_t id = it.value().get<int64_t>();
    TORCH_CHECK(id >= 0 && id < static_cast<int64_t>(encoder.size()) && !seen[id], "GPT-2 vocabulary '",
                encoder_path, "': ids must be unique and within 0..", encoder.size() - 1, " (got ", id, " for '",
                it.key(), "')");
    seen[id] = true;
    pieces_[id] = it.key();
    piece_to_id_[it.key()] = id;
    if (it.key() == "<|endoftext|>") {
      eot_id_ = id;
      piece_bytes_[id] = it.key();
      continue;
    }
    piece_bytes_[id] = raw_bytes_of_piece(it.key(), c2b, encoder_path);
    raw_to_id_[piece_bytes_[id]] = id;
  }
  TORCH_CHECK(eot_id_ >= 0, "GPT-2 vocabulary '", encoder_path, "' has no <|endoftext|> token");
  for (int b = 0; b < 256; ++b) {
    TORCH_CHECK(raw_to_id_.count(std::string(1, static_cast<char>(b))), "GPT-2 vocabulary '", encoder_path,
                "' lacks the piece for byte ", b);
  }

  const std::string merges = read_file(merges_path, "GPT-2 merges");
  std::istringstream lines(merges);
  std::string line;
  int rank = 0, line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const size_t sp = line.find(' ');
    TORCH_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < line.size() && line.find(' ', sp + 1) == std::string::npos,
                "GPT-2 merges '", merges_path, "' line ", line_no, ": expected two pieces separated by one space");
    const std::string where = merges_path + " line " + std::to_string(line_no);
    const std::string a = raw_bytes_of_piece(line.substr(0, sp), c2b, where);
    const std::string b = raw_bytes_of_piece(line.substr(sp + 1), c2b, where);
    merge_rank_.emplace(a + '\0' + b, rank++);
  }
  TORCH_CHECK(rank > 0, "GPT-2 merges '", merges_path, "' holds no merges");
}

const std::vector<std::pair<int64_t, int>>& Gpt2Tokenizer::bpe(const std::string& bytes) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(bytes);
    if (it != cache_.end()) return it->second;
  }
  std::vector<std::string> word;
  for (char c : bytes) word.emplace_back(1, c);
  while (word.size() > 1) {
    int best = INT_MAX;
    size_t best_i = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = merge_rank_.find(word[i] + '\0' + word[i + 1]);
      if (it != merge_rank_.end() && it->second < best) {
        best = it->second;
        best_i = i;
      }
    }
    if (best == INT_MAX) break;
    // Merge every occurrence of the best pair, left to right, as the reference does.
    const std::string first = word[best_i], second = word[best_i + 1];
    std::vector<std::string> merged;
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(word[i]);
        ++i;
      }
    }
    word.swap(merged);
  }
  std::vector<std::pair<int64_t, int>> result;
  for (const auto& w : word) {
    auto it = raw_to_id_.find(w);
    TORCH_CHECK(it != raw_to_id_.end(), "GPT-2 vocabulary lacks a piece produced by its own merges");
    result.emplace_back(it->second, static_cast<int>(w.size()));
  }
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() > 200000) cache_.clear();
  return cache_.emplace(bytes, std::move(result)).first->second;
}

Encoding Gpt2Tokenizer::encode(std::string_view text) const {
  Encoding out;
  for (const auto& [begin, end] : gpt2_pretokenize(text)) {
    const std::string bytes(text.substr(begin, end - begin));
    int64_t pos = begin;
    for (const auto& [id, len] : bpe(bytes)) {
      out.ids.push_back(id);
      out.begins.push_back(pos);
      out.ends.push_back(pos + len);
      pos += len;
    }
  }
  return out;
}

std::string Gpt2Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) {
    TORCH_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " is outside the vocabulary (size ", vocab_size(), ")");
    out += piece_bytes_[id];
  }
  return out;
}

std::string Gpt2Tokenizer::id_to_piece(int64_t id) const {
  TORCH_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " is outside the vocabulary (size ", vocab_size(), ")");
  return pieces_[id];
}

int64_t Gpt2Tokenizer::piece_to_id(const std::string& piece) const {
  auto it = piece_to_id_.find(piece);
  return it == piece_to_id_.end() ? -1 : it->second;
}

nlohmann::json Gpt2Tokenizer::describe() const {
  return {{"kind", "gpt2"},
          {"encoder", std::filesystem::path(encoder_path_).filename().string()},
          {"merges", std::filesystem::path(merges_path_).filename().string()}};
}

}  // namespace saelab
