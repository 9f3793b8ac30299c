// The tokens a model saw in training, from the corpus its model.json records: tokens it never saw
// (a SentencePiece model's byte-fallback pieces of bytes absent from the corpus, say) keep their
// initial embeddings, and with tied embeddings those share one direction, so they would top many
// features' logit effects without meaning anything.
#pragma once
#include <torch/torch.h>

#include <string>

#include "models/model_bundle.h"

namespace saelab {

struct SeenTokens {
  torch::Tensor seen;  // [vocab] bool; undefined when the model records no training corpus
  int64_t never_seen = 0;
  std::string note;    // one sentence for the tables that leave them out (or say why none are)
};

/// Counts the tokens of the train split of model.json's `training.corpus` (BOS and EOS count as
/// seen). Without a recorded corpus, or when it cannot be opened here, `seen` is undefined and the
/// note says why every token is ranked.
SeenTokens tokens_seen_in_training(const LanguageModel& lm, const std::string& cache_dir);

}  // namespace saelab
