// Sampling from a language model: temperature and top-k, from a prompt.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "models/model_bundle.h"
#include "core/options.h"

namespace saelab {

struct GenerateOptions {
  int64_t max_new_tokens = 60;
  double temperature = 0.8;
  int64_t top_k = 40;
  int64_t seed = 0;
  bool stop_at_eos = true;

  template <class V>
  void fields(V& v) {
    v("max_new_tokens", max_new_tokens, "tokens to generate", in_range(0, 1000000));
    v("temperature", temperature, "softmax temperature (0: greedy)", in_range(0, 1000));
    v("top_k", top_k, "sample among the k most likely tokens (0: the whole vocabulary)", at_least(0));
    v("seed", seed, "sampling seed", at_least(0));
    v("stop_at_eos", stop_at_eos, "stop when the model emits EOS");
  }
};

/// Token ids for a prompt: BOS first when the model expects it. Throws when the prompt does not
/// fit the context.
std::vector<int64_t> prompt_ids(const LanguageModel& lm, const std::string& prompt);

/// `s` with each byte that does not start a valid UTF-8 sequence replaced by U+FFFD (Python's
/// errors="replace"): byte-level BPE ids decode to bytes, and a generated run may stop inside a
/// character or hold bytes no character has; JSON, the report and the server need valid UTF-8.
std::string utf8_or_replacement(const std::string& s);

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
