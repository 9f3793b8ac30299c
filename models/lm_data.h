// Token streams and fixed-length contexts for language-model training and evaluation.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "models/corpus.h"
#include "models/tokenizer.h"

namespace saelab {

/// Tokenizes documents into one stream: each document's tokens followed by EOS.
std::vector<int64_t> token_stream(const Tokenizer& tokenizer, const std::vector<const Document*>& documents,
                                  bool show_progress = true);

/// Non-overlapping evaluation contexts: row j is [BOS, s[j*T], …, s[j*T + T - 1]],
/// shape [n, T + 1] (inputs are [:, :T], targets [:, 1:]).
/// `max_rows` = 0 keeps all complete rows.
torch::Tensor eval_contexts(const std::vector<int64_t>& stream, int64_t context_length, int64_t bos_id,
                            int64_t max_rows = 0);

/// A training batch [batch, T + 1]: BOS followed by T tokens taken from random offsets that depend
/// only on (seed, step), so a resumed run sees exactly the batches an uninterrupted one would.
torch::Tensor training_batch(const std::vector<int64_t>& stream, int64_t context_length, int64_t bos_id,
                             int64_t batch_size, uint64_t seed, int64_t step);

/// Entropy (nats) of the unigram distribution of the targets (all but column 0) of `contexts`.
double unigram_entropy(const torch::Tensor& contexts, int64_t vocab_size);

}  // namespace saelab
