// Tests of top activations (analysis/top_activations.h).
#include "tests/analysis_fixture.h"

namespace saelab {
namespace {

TEST(TopActivations, BoundedHeapsEqualAFullSortAndWindowsHoldTheActivations) {
  Fixture& f = fixture();
  Sae sae(config("topk", f.d(), 64, 4), 9);
  const AttachedSae a = f.attach("top", sae);
  TopOptions o;
  o.top_k = 5;
  o.batch_size = 4;  // several batches, so heaps merge across them
  o.context_before = 3;
  o.context_after = 2;
  const auto results = find_top_activations(f.hooked, {a}, f.eval_set, o);
  torch::NoGradGuard g;
  // The reference runs the same batches: a matrix product's last bits may depend on its row count.
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < f.eval_set.contexts(); b += o.batch_size) {
    HookScope scope(f.hooked);
    scope.capture(a.hook);
    f.hooked.forward(f.eval_set.tokens.narrow(0, b, std::min(o.batch_size, f.eval_set.contexts() - b)));
    parts.push_back(a.sae().encode(scope.captured(a.hook)));
  }
  const torch::Tensor code = torch::cat(parts).narrow(1, 1, f.eval_set.length() - 1);  // [n, T−1, d_sae]
  const torch::Tensor flat = code.reshape({-1, 64});
  for (int64_t j = 0; j < 64; ++j) {
    const FeatureSummary& fs = results[0].features[static_cast<size_t>(j)];
    const torch::Tensor col = flat.select(1, j);
    EXPECT_EQ(fs.fires, (col > 0).sum().item<int64_t>());
    const torch::Tensor sorted = std::get<0>(col.sort(0, true));
    std::vector<const FeatureExample*> top;
    for (const auto& ex : fs.examples) {
      if (ex.kind == "top") top.push_back(&ex);
    }
    ASSERT_EQ(static_cast<int64_t>(top.size()), std::min<int64_t>(5, fs.fires)) << "feature " << j;
    for (size_t r = 0; r < top.size(); ++r) {
      EXPECT_EQ(top[r]->activation, sorted[static_cast<int64_t>(r)].item<float>()) << "feature " << j << " rank " << r;
      EXPECT_EQ(code[top[r]->context][top[r]->position - 1][j].item<float>(), top[r]->activation);
      const int64_t at = top[r]->position - top[r]->first;
      EXPECT_EQ(top[r]->window.at(static_cast<size_t>(at)), top[r]->activation);
    }
  }
  // The database answers "which features fire most on this token".
  FeatureDb db = FeatureDb::create(f.dir / "f.sqlite");
  write_top_activations(db, {a}, results, f.eval_set, f.lm.tokenizer());
  db.commit();
  FeatureDb back = FeatureDb::open(f.dir / "f.sqlite");
  const auto rows = back.query("SELECT COUNT(*) AS n FROM examples WHERE kind = 'top'");
  int64_t expected = 0;
  for (const auto& fs : results[0].features) expected += std::min<int64_t>(5, fs.fires);
  EXPECT_EQ(rows.at(0).at("n").get<int64_t>(), expected);
  EXPECT_FALSE(back.query("SELECT feature FROM token_features ORDER BY count DESC LIMIT 3").empty());
}

}  // namespace
}  // namespace saelab
