// Tests of top activations (analysis/top_activations.h).
#include "analysis/feature_queries.h"
#include "tests/analysis_fixture.h"

namespace saelab {
namespace {

// The SAE's code of every evaluation context, BOS excluded [n, T−1, d_sae], computed in the same
// batches top runs: a matrix product's last bits may depend on its row count.
torch::Tensor codes_in_batches(Fixture& f, const AttachedSae& a, int64_t batch_size) {
  torch::NoGradGuard g;
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < f.eval_set.contexts(); b += batch_size) {
    HookScope scope(f.hooked);
    scope.capture(a.hook);
    f.hooked.forward(f.eval_set.tokens.narrow(0, b, std::min(batch_size, f.eval_set.contexts() - b)));
    parts.push_back(a.sae().encode(scope.captured(a.hook)));
  }
  return torch::cat(parts).narrow(1, 1, f.eval_set.length() - 1);
}

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
  const torch::Tensor code = codes_in_batches(f, a, o.batch_size);
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

// Each feature's activation histogram over (0, max]: exact against a direct count when the reservoir
// holds every firing, an estimate that still sums to the firings when it holds a sample; written to
// the database and read back by FeatureQueries.
TEST(TopActivations, ActivationHistogramsCountEveryFiringOrScaleASampleToThem) {
  Fixture& f = fixture();
  Sae sae(config("topk", f.d(), 64, 4), 11);
  const AttachedSae a = f.attach("hist", sae);
  TopOptions o;
  o.batch_size = 4;
  o.histogram_bins = 8;
  o.reservoir = 1 << 20;  // every firing
  const auto exact = find_top_activations(f.hooked, {a}, f.eval_set, o);
  o.reservoir = 10;  // a sample
  const auto sampled = find_top_activations(f.hooked, {a}, f.eval_set, o);
  torch::NoGradGuard g;
  const torch::Tensor flat = codes_in_batches(f, a, o.batch_size).reshape({-1, 64});
  int64_t checked = 0;
  for (int64_t j = 0; j < 64; ++j) {
    const FeatureSummary& fs = exact[0].features[static_cast<size_t>(j)];
    const torch::Tensor fired = flat.select(1, j).masked_select(flat.select(1, j) > 0).to(torch::kFloat64);
    if (fired.numel() == 0) {
      EXPECT_TRUE(fs.histogram.empty()) << j;
      continue;
    }
    ASSERT_EQ(fs.histogram.size(), 8u);
    EXPECT_TRUE(fs.histogram_exact);
    const double max = fired.max().item<double>();
    const torch::Tensor bins = (fired / max * 8).floor().clamp(0, 7).to(torch::kInt64);
    const torch::Tensor want = torch::bincount(bins, {}, 8);
    for (int64_t b = 0; b < 8; ++b) EXPECT_EQ(fs.histogram[static_cast<size_t>(b)], want[b].item<double>()) << j << " bin " << b;
    const FeatureSummary& est = sampled[0].features[static_cast<size_t>(j)];
    double total = 0;
    for (double c : est.histogram) total += c;
    EXPECT_NEAR(total, static_cast<double>(fired.numel()), 1e-6 * static_cast<double>(fired.numel())) << j;
    EXPECT_EQ(est.histogram_exact, fired.numel() <= 10) << j;
    ++checked;
  }
  EXPECT_GT(checked, 10);
  FeatureDb db = FeatureDb::create(f.dir / "hist.sqlite");
  write_top_activations(db, {a}, exact, f.eval_set, f.lm.tokenizer());
  db.commit();
  FeatureDb back = FeatureDb::open(f.dir / "hist.sqlite");
  FeatureQueries q(back);
  for (int64_t j = 0; j < 64; ++j) {
    const auto h = q.histogram(a.name, j);
    const FeatureSummary& fs = exact[0].features[static_cast<size_t>(j)];
    ASSERT_EQ(h.has_value(), !fs.histogram.empty()) << j;
    if (!h) continue;
    EXPECT_EQ(h->counts, fs.histogram) << j;
    EXPECT_EQ(h->max, fs.max_activation) << j;
    EXPECT_TRUE(h->exact);
  }
}

}  // namespace
}  // namespace saelab
