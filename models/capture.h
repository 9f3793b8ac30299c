// Capturing activations: runs a corpus through a hooked model in fixed-length contexts and
// writes every requested hook point to an activation store (core/activation_store.h), all hooks
// from one forward pass per batch, stopping each pass after the last hook needed.
//
// OUT/capture.json records the run (model, hooks, options, documents); OUT/<hook>/ holds each store.
#pragma once
#include <string>
#include <vector>

#include "models/model_bundle.h"

namespace saelab {

struct CaptureOptions {
  /// Hook points or aliases to capture.
  std::vector<std::string> hooks;
  /// Rows (token positions) to capture per hook.
  int64_t tokens = 100000;
  /// Corpus spec (brown, brown:DIR, text:PATH, jsonl:PATH).
  std::string corpus = "brown";
  /// Corpus split.
  std::string split = "train";
  /// Context length including BOS; 0 means the model's.
  int64_t context_length = 0;
  /// Pack documents back to back (EOS between); false starts every context at a document start.
  bool pack_documents = true;
  /// Store BOS positions too (their norms are huge and distort SAE training).
  bool include_bos = false;
  /// float32, float16 or bfloat16.
  std::string dtype = "float32";
  /// Contexts per forward pass.
  int64_t batch_size = 16;
  /// Rows per shard file.
  int64_t shard_rows = 32768;

  void validate() const;
  nlohmann::json to_json() const;
};

class JsonFields;

/// Reads the CaptureOptions keys (hooks, tokens, corpus, split, context_length, pack_documents,
/// include_bos, dtype, batch_size, shard_rows) present in a config object; the caller reads its
/// own keys and calls finish().
void read_capture_options(JsonFields& fields, CaptureOptions& options);

struct CaptureResult {
  int64_t rows = 0;          ///< rows per hook
  int64_t contexts = 0;      ///< contexts run in this invocation
  double seconds = 0;
  double tokens_per_second = 0;  ///< model tokens through the forward pass per second
};

/// Captures into `out_dir`, resuming a capture interrupted there.
CaptureResult capture_activations(LanguageModel& lm, const CaptureOptions& options, const std::string& cache_dir,
                                  const std::string& out_dir);

/// The folder name of a hook point's store inside a capture folder.
std::string hook_folder(const std::string& hook);

}  // namespace saelab
