#include "models/spm_shim/spm_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <string>
#include <unordered_map>

namespace {

void copy_error(const std::string& msg, char* err, size_t err_len) {
  if (err_len == 0) return;
  std::strncpy(err, msg.c_str(), err_len - 1);
  err[err_len - 1] = '\0';
}

class PullIterator : public sentencepiece::SentenceIterator {
 public:
  PullIterator(int (*next)(void*, const char**, size_t*), void* ctx) : next_(next), ctx_(ctx) { Next(); }
  bool done() const override { return done_; }
  void Next() override {
    const char* s = nullptr;
    size_t n = 0;
    done_ = next_(ctx_, &s, &n) == 0;
    if (!done_) value_.assign(s, n);
  }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  int (*next_)(void*, const char**, size_t*);
  void* ctx_;
  bool done_ = false;
  std::string value_;
};

sentencepiece::SentencePieceProcessor* sp(void* h) { return static_cast<sentencepiece::SentencePieceProcessor*>(h); }

}  // namespace

extern "C" {

void* saelab_spm_load(const char* bytes, size_t n, char* err, size_t err_len) {
  auto* p = new sentencepiece::SentencePieceProcessor();
  const auto status = p->LoadFromSerializedProto(std::string(bytes, n));
  if (!status.ok()) {
    copy_error(status.ToString(), err, err_len);
    delete p;
    return nullptr;
  }
  return p;
}

void saelab_spm_free(void* handle) { delete sp(handle); }

void saelab_spm_encode(void* handle, const char* text, size_t n, void (*emit)(void*, int, unsigned, unsigned),
                       void* ctx) {
  const auto spt = sp(handle)->EncodeAsImmutableProto(std::string(text, n));
  for (size_t i = 0; i < spt.pieces_size(); ++i) {
    const auto p = spt.pieces(static_cast<int>(i));
    emit(ctx, static_cast<int>(p.id()), p.begin(), p.end());
  }
}

void saelab_spm_decode(void* handle, const int* ids, size_t n, void (*emit_text)(void*, const char*, size_t),
                       void* ctx) {
  const std::string text = sp(handle)->DecodeIds(std::vector<int>(ids, ids + n));
  emit_text(ctx, text.data(), text.size());
}

const char* saelab_spm_id_to_piece(void* handle, int id) { return sp(handle)->IdToPiece(id).c_str(); }
int saelab_spm_piece_to_id(void* handle, const char* piece) { return sp(handle)->PieceToId(piece); }
int saelab_spm_vocab_size(void* handle) { return sp(handle)->GetPieceSize(); }
int saelab_spm_bos_id(void* handle) { return sp(handle)->bos_id(); }
int saelab_spm_eos_id(void* handle) { return sp(handle)->eos_id(); }
int saelab_spm_unk_id(void* handle) { return sp(handle)->unk_id(); }

int saelab_spm_train(const char* const* keys, const char* const* values, size_t n_args,
                     int (*next)(void*, const char**, size_t*), void* next_ctx,
                     void (*emit_model)(void*, const char*, size_t), void* model_ctx, char* err, size_t err_len) {
  std::unordered_map<std::string, std::string> args;
  for (size_t i = 0; i < n_args; ++i) args[keys[i]] = values[i];
  PullIterator it(next, next_ctx);
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  if (!status.ok()) {
    copy_error(status.ToString(), err, err_len);
    return 1;
  }
  emit_model(model_ctx, model.data(), model.size());
  return 0;
}

}  // extern "C"
