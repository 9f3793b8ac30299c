// Sampling from a language model: temperature and top-k, from a prompt.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "models/model_bundle.h"

namespace saelab {

struct GenerateOptions {
  /// Tokens to generate.
  int64_t max_new_tokens = 60;
  /// Softmax temperature; 0 means greedy decoding.
  double temperature = 0.8;
  /// Sample among the k most likely tokens; 0 means the whole vocabulary.
  int64_t top_k = 40;
  /// Sampling seed.
  int64_t seed = 0;
  /// Stop when the model emits EOS.
  bool stop_at_eos = true;
};

/// Token ids for a prompt: BOS first when the model expects it. Throws when the prompt does not
/// fit the context.
std::vector<int64_t> prompt_ids(const LanguageModel& lm, const std::string& prompt);

/// The prompt and its continuation as text (BOS left out). Decoding them together keeps the
/// space a word-initial piece carries, which decoding the continuation alone would drop.
std::string generated_text(const LanguageModel& lm, const std::vector<int64_t>& prompt,
                           const std::vector<int64_t>& generated);

/// Returns only the generated ids. When the text outgrows the context, the model sees the first
/// token (BOS) and the most recent ones.
/// `logits_fn` (tokens [1, T] → logits [1, T, vocab]) replaces the model's own forward pass, e.g.
/// to generate from a hooked (steered) model.
std::vector<int64_t> generate(LanguageModel& lm, const std::vector<int64_t>& prompt, const GenerateOptions& options,
                              const std::function<torch::Tensor(const torch::Tensor&)>& logits_fn = {});

}  // namespace saelab
