#include "models/generate.h"

#include <torch/torch.h>

#include <random>

namespace saelab {

std::vector<int64_t> prompt_ids(const LanguageModel& lm, const std::string& prompt) {
  std::vector<int64_t> ids;
  if (lm.info().prepend_bos) ids.push_back(lm.tokenizer().bos_id());
  const auto body = lm.tokenizer().encode_ids(prompt);
  ids.insert(ids.end(), body.begin(), body.end());
  TORCH_CHECK(static_cast<int64_t>(ids.size()) <= lm.info().context_length, "prompt of ", ids.size(),
              " tokens is longer than the model's context length ", lm.info().context_length);
  TORCH_CHECK(!ids.empty(), "the prompt is empty and the model takes no BOS token; give a prompt");
  return ids;
}

std::string utf8_or_replacement(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size() && !(n == 2 && c < 0xC2);
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) >> 6) == 0x2;
    if (ok && n == 3) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);  // overlong, surrogates
    }
    if (ok && n == 4) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = c <= 0xF4 && !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
    }
    if (ok) {
      out.append(s, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += 1;
    }
  }
  return out;
}

std::string generated_text(const LanguageModel& lm, const std::vector<int64_t>& prompt,
                           const std::vector<int64_t>& generated) {
  std::vector<int64_t> all = prompt;
  if (lm.info().prepend_bos && !all.empty() && all.front() == lm.tokenizer().bos_id()) all.erase(all.begin());
  all.insert(all.end(), generated.begin(), generated.end());
  return utf8_or_replacement(lm.tokenizer().decode(all));
}

std::vector<int64_t> generate(LanguageModel& lm, const std::vector<int64_t>& prompt, const GenerateOptions& options,
                              const std::function<torch::Tensor(const torch::Tensor&)>& logits_fn) {
  TORCH_CHECK(options.temperature >= 0, "temperature must be >= 0 (got ", options.temperature, ")");
  TORCH_CHECK(options.top_k >= 0, "top_k must be >= 0 (got ", options.top_k, ")");
  TORCH_CHECK(options.max_new_tokens >= 0, "max_new_tokens must be >= 0 (got ", options.max_new_tokens, ")");
  const int64_t ctx = lm.info().context_length;
  TORCH_CHECK(!prompt.empty() && static_cast<int64_t>(prompt.size()) <= ctx, "prompt of ", prompt.size(),
              " tokens does not fit the model's context length ", ctx);
  torch::NoGradGuard no_grad;
  std::mt19937_64 rng(static_cast<uint64_t>(options.seed));
  std::vector<int64_t> all = prompt, out;
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    std::vector<int64_t> window = all;
    if (static_cast<int64_t>(window.size()) > ctx) {
      window.assign(all.end() - (ctx - 1), all.end());
      window.insert(window.begin(), all.front());
    }
    const torch::Tensor tokens = torch::tensor(window, torch::kInt64).unsqueeze(0);
    torch::Tensor logits = (logits_fn ? logits_fn(tokens) : lm.logits(tokens))[0][-1].to(torch::kFloat64);  // [vocab]
    // A model's vocabulary may be wider than its tokenizer's (Pythia's and OLMo's padded embedding
    // rows, a family model with GPT-2's tokenizer): ids no text has are never generated.
    const int64_t pieces = lm.tokenizer().vocab_size();
    if (logits.size(0) > pieces) logits = logits.narrow(0, 0, pieces);
    int64_t next;
    if (options.temperature == 0) {
      next = logits.argmax().item<int64_t>();
    } else {
      logits = logits / options.temperature;
      if (options.top_k > 0 && options.top_k < logits.size(0)) {
        const double kth = std::get<0>(logits.topk(options.top_k))[-1].item<double>();
        logits = logits.masked_fill(logits < kth, -std::numeric_limits<double>::infinity());
      }
      const torch::Tensor probs = torch::softmax(logits, 0).contiguous();
      const double* p = probs.data_ptr<double>();
      const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
      double acc = 0;
      next = logits.argmax().item<int64_t>();  // if rounding leaves u above the total
      for (int64_t v = 0; v < probs.size(0); ++v) {
        acc += p[v];
        if (u < acc) {
          next = v;
          break;
        }
      }
    }
    if (options.stop_at_eos && next == lm.tokenizer().eos_id()) break;
    all.push_back(next);
    out.push_back(next);
  }
  return out;
}

}  // namespace saelab
