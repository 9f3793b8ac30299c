// matryoshka_batchtopk (Bussmann et al. 2025): the batchtopk code, and each inner level w also
// predicts the target from the code's latents below w alone (the `nested` loss term).
#include "sae/architecture.h"

namespace saelab {
namespace {

class Matryoshka final : public BatchTopKRules {
 public:
  Architecture id() const override { return Architecture::kMatryoshkaBatchTopK; }
  const char* name() const override { return "matryoshka_batchtopk"; }

  void validate(const SaeConfig& c) const override {
    const std::vector<int64_t>& widths = c.matryoshka_widths;
    TORCH_CHECK(!widths.empty(), "matryoshka_widths must list the nested widths (the last one d_sae)");
    TORCH_CHECK(widths.back() == c.d_sae, "the last matryoshka width must be d_sae ", c.d_sae, " (got ", widths.back(), ")");
    TORCH_CHECK(widths.front() >= c.k, "the smallest matryoshka width ", widths.front(), " is below k ", c.k);
    for (size_t i = 1; i < widths.size(); ++i) {
      TORCH_CHECK(widths[i] > widths[i - 1], "matryoshka_widths must be strictly increasing (", widths[i - 1], " then ",
                  widths[i], ")");
    }
  }

  void forward(Sae& s, const CoderBatch& b, SaeOutput& o) const override {
    const TopKCode code = batch_code(s, b, o);
    const SaeConfig& c = s.config();
    const torch::Tensor& W_dec = p(s, "W_dec");
    const std::vector<int64_t>& widths = c.matryoshka_widths;
    const int64_t rows = b.x.size(0);
    if (rows * c.d_sae <= (int64_t{1} << 24)) {
      // The levels partition the latents, so one dense decode, group by group and accumulated,
      // gives every level: cheaper than a sparse decode per level while [rows, d_sae] is small.
      const torch::Tensor dense = topk_to_dense(code, c.d_sae);
      torch::Tensor partial = b.base.expand({rows, c.out_width()});
      int64_t start = 0;
      for (size_t level = 0; level + 1 < widths.size(); ++level) {
        const int64_t width = widths[level];
        partial = torch::addmm(partial, dense.narrow(1, start, width - start), W_dec.narrow(0, start, width - start));
        start = width;
        o.nested = o.nested + squared_error(b.y, partial);
      }
    } else {
      for (size_t level = 0; level + 1 < widths.size(); ++level) {
        const torch::Tensor inner = code.values * (code.indices < widths[level]).to(code.values.dtype());
        o.nested = o.nested + squared_error(b.y, topk_decode(inner, code.indices, W_dec, dec_grad(s)) + b.base);
      }
    }
    if (b.any_dead()) o.aux = aux_k_loss(s, b, o.x_hat);
  }
};

}  // namespace

const ArchitectureRules& matryoshka_architecture() {
  static const Matryoshka rules;
  return rules;
}

}  // namespace saelab
