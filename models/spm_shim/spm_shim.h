// C interface of the SentencePiece shim library (libsaelab_spm.so).
//
// Debian's libsentencepiece carries its own copy of protobuf-lite with exported symbols, and
// LibTorch loads the full libprotobuf: linked into one process, each resolves the other's symbols
// and the process crashes during static initialisation. The shim links SentencePiece alone and is
// opened at run time with RTLD_LOCAL | RTLD_DEEPBIND, so SentencePiece binds to its own protobuf
// copy and LibTorch never sees it.
#pragma once
#include <stddef.h>

extern "C" {

/// Loads a serialized model; returns a handle, or null with a message in `err`.
void* saelab_spm_load(const char* bytes, size_t n, char* err, size_t err_len);
void saelab_spm_free(void* handle);

/// Encodes text; calls emit(ctx, id, begin, end) per piece (byte offsets).
void saelab_spm_encode(void* handle, const char* text, size_t n, void (*emit)(void*, int, unsigned, unsigned),
                       void* ctx);
/// Decodes ids; writes the text through emit_text(ctx, data, n).
void saelab_spm_decode(void* handle, const int* ids, size_t n, void (*emit_text)(void*, const char*, size_t),
                       void* ctx);
const char* saelab_spm_id_to_piece(void* handle, int id);
int saelab_spm_piece_to_id(void* handle, const char* piece);
int saelab_spm_vocab_size(void* handle);
int saelab_spm_bos_id(void* handle);
int saelab_spm_eos_id(void* handle);
int saelab_spm_unk_id(void* handle);

/// Trains a model from `n_args` key/value flags and sentences pulled from next(ctx, &s, &len)
/// (returns 0 when done). The serialized model goes through emit_model(ctx, data, n).
/// Returns 0 on success, else writes a message to `err`.
int saelab_spm_train(const char* const* keys, const char* const* values, size_t n_args,
                     int (*next)(void*, const char**, size_t*), void* next_ctx,
                     void (*emit_model)(void*, const char*, size_t), void* model_ctx, char* err, size_t err_len);
}
