// Tests of steering (analysis/steering.h).
#include "tests/analysis_fixture.h"

namespace saelab {
namespace {

TEST(Steering, AlphaZeroEqualsUnsteeredGenerationAndLargeAlphaRaisesTheFeature) {
  Fixture& f = fixture();
  const AttachedSae a = f.attach("steer", Sae(config("topk", f.d(), 64, 8), 6));
  SteerOptions o;
  o.alphas = {0.0, 40.0};
  o.generate.max_new_tokens = 12;
  o.generate.temperature = 0;  // greedy: differences come from steering alone
  const SteerResult r = steer(f.lm, f.hooked, a, 3, "The jury said that", find_unembedding(f.lm), o);
  ASSERT_EQ(r.samples.size(), 2u);
  EXPECT_EQ(r.samples[0].ids, r.unsteered.ids);
  EXPECT_EQ(r.samples[0].text, r.unsteered.text);
  EXPECT_GT(r.samples[1].feature_activation, r.unsteered.feature_activation + 1.0);
  EXPECT_NE(r.side_by_side().find("alpha 40"), std::string::npos);
}

// Add mode: α W_dec,i on positions 1.. only (BOS as it was), or on every position with include_bos.
// Clamp mode: x + (c · max − f_i(x)) W_dec,i, so that the feature's activation in the SAE's
// reconstruction is c · max; computed here from the SAE directly.
TEST(Steering, TheHookLeavesBosAloneAndClampSetsTheFeaturesActivation) {
  Fixture& f = fixture();
  const Sae sae(config("topk", f.d(), 64, 8), 6);
  const int64_t feature = 3;
  torch::manual_seed(2);
  const torch::Tensor x = torch::randn({2, 5, f.d()});
  const torch::Tensor w = sae.param("W_dec").detach()[feature];
  SteerOptions o;
  torch::NoGradGuard g;
  const torch::Tensor added = steering_hook(sae, feature, 4.0, 0, o)(x);
  EXPECT_TRUE(torch::equal(added.select(1, 0), x.select(1, 0)));
  EXPECT_TRUE(torch::allclose(added.narrow(1, 1, 4), x.narrow(1, 1, 4) + 4.0 * w, 1e-5, 1e-5));
  o.include_bos = true;
  EXPECT_TRUE(torch::allclose(steering_hook(sae, feature, 4.0, 0, o)(x), x + 4.0 * w, 1e-5, 1e-5));

  o.include_bos = false;
  o.mode = "clamp";
  const double max_activation = 2.5;
  const torch::Tensor clamped = steering_hook(sae, feature, 3.0, max_activation, o)(x);
  EXPECT_TRUE(torch::equal(clamped.select(1, 0), x.select(1, 0)));
  const torch::Tensor fi = sae.encode(x.narrow(1, 1, 4)).select(-1, feature);  // [2, 4]
  const torch::Tensor expected = x.narrow(1, 1, 4) + (3.0 * max_activation - fi).unsqueeze(-1) * w;
  EXPECT_TRUE(torch::allclose(clamped.narrow(1, 1, 4), expected, 1e-5, 1e-5));
  // c = 0 removes the feature's contribution wherever it fires.
  const torch::Tensor ablated = steering_hook(sae, feature, 0.0, max_activation, o)(x);
  EXPECT_TRUE(torch::allclose(ablated.narrow(1, 1, 4), x.narrow(1, 1, 4) - fi.unsqueeze(-1) * w, 1e-5, 1e-5));
  // Clamping needs the feature's scale.
  EXPECT_THROWS_WITH(steering_hook(sae, feature, 3.0, 0, o), "clamp steering needs the feature's maximum activation");
  o.mode = "scale";
  EXPECT_THROWS_WITH(steering_hook(sae, feature, 3.0, 1, o), "steering mode must be add or clamp");
}

TEST(Steering, ClampModeSteersGenerationAndSaysSo) {
  Fixture& f = fixture();
  const AttachedSae a = f.attach("steer-clamp", Sae(config("topk", f.d(), 64, 8), 6));
  SteerOptions o;
  o.mode = "clamp";
  o.alphas = {0.0, 20.0};
  o.generate.max_new_tokens = 12;
  o.generate.temperature = 0;
  const SteerResult r = steer(f.lm, f.hooked, a, 3, "The jury said that", find_unembedding(f.lm), o, 2.0);
  ASSERT_EQ(r.samples.size(), 2u);
  EXPECT_GT(r.samples[1].feature_activation, r.unsteered.feature_activation + 1.0);
  EXPECT_EQ(r.to_json()["mode"], "clamp");
  EXPECT_EQ(r.to_json()["max_activation"], 2.0);
  EXPECT_NE(r.side_by_side().find("c 20"), std::string::npos);
}

}  // namespace
}  // namespace saelab
