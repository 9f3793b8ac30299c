// Capturing activations: runs a corpus through a hooked model in fixed-length contexts and
// writes every requested hook point to an activation store (core/activation_store.h), all hooks
// from one forward pass per batch, stopping each pass after the last hook needed.
//
// OUT/capture.json records the run (model, hooks, options, documents); OUT/<hook>/ holds each store.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/activation_store.h"
#include "core/options.h"
#include "models/model_bundle.h"

namespace saelab {

struct CaptureOptions {
  std::vector<std::string> hooks;
  int64_t tokens = 1024000;  // one pass of train's default 250 steps x 4,096 rows
  std::string corpus = "brown";
  std::string split = "train";
  int64_t context_length = 0;
  bool pack_documents = true;
  bool include_bos = false;
  std::string dtype = "float32";
  int64_t batch_size = 16;
  int64_t shard_rows = 32768;

  template <class V>
  void fields(V& v) {
    v("hooks", hooks, "hook points or aliases to capture, e.g. blocks.1.input", path_name().and_non_empty());
    v("tokens", tokens, "rows (token positions) to capture per hook", at_least(1));
    v("corpus", corpus, "corpus: brown, brown:DIR, text:PATH or jsonl:PATH");
    v("split", split, "corpus split: train, validation or test");
    v("context_length", context_length, "context length including BOS (0: the model's)", at_least(0));
    v("pack_documents", pack_documents, "pack documents back to back, EOS between (false: one per context)");
    v("include_bos", include_bos, "store BOS positions too (their norms are huge and distort SAE training)");
    v("dtype", dtype, "stored dtype: float32, float16 or bfloat16");
    v("batch_size", batch_size, "contexts per forward pass", at_least(1));
    v("shard_rows", shard_rows, "rows per shard file", at_least(1));
  }
  void validate() const;
};

struct CaptureResult {
  int64_t rows = 0;          ///< rows per hook
  int64_t contexts = 0;      ///< contexts run in this invocation
  double seconds = 0;
  double tokens_per_second = 0;  ///< model tokens through the forward pass per second
};

/// Captures into `out_dir`, resuming a capture interrupted there.
CaptureResult capture_activations(LanguageModel& lm, const CaptureOptions& options, const std::string& cache_dir,
                                  const std::string& out_dir);

/// Activations streamed from the model for training without a store (saelab train --model): the
/// plan of `plan` (hooks, corpus, split, context length, packing, BOS; batch_size contexts per
/// forward pass; tokens rows per pass over the plan, passes repeating) through a shuffle buffer of
/// `buffer_rows` rows that is refilled when half empty and shuffled with a generator seeded by
/// `seed` and the refill's number (SAELens' mixing buffer). Batches of `batch_size` rows. The same
/// seed gives the same batches; save()/load() restore the position exactly. `lm` must outlive it.
std::unique_ptr<ActivationStream> open_activation_stream(LanguageModel& lm, const CaptureOptions& plan,
                                                         const std::string& cache_dir, int64_t batch_size,
                                                         int64_t buffer_rows, uint64_t seed);

/// The folder name of a hook point's store inside a capture folder.
std::string hook_folder(const std::string& hook);

}  // namespace saelab
