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

// The norm type decides how a direction is read: LayerNorm centres and scales by w, RMSNorm scales
// by w, Gemma's RMSNorm by 1 + w. Only a bias makes the type certain; without one, model.json must
// say which it is.
TEST(LogitEffects, TheFinalNormsTypeComesFromModelJsonOrAnUnambiguousBias) {
  torch::manual_seed(4);
  const int64_t d = 6, vocab = 11;
  const torch::Tensor w = torch::rand({d}) + 0.5, W_U = torch::randn({vocab, d});
  std::map<std::string, torch::Tensor> params = {{"ln_f.weight", w}, {"lm_head.weight", W_U}};
  Sae sae(config("topk", d, 4, 2), 1);
  const torch::Tensor dir = sae.param("W_dec").detach()[1].to(torch::kFloat64);
  auto effect = [&](const Unembedding& u) {
    return feature_logit_effects(sae, u, torch::tensor({1}, torch::kInt64))[0].to(torch::kFloat64);
  };
  const torch::Tensor wd = w.to(torch::kFloat64), Ud = W_U.to(torch::kFloat64);

  EXPECT_THROWS_WITH(unembedding_from(params, nlohmann::json(), vocab, "m"),
                     "final norm 'ln_f.weight' has a weight and no bias", "\"norm\"");
  const Unembedding rms = unembedding_from(params, {{"norm", "rmsnorm"}}, vocab, "m");
  EXPECT_EQ(rms.norm, "rmsnorm");
  EXPECT_TRUE(torch::allclose(effect(rms), torch::matmul(Ud, dir * wd), 1e-4, 1e-5));
  const Unembedding gemma = unembedding_from(params, {{"norm", "rmsnorm_plus_one"}}, vocab, "m");
  EXPECT_TRUE(torch::allclose(effect(gemma), torch::matmul(Ud, dir * (1 + wd)), 1e-4, 1e-5));
  const Unembedding ln_no_bias = unembedding_from(params, {{"norm", "layernorm"}}, vocab, "m");
  EXPECT_TRUE(torch::allclose(effect(ln_no_bias), torch::matmul(Ud, (dir - dir.mean()) * wd), 1e-4, 1e-5));
  const Unembedding none = unembedding_from(params, {{"norm", "none"}}, vocab, "m");
  EXPECT_TRUE(torch::allclose(effect(none), torch::matmul(Ud, dir), 1e-4, 1e-5));
  EXPECT_THROWS_WITH(unembedding_from(params, {{"norm", "batchnorm"}}, vocab, "m"),
                     "logit_lens.norm must be layernorm, rmsnorm, rmsnorm_plus_one or none");

  params["ln_f.bias"] = torch::zeros({d});  // a bias: LayerNorm, no need to say so
  const Unembedding ln = unembedding_from(params, nlohmann::json(), vocab, "m");
  EXPECT_EQ(ln.norm, "layernorm");
  EXPECT_TRUE(torch::allclose(effect(ln), torch::matmul(Ud, (dir - dir.mean()) * wd), 1e-4, 1e-5));
}

}  // namespace
}  // namespace saelab
