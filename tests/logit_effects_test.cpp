// Tests of logit effects (analysis/logit_effects.h).
#include "tests/analysis_fixture.h"

namespace saelab {
namespace {

TEST(LogitEffects, ReadTheDecoderThroughTheFinalLayerNormAndUnembedding) {
  Fixture& f = fixture();
  const Unembedding u = find_unembedding(f.lm);
  EXPECT_EQ(u.ln_name, "ln_final.weight");
  EXPECT_EQ(u.unembed_name, "unembed.weight");
  Sae sae(config("topk", f.d(), 32, 4), 2);
  const LogitEffects e = logit_effects(sae, u, 5);
  torch::NoGradGuard g;
  const torch::Tensor w = sae.param("W_dec")[7].to(torch::kFloat64);
  const torch::Tensor gamma = f.lm.module().attr("ln_final").toModule().attr("weight").toTensor().to(torch::kFloat64);
  const torch::Tensor W_U = f.lm.module().attr("unembed").toModule().attr("weight").toTensor().to(torch::kFloat64);  // [V, d]
  const torch::Tensor direct = torch::matmul(W_U, (w - w.mean()) * gamma);
  auto [vals, ids] = direct.topk(5);
  EXPECT_TRUE(torch::equal(e.promoted_ids[7], ids));
  EXPECT_TRUE(torch::allclose(e.promoted[7].to(torch::kFloat64), vals, 1e-4, 1e-5));
  EXPECT_TRUE(torch::equal(e.suppressed_ids[7], std::get<1>(direct.topk(5, 0, false))));
}

}  // namespace
}  // namespace saelab
