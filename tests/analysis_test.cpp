// analysis/: evaluation by splicing, top activations, logit effects, feature graph, steering, on
// the bundled reference model and Brown validation contexts.
#include <gtest/gtest.h>

#include "analysis/attached_sae.h"
#include "analysis/evaluate.h"
#include "analysis/feature_db.h"
#include "analysis/feature_graph.h"
#include "analysis/interpret.h"
#include "analysis/logit_effects.h"
#include "analysis/steering.h"
#include "analysis/top_activations.h"
#include "core/files.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

const std::string kBundled = SAELAB_SOURCE_DIR "/assets/brown-gpt";

// One model, hooked, shared by the tests of this file (loading it costs a second).
struct Fixture {
  LanguageModel lm = LanguageModel::open(kBundled);
  HookedModel hooked{lm.module(), lm.info().hook_aliases};
  EvalSet eval_set;
  test::TempDir dir;
  Fixture() {
    EvalSetOptions o;
    o.contexts = 6;
    o.context_length = 24;
    eval_set = build_eval_set(lm, o, test::cache_dir());
  }
  int64_t d() const { return lm.info().d_model; }

  // Saves an SAE for `hook` and attaches it.
  AttachedSae attach(const std::string& name, const Sae& sae, const std::string& hook = "blocks.1.hook_resid_pre",
                     const std::string& sha = "") {
    SaeMetadata meta;
    meta.model_name = lm.info().name;
    meta.hook_name = hook;
    meta.context_size = 24;
    meta.model_sha256 = sha;
    const std::string path = dir / name;
    save_sae(path, sae, meta);
    return attach_saes(lm, hooked, {path}).front();
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

SaeConfig config(const std::string& arch, int64_t d_in, int64_t d_sae, int64_t k = 8) {
  SaeConfig c;
  c.architecture = parse_architecture(arch);
  c.d_in = d_in;
  c.d_sae = d_sae;
  c.k = k;
  return c;
}

// ReLU(x) − ReLU(−x) = x: a standard SAE that reconstructs exactly.
Sae identity_sae(int64_t d) {
  const torch::Tensor I = torch::eye(d);
  return Sae(config("standard", d, 2 * d),
             {{"W_enc", torch::cat({I, -I}, 1)}, {"b_enc", torch::zeros({2 * d})}, {"W_dec", torch::cat({I, -I}, 0)},
              {"b_dec", torch::zeros({d})}},
             "identity");
}

Sae zero_sae(int64_t d) {
  return Sae(config("standard", d, 4),
             {{"W_enc", torch::randn({d, 4})}, {"b_enc", torch::zeros({4})}, {"W_dec", torch::zeros({4, d})},
              {"b_dec", torch::zeros({d})}},
             "zero");
}

TEST(Evaluate, AnIdentitySaeRecoversAllOfTheLossWithZeroKl) {
  Fixture& f = fixture();
  const AttachedSae a = f.attach("identity", identity_sae(f.d()));
  EvalOptions o;
  o.batch_size = 4;
  const EvalReport r = evaluate_saes(f.lm, f.hooked, {a}, f.eval_set, o);
  const SaeEvalResult& e = r.saes.at(0);
  EXPECT_EQ(e.ce_spliced, e.ce_clean);
  EXPECT_NEAR(e.loss_recovered_zero, 1.0, 1e-12);
  EXPECT_NEAR(e.loss_recovered_mean, 1.0, 1e-12);
  EXPECT_NEAR(e.kl, 0.0, 1e-7);
  EXPECT_NEAR(e.fvu, 0.0, 1e-12);
  EXPECT_NEAR(e.cosine, 1.0, 1e-9);
  EXPECT_NEAR(e.shrinkage, 1.0, 1e-9);
  EXPECT_GT(e.ce_zero, e.ce_clean + 0.1);  // the hook matters: ablating it costs loss
}

TEST(Evaluate, AZeroSaeMatchesZeroAblationExactly) {
  Fixture& f = fixture();
  const AttachedSae a = f.attach("zero", zero_sae(f.d()));
  EvalOptions o;
  o.with_error_term = true;
  const EvalReport r = evaluate_saes(f.lm, f.hooked, {a}, f.eval_set, o);
  const SaeEvalResult& e = r.saes.at(0);
  EXPECT_EQ(e.ce_spliced, e.ce_zero);
  EXPECT_EQ(e.loss_recovered_zero, 0.0);
  EXPECT_GT(e.fvu, 1.0);  // Σ‖x‖² over Σ‖x − x̄‖²
  // With the error term added back the spliced model is the clean one.
  EXPECT_TRUE(test::near_rel(e.ce_with_error, e.ce_clean, 1e-6, 0));
}

TEST(Evaluate, MetricsEqualTheirDefinitionsComputedDirectly) {
  Fixture& f = fixture();
  torch::manual_seed(1);
  Sae sae(config("topk", f.d(), 256, 6), 5);
  const AttachedSae a = f.attach("random-topk", sae);
  const EvalReport r = evaluate_saes(f.lm, f.hooked, {a}, f.eval_set, EvalOptions{});
  const SaeEvalResult& e = r.saes.at(0);

  // Independent float64 computation from captured activations (BOS excluded).
  torch::NoGradGuard g;
  torch::Tensor x;
  torch::Tensor logits;
  {
    HookScope scope(f.hooked);
    scope.capture(a.hook);
    logits = f.lm.logits_from_output(f.hooked.forward(f.eval_set.tokens));
    x = scope.captured(a.hook).narrow(1, 1, f.eval_set.length() - 1).reshape({-1, f.d()}).to(torch::kFloat64);
  }
  const torch::Tensor code = a.sae().encode(x.to(torch::kFloat32));
  const torch::Tensor xh = a.sae().decode(code).to(torch::kFloat64);
  const double sse = (x - xh).pow(2).sum().item<double>();
  const double centred = (x - x.mean(0)).pow(2).sum().item<double>();
  EXPECT_TRUE(test::near_rel(e.fvu, sse / centred, 1e-5, 0));
  EXPECT_NEAR(e.mse, sse / x.size(0), 1e-4 * e.mse);
  EXPECT_NEAR(e.l0, (code != 0).sum().item<double>() / x.size(0), 1e-9);
  EXPECT_TRUE(test::near_rel(e.cosine, torch::cosine_similarity(x, xh, 1).mean().item<double>(), 1e-5, 0));
  EXPECT_TRUE(test::near_rel(e.shrinkage, xh.pow(2).sum().item<double>() / (x * xh).sum().item<double>(), 1e-5, 0));
  EXPECT_EQ(e.tokens, x.size(0));
  const torch::Tensor lp = torch::log_softmax(logits.narrow(1, 0, logits.size(1) - 1).to(torch::kFloat64), -1);
  const double ce = -lp.gather(-1, f.eval_set.tokens.narrow(1, 1, logits.size(1) - 1).unsqueeze(-1)).mean().item<double>();
  EXPECT_TRUE(test::near_rel(e.ce_clean, ce, 1e-5, 0));
  EXPECT_NEAR(e.loss_recovered_zero, (e.ce_zero - e.ce_spliced) / (e.ce_zero - e.ce_clean), 1e-12);
  int64_t hist = 0;
  for (int64_t c : e.density_histogram) hist += c;
  EXPECT_EQ(hist, static_cast<int64_t>(std::lround((1 - e.dead_fraction) * e.d_sae)));
}

TEST(Evaluate, RefusesSaesThatDoNotFitTheModel) {
  Fixture& f = fixture();
  EXPECT_THROWS_WITH(f.attach("narrow", Sae(config("topk", 16, 64, 4), 1)),
                     "has d_in 16 but hook 'blocks.1.input' of model");
  EXPECT_THROWS_WITH(f.attach("nohook", zero_sae(f.d()), "blocks.9.input"),
                     "was trained at hook 'blocks.9.input', which model");
  EXPECT_THROWS_WITH(f.attach("other", zero_sae(f.d()), "blocks.1.input", "00ff"), "was trained on another model file");
  EXPECT_NO_THROW(f.attach("same", zero_sae(f.d()), "blocks.1.input", sha256_file(f.lm.model_path())));
  EvalSet empty = f.eval_set;
  empty.tokens = empty.tokens.narrow(0, 0, 0);
  EXPECT_THROWS_WITH(evaluate_saes(f.lm, f.hooked, {f.attach("z2", zero_sae(f.d()))}, empty, {}),
                     "the evaluation set is empty");
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

TEST(FeatureGraph, AblationEffectsEqualADirectComputation) {
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
  const int64_t source = std::get<1>((f1 > 0).sum(c10::IntArrayRef{0, 1}).max(0)).item<int64_t>();
  auto [effect, n] = ablation_effect(f.hooked, a, source, b, toks);
  ASSERT_GT(n, 0);
  // Direct: replace the activation by a precomputed ablated tensor, read layer 2 in both runs.
  const torch::Tensor ablated_x1 = x1 - f1.select(-1, source).unsqueeze(-1) * a.sae().param("W_dec")[source];
  auto layer2 = [&](const torch::Tensor* replacement) {
    HookScope scope(f.hooked);
    if (replacement) scope.replace(a.hook, [replacement](const torch::Tensor&) { return *replacement; });
    scope.capture(b.hook);
    scope.stop_after_last_hook();
    f.hooked.forward(toks);
    return b.sae().encode(scope.captured(b.hook));
  };
  const torch::Tensor mask = f1.select(-1, source) > 0;
  const torch::Tensor direct = (layer2(nullptr) - layer2(&ablated_x1)).index({mask}).mean(0);
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

TEST(Interpret, ExplainsASampleOfLiveFeaturesWithScoresInRange) {
  Fixture& f = fixture();
  const AttachedSae a = f.attach("interp", Sae(config("topk", f.d(), 64, 8), 8));
  InterpretOptions o;
  o.features = 5;
  o.min_fires = 2;
  const auto r = interpret_saes(f.hooked, {a}, f.eval_set, f.lm.tokenizer(), o);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].features.size(), 5u);
  for (const auto& e : r[0].explanations) {
    EXPECT_GE(e.score, -1.0);
    EXPECT_LE(e.score, 1.0);
    EXPECT_FALSE(e.text.empty());
  }
}

}  // namespace
}  // namespace saelab
