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

}  // namespace
}  // namespace saelab
