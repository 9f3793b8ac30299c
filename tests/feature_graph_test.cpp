// Tests of the feature graph (analysis/feature_graph.h).
#include "tests/analysis_fixture.h"

namespace saelab {
namespace {

// The reference ablates the source at positions 1.. only and averages over the positions ≥ 1 where
// it fires; the source is chosen among the features firing at BOS, so that ablating or measuring
// BOS (as saelab did before) changes both the count and the effect.
TEST(FeatureGraph, AblationEffectsEqualADirectComputationThatLeavesBosOut) {
  Fixture& f = fixture();
  const AttachedSae a = f.attach("g1", Sae(config("topk", f.d(), 64, 8), 3), "blocks.1.input");
  const AttachedSae b = f.attach("g2", Sae(config("topk", f.d(), 64, 8), 4), "blocks.2.input");
  torch::NoGradGuard g;
  const torch::Tensor toks = f.eval_set.tokens.narrow(0, 0, 3);
  // Pick a source feature that fires.
  torch::Tensor x1;
  {
    HookScope scope(f.hooked);
    scope.capture(a.hook);
    scope.stop_after_last_hook();
    f.hooked.forward(toks);
    x1 = scope.captured(a.hook);
  }
  const torch::Tensor f1 = a.sae().encode(x1);
  const int64_t T = toks.size(1);
  const torch::Tensor at_bos = f1.select(1, 0).select(0, 0) > 0;  // [d_sae] features firing at BOS
  ASSERT_TRUE(at_bos.any().item<bool>());
  const torch::Tensor counts = (f1.narrow(1, 1, T - 1) > 0).sum(c10::IntArrayRef{0, 1}).to(torch::kFloat32);
  const int64_t source = std::get<1>((counts * at_bos.to(torch::kFloat32) - 1e9 * (~at_bos).to(torch::kFloat32)).max(0)).item<int64_t>();
  ASSERT_TRUE(at_bos[source].item<bool>());
  auto [effect, n] = ablation_effect(f.hooked, a, source, b, toks);
  ASSERT_GT(n, 0);
  // Direct: replace the activation by a precomputed ablated tensor (BOS untouched), read layer 2
  // in both runs.
  torch::Tensor ablated_x1 = x1.clone();
  ablated_x1.narrow(1, 1, T - 1).sub_(f1.narrow(1, 1, T - 1).select(-1, source).unsqueeze(-1) * a.sae().param("W_dec")[source]);
  auto layer2 = [&](const torch::Tensor* replacement) {
    HookScope scope(f.hooked);
    if (replacement) scope.replace(a.hook, [replacement](const torch::Tensor&) { return *replacement; });
    scope.capture(b.hook);
    scope.stop_after_last_hook();
    f.hooked.forward(toks);
    return b.sae().encode(scope.captured(b.hook));
  };
  const torch::Tensor mask = f1.narrow(1, 1, T - 1).select(-1, source) > 0;
  const torch::Tensor direct = (layer2(nullptr) - layer2(&ablated_x1)).narrow(1, 1, T - 1).index({mask}).mean(0);
  EXPECT_EQ(n, mask.sum().item<int64_t>());
  EXPECT_TRUE(torch::allclose(effect, direct, 1e-5, 1e-6));
  EXPECT_GT(effect.abs().max().item<float>(), 0.0f);

  GraphOptions o;
  o.ablated_features = 2;
  o.contexts = 2;
  const FeatureGraph graph = build_feature_graph(f.hooked, {a, b}, f.eval_set, o);
  int64_t cosine = 0, ablation = 0;
  for (const auto& e : graph.edges) (e.kind == "cosine" ? cosine : ablation) += 1;
  EXPECT_EQ(cosine, 64 * 3);
  EXPECT_GT(ablation, 0);
}

}  // namespace
}  // namespace saelab
