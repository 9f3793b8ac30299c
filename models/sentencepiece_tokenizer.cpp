#include "models/sentencepiece_tokenizer.h"

#include <c10/util/Exception.h>
#include <dlfcn.h>

#include <filesystem>
#include <mutex>

#include "core/files.h"

namespace saelab {

namespace {

namespace fs = std::filesystem;

// The SentencePiece shim (see models/spm_shim/spm_shim.h for why it is opened this way).
struct SpmApi {
  void* (*load)(const char*, size_t, char*, size_t);
  void (*free)(void*);
  void (*encode)(void*, const char*, size_t, void (*)(void*, int, unsigned, unsigned), void*);
  void (*decode)(void*, const int*, size_t, void (*)(void*, const char*, size_t), void*);
  const char* (*id_to_piece)(void*, int);
  int (*piece_to_id)(void*, const char*);
  int (*vocab_size)(void*);
  int (*bos_id)(void*);
  int (*eos_id)(void*);
  int (*unk_id)(void*);
  int (*train)(const char* const*, const char* const*, size_t, int (*)(void*, const char**, size_t*), void*,
               void (*)(void*, const char*, size_t), void*, char*, size_t);
};

std::string shim_path() {
  if (const char* env = std::getenv("SAELAB_SPM_SHIM")) return env;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path beside = exe.parent_path() / "libsaelab_spm.so";
    if (fs::exists(beside, ec)) return beside.string();
  }
  return SAELAB_BINARY_DIR "/libsaelab_spm.so";
}

const SpmApi& spm() {
  static SpmApi api;
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string path = shim_path();
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    TORCH_CHECK(lib != nullptr, "cannot open the SentencePiece shim '", path, "': ", dlerror(),
                " (rebuild with scripts/setup, or set SAELAB_SPM_SHIM)");
    auto sym = [&](const char* name) {
      void* f = dlsym(lib, name);
      TORCH_CHECK(f != nullptr, "SentencePiece shim '", path, "' lacks ", name);
      return f;
    };
    api.load = reinterpret_cast<decltype(api.load)>(sym("saelab_spm_load"));
    api.free = reinterpret_cast<decltype(api.free)>(sym("saelab_spm_free"));
    api.encode = reinterpret_cast<decltype(api.encode)>(sym("saelab_spm_encode"));
    api.decode = reinterpret_cast<decltype(api.decode)>(sym("saelab_spm_decode"));
    api.id_to_piece = reinterpret_cast<decltype(api.id_to_piece)>(sym("saelab_spm_id_to_piece"));
    api.piece_to_id = reinterpret_cast<decltype(api.piece_to_id)>(sym("saelab_spm_piece_to_id"));
    api.vocab_size = reinterpret_cast<decltype(api.vocab_size)>(sym("saelab_spm_vocab_size"));
    api.bos_id = reinterpret_cast<decltype(api.bos_id)>(sym("saelab_spm_bos_id"));
    api.eos_id = reinterpret_cast<decltype(api.eos_id)>(sym("saelab_spm_eos_id"));
    api.unk_id = reinterpret_cast<decltype(api.unk_id)>(sym("saelab_spm_unk_id"));
    api.train = reinterpret_cast<decltype(api.train)>(sym("saelab_spm_train"));
  });
  return api;
}

// Feeds document text to the trainer in chunks cut at spaces, below the trainer's sentence limit.
struct ChunkSource {
  const std::vector<const Document*>& docs;
  size_t max_bytes;
  size_t doc = 0;
  size_t pos = 0;
  std::string value;

  bool next() {
    while (doc < docs.size()) {
      const std::string& text = docs[doc]->text;
      if (pos >= text.size()) {
        ++doc;
        pos = 0;
        continue;
      }
      size_t end = std::min(text.size(), pos + max_bytes);
      if (end < text.size()) {
        const size_t space = text.rfind(' ', end);
        if (space != std::string::npos && space > pos) end = space;
      }
      value = text.substr(pos, end - pos);
      for (char& c : value) {
        if (c == '\n' || c == '\r') c = ' ';  // the trainer reads one sentence per line
      }
      pos = end;
      if (value.find_first_not_of(' ') != std::string::npos) return true;
    }
    return false;
  }
};

}  // namespace

