// Tiny valid model files for targets whose reader opens a model or tokenizer named in its input
// (header-only; libtorch targets only).
#pragma once
#include <nlohmann/json.hpp>

#include <string>

#include "fuzz/fuzz_util.h"
#include "models/gpt.h"
#include "models/model_bundle.h"

namespace saelab::fuzz {

inline std::string utf8(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

/// A minimal GPT-2 tokenizer in `dir`: vocab.json with the 256 byte pieces (GPT-2's byte
/// alphabet), "he", "the" and <|endoftext|> (259 pieces), and merges.txt with two merges.
inline void write_tiny_gpt2(const fs::path& dir) {
  nlohmann::json vocab = nlohmann::json::object();
  int next = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    vocab[utf8(printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++))] = b;
  }
  vocab["he"] = 256;
  vocab["the"] = 257;
  vocab["<|endoftext|>"] = 258;
  write_bytes(dir / "vocab.json", vocab.dump());
  write_bytes(dir / "merges.txt", "#version: 0.2\nh e\nt he\n");
}

/// A model folder in `dir` that LanguageModel::open accepts: a tiny reference GPT (4 layers of
/// width 16, context 128, so the hooks and context lengths of configs/demo.json fit) with the
/// tiny GPT-2 tokenizer.
inline void write_tiny_model(const fs::path& dir) {
  GptConfig c;
  c.vocab_size = 259;
  c.d_model = 16;
  c.n_layers = 4;
  c.n_heads = 2;
  c.d_mlp = 32;
  c.context_length = 128;
  torch::jit::Module m = build_gpt(c, 0);
  ModelInfo info;
  info.name = "fuzz-gpt";
  info.d_model = c.d_model;
  info.n_layers = c.n_layers;
  info.context_length = c.context_length;
  info.vocab_size = c.vocab_size;
  info.tokenizer = {{"kind", "gpt2"}, {"encoder", "vocab.json"}, {"merges", "merges.txt"}};
  info.hook_aliases = residual_aliases("blocks.", c.n_layers);
  save_model_folder(m, info, dir.string());
  write_tiny_gpt2(dir);
}

}  // namespace saelab::fuzz
