#include "models/lm_data.h"

#include <cmath>
#include <random>

#include "core/progress.h"

namespace saelab {

std::vector<int64_t> token_stream(const Tokenizer& tokenizer, const std::vector<const Document*>& documents,
                                  bool show_progress) {
  std::vector<int64_t> stream;
  std::unique_ptr<Progress> bar;
  if (show_progress) bar = std::make_unique<Progress>("tokenize", static_cast<int64_t>(documents.size()), "doc");
  int64_t done = 0;
  for (const Document* doc : documents) {
    const auto ids = tokenizer.encode_ids(doc->text);
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(tokenizer.eos_id());
    if (bar) bar->update(++done, std::to_string(stream.size()) + " tokens");
  }
  if (bar) bar->finish(std::to_string(stream.size()) + " tokens");
  return stream;
}

torch::Tensor eval_contexts(const std::vector<int64_t>& stream, int64_t context_length, int64_t bos_id,
                            int64_t max_rows) {
  const int64_t T = context_length;
  int64_t rows = static_cast<int64_t>(stream.size()) / T;
  if (max_rows > 0) rows = std::min(rows, max_rows);
  TORCH_CHECK(rows > 0, "the evaluation text has ", stream.size(), " tokens, fewer than one context of ", T);
  torch::Tensor out = torch::empty({rows, T + 1}, torch::kInt64);
  auto a = out.accessor<int64_t, 2>();
  for (int64_t r = 0; r < rows; ++r) {
    a[r][0] = bos_id;
    for (int64_t t = 0; t < T; ++t) a[r][t + 1] = stream[r * T + t];
  }
  return out;
}

torch::Tensor training_batch(const std::vector<int64_t>& stream, int64_t context_length, int64_t bos_id,
                             int64_t batch_size, uint64_t seed, int64_t step) {
  const int64_t T = context_length;
  const int64_t n = static_cast<int64_t>(stream.size());
  TORCH_CHECK(n > T, "the training text has ", n, " tokens, too few for contexts of ", T);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step));
  std::uniform_int_distribution<int64_t> start(0, n - T);
  torch::Tensor out = torch::empty({batch_size, T + 1}, torch::kInt64);
  auto a = out.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch_size; ++b) {
    const int64_t s = start(rng);
    a[b][0] = bos_id;
    for (int64_t t = 0; t < T; ++t) a[b][t + 1] = stream[s + t];
  }
  return out;
}

double unigram_entropy(const torch::Tensor& contexts, int64_t vocab_size) {
  const torch::Tensor targets = contexts.narrow(1, 1, contexts.size(1) - 1).reshape(-1);
  const torch::Tensor counts = torch::bincount(targets, {}, vocab_size).to(torch::kFloat64);
  const torch::Tensor p = counts / counts.sum();
  const torch::Tensor nz = p.masked_select(p > 0);
  return -(nz * nz.log()).sum().item<double>();
}

}  // namespace saelab