void train_sentencepiece(const std::vector<const Document*>& documents, const SentencePieceTrainOptions& options,
                         const std::string& model_path) {
  TORCH_CHECK(!documents.empty(), "cannot train a tokenizer on an empty corpus");
  TORCH_CHECK(options.vocab_size >= 300, "vocab_size must be at least 300 (got ", options.vocab_size, ")");
  TORCH_CHECK(options.model_type == "bpe" || options.model_type == "unigram",
              "model_type must be bpe or unigram (got ", options.model_type, ")");
  const std::vector<std::pair<std::string, std::string>> args = {
      {"model_type", options.model_type},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"character_coverage", "1.0"},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"max_sentence_length", std::to_string(options.max_chunk_bytes + 16)},
      {"input_sentence_size", "2000000"},
      {"shuffle_input_sentence", "false"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"num_threads", std::to_string(options.threads)},
      {"minloglevel", "1"},
  };
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : args) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  ChunkSource source{documents, static_cast<size_t>(options.max_chunk_bytes), 0, 0, {}};
  std::string model;
  char err[512] = {0};
  const int rc = spm().train(
      keys.data(), values.data(), keys.size(),
      [](void* ctx, const char** s, size_t* n) -> int {
        auto* src = static_cast<ChunkSource*>(ctx);
        if (!src->next()) return 0;
        *s = src->value.data();
        *n = src->value.size();
        return 1;
      },
      &source, [](void* ctx, const char* data, size_t n) { static_cast<std::string*>(ctx)->assign(data, n); },
      &model, err, sizeof(err));
  TORCH_CHECK(rc == 0, "SentencePiece training failed: ", err);
  write_file_atomic(model_path, model);
}

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path) : model_path_(model_path) {
  const std::string bytes = read_file(model_path, "SentencePiece model");
  char err[512] = {0};
  handle_ = spm().load(bytes.data(), bytes.size(), err, sizeof(err));
  TORCH_CHECK(handle_ != nullptr, "SentencePiece model '", model_path, "' is corrupt: ", err);
}

SentencePieceTokenizer::~SentencePieceTokenizer() {
  if (handle_ != nullptr) spm().free(handle_);
}

Encoding SentencePieceTokenizer::encode(std::string_view text) const {
  Encoding out;
  spm().encode(
      handle_, text.data(), text.size(),
      [](void* ctx, int id, unsigned b, unsigned e) {
        auto* o = static_cast<Encoding*>(ctx);
        o->ids.push_back(id);
        o->begins.push_back(b);
        o->ends.push_back(e);
      },
      &out);
  return out;
}

std::string SentencePieceTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::vector<int> narrow;
  narrow.reserve(ids.size());
  for (int64_t id : ids) {
    TORCH_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " is outside the vocabulary (size ", vocab_size(), ")");
    narrow.push_back(static_cast<int>(id));
  }
  std::string text;
  spm().decode(
      handle_, narrow.data(), narrow.size(),
      [](void* ctx, const char* data, size_t n) { static_cast<std::string*>(ctx)->assign(data, n); }, &text);
  return text;
}

std::string SentencePieceTokenizer::id_to_piece(int64_t id) const {
  TORCH_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " is outside the vocabulary (size ", vocab_size(), ")");
  return spm().id_to_piece(handle_, static_cast<int>(id));
}

int64_t SentencePieceTokenizer::piece_to_id(const std::string& piece) const {
  const int id = spm().piece_to_id(handle_, piece.c_str());
  return (id == spm().unk_id(handle_) && piece != spm().id_to_piece(handle_, id)) ? -1 : id;
}

int64_t SentencePieceTokenizer::vocab_size() const { return spm().vocab_size(handle_); }
int64_t SentencePieceTokenizer::bos_id() const { return spm().bos_id(handle_); }
int64_t SentencePieceTokenizer::eos_id() const { return spm().eos_id(handle_); }

nlohmann::json SentencePieceTokenizer::describe() const {
  return {{"kind", "sentencepiece"}, {"model", std::filesystem::path(model_path_).filename().string()}};
}

}  // namespace saelab
