// Tests of evaluation by splicing (analysis/evaluate.h).
#include "tests/analysis_fixture.h"

namespace saelab {
namespace {

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

// kl_div_score and the SAELens convention against a direct float64 computation: the hook replaced
// by the reconstruction / by zeros at every position (BOS included), KL over every prediction.
TEST(Evaluate, KlDivScoreAndTheSaelensConventionEqualADirectComputation) {
  Fixture& f = fixture();
  Sae sae(config("topk", f.d(), 256, 6), 5);
  const AttachedSae a = f.attach("random-topk-kl", sae);
  const EvalReport r = evaluate_saes(f.lm, f.hooked, {a}, f.eval_set, EvalOptions{});
  const SaeEvalResult& e = r.saes.at(0);
  torch::NoGradGuard g;
  const torch::Tensor& toks = f.eval_set.tokens;
  auto logp = [&](const std::function<torch::Tensor(const torch::Tensor&)>* replace) {
    HookScope scope(f.hooked);
    if (replace) scope.replace(a.hook, *replace);
    const torch::Tensor logits = f.lm.logits_from_output(f.hooked.forward(toks));
    return torch::log_softmax(logits.narrow(1, 0, logits.size(1) - 1).to(torch::kFloat64), -1);
  };
  const std::function<torch::Tensor(const torch::Tensor&)> zero_all = [](const torch::Tensor& x) { return torch::zeros_like(x); };
  const std::function<torch::Tensor(const torch::Tensor&)> splice_all = [&](const torch::Tensor& x) {
    return a.sae().decode(a.sae().encode(x));
  };
  const std::function<torch::Tensor(const torch::Tensor&)> zero_after_bos = [](const torch::Tensor& x) {
    torch::Tensor out = x.clone();
    out.narrow(1, 1, x.size(1) - 1).zero_();
    return out;
  };
  const torch::Tensor clean = logp(nullptr);
  auto kl = [&](const torch::Tensor& other) { return (clean.exp() * (clean - other)).sum(-1).mean().item<double>(); };
  auto ce = [&](const torch::Tensor& lp) {
    return -lp.gather(-1, toks.narrow(1, 1, toks.size(1) - 1).unsqueeze(-1)).mean().item<double>();
  };
  const torch::Tensor lz = logp(&zero_all), ls = logp(&splice_all), lzb = logp(&zero_after_bos);
  ASSERT_TRUE(e.saelens.computed);
  EXPECT_TRUE(test::near_rel(e.saelens.kl_zero, kl(lz), 1e-4, 1e-7));
  EXPECT_TRUE(test::near_rel(e.saelens.kl, kl(ls), 1e-4, 1e-7));
  EXPECT_TRUE(test::near_rel(e.saelens.ce_zero, ce(lz), 1e-5, 0));
  EXPECT_TRUE(test::near_rel(e.saelens.ce_spliced, ce(ls), 1e-5, 0));
  EXPECT_TRUE(test::near_rel(e.saelens.kl_div_score, (kl(lz) - kl(ls)) / kl(lz), 1e-3, 1e-6));
  EXPECT_TRUE(test::near_rel(e.saelens.loss_recovered_zero, (ce(lz) - ce(ls)) / (ce(lz) - e.ce_clean), 1e-3, 1e-6));
  // saelab's convention keeps BOS: its zero ablation is a different run, and its score uses it.
  EXPECT_TRUE(test::near_rel(e.kl_zero, kl(lzb), 1e-4, 1e-7));
  EXPECT_TRUE(test::near_rel(e.kl_div_score, (kl(lzb) - e.kl) / kl(lzb), 1e-3, 1e-6));
  EXPECT_GT(std::abs(e.saelens.ce_zero - e.ce_zero), 1e-3) << "ablating BOS changes the loss";
  // Both conventions are named next to their numbers, in the JSON and the table.
  const nlohmann::json j = e.to_json();
  EXPECT_EQ(j["convention"], kSaelabConvention);
  EXPECT_EQ(j["saelens_convention"]["convention"], kSaelensConvention);
  EXPECT_EQ(j["saelens_convention"]["kl_div_score"].get<double>(), e.saelens.kl_div_score);
  EXPECT_NE(r.table().find(kSaelensConvention), std::string::npos);
  EXPECT_NE(r.table().find(kSaelabConvention), std::string::npos);
  // The option turns the second convention off.
  EvalOptions only_saelab;
  only_saelab.saelens_convention = false;
  const SaeEvalResult e2 = evaluate_saes(f.lm, f.hooked, {a}, f.eval_set, only_saelab).saes.at(0);
  EXPECT_FALSE(e2.saelens.computed);
  EXPECT_FALSE(e2.to_json().contains("saelens_convention"));
  EXPECT_EQ(e2.kl_div_score, e.kl_div_score);
}

// A latent that fires once in 10⁴ tokens is missed by ~6k evaluation tokens about half the time;
// the folder's training densities (sparsity.safetensors) decide dead and dense instead.
TEST(Evaluate, DeadAndDenseFractionsComeFromTrainingDensitiesWhenTheFolderHasThem) {
  Fixture& f = fixture();
  const Sae sae(config("topk", f.d(), 64, 2), 8);
  SaeMetadata meta;
  meta.model_name = f.lm.info().name;
  meta.hook_name = "blocks.1.hook_resid_pre";
  meta.context_size = 24;
  meta.density_tokens = 123456;
  // Every latent fired in training (density 10⁻⁴), but two latents are dense (0.5) and one never fired.
  torch::Tensor log10 = torch::full({64}, -4.0);
  log10[0] = std::log10(0.5);
  log10[1] = std::log10(0.5);
  log10[2] = -10.0;
  const std::string path = f.dir / "trained-density";
  save_sae(path, sae, meta, log10);
  const AttachedSae a = attach_saes(f.lm, f.hooked, {path}).front();
  const SaeEvalResult e = evaluate_saes(f.lm, f.hooked, {a}, f.eval_set, EvalOptions{}).saes.at(0);
  EXPECT_EQ(e.density_source, "training");
  EXPECT_EQ(e.density_tokens, 123456);
  EXPECT_DOUBLE_EQ(e.dead_fraction, 1.0 / 64);
  EXPECT_DOUBLE_EQ(e.dense_fraction, 2.0 / 64);
  EXPECT_EQ(e.to_json()["density_source"], "training");
  // Counted over the evaluation tokens instead, many latents of this k = 2 SAE look dead.
  EvalOptions o;
  o.density_source = "evaluation";
  const SaeEvalResult ev = evaluate_saes(f.lm, f.hooked, {a}, f.eval_set, o).saes.at(0);
  EXPECT_EQ(ev.density_source, "evaluation");
  EXPECT_EQ(ev.density_tokens, ev.tokens);
  EXPECT_GT(ev.dead_fraction, 2.0 / 64);
  EXPECT_NEAR(ev.dead_fraction, (ev.density == 0).to(torch::kFloat64).mean().item<double>(), 1e-12);
}

// Absorption streams: only word-start tokens are kept, at most absorption_max_tokens of them (the
// first in context order), and the result is measure_absorption on exactly those rows.
TEST(Evaluate, AbsorptionMeasuresTheFirstMaxTokensWordStartTokens) {
  Fixture& f = fixture();
  Sae sae(config("topk", f.d(), 256, 6), 5);
  const AttachedSae a = f.attach("random-topk-absorb", sae);
  EvalOptions o;
  o.saelens_convention = false;
  o.batch_size = 3;  // the cap falls inside a batch
  o.absorption_options.min_tokens = 2;
  o.absorption_options.max_tokens = 45;
  const EvalReport r = evaluate_saes(f.lm, f.hooked, {a}, f.eval_set, o);
  torch::NoGradGuard g;
  const torch::Tensor& toks = f.eval_set.tokens;
  const int64_t T = toks.size(1);
  torch::Tensor x;
  {
    HookScope scope(f.hooked);
    scope.capture(a.hook);
    f.hooked.forward(toks);
    x = scope.captured(a.hook).narrow(1, 1, T - 1).reshape({-1, f.d()}).to(torch::kFloat32);
  }
  const torch::Tensor letter = first_letters(f.lm.tokenizer(), toks.narrow(1, 1, T - 1)).reshape(-1);
  const torch::Tensor word_starts = (letter >= 0).nonzero().squeeze(1);
  ASSERT_GT(word_starts.size(0), 55) << "the fixture needs more word-start tokens than the cap";
  const torch::Tensor keep = word_starts.narrow(0, 0, 45);
  const torch::Tensor fit = (torch::arange(toks.size(0)).unsqueeze(1).expand({toks.size(0), T - 1}).remainder(2) == 0).reshape(-1);
  const AbsorptionResult want = measure_absorption(a.sae(), x.index_select(0, keep), letter.index_select(0, keep),
                                                   fit.index_select(0, keep), o.absorption_options);
  const SaeEvalResult& e = r.saes.at(0);
  ASSERT_TRUE(e.absorption_measured);
  EXPECT_GT(want.letters, 0);
  EXPECT_EQ(e.absorption.to_json().dump(), want.to_json().dump());
  // Without the cap the measurement sees more tokens and differs.
  const AbsorptionResult all = measure_absorption(a.sae(), x, letter, fit, o.absorption_options);
  EXPECT_NE(all.to_json().dump(), want.to_json().dump());
}

TEST(Evaluate, RefusesSaesThatDoNotFitTheModel) {
  Fixture& f = fixture();
  EXPECT_THROWS_WITH(f.attach("narrow", Sae(config("topk", 16, 64, 4), 1)),
                     "has d_in 16 but hook 'blocks.1.hook_resid_pre' of model");
  EXPECT_THROWS_WITH(f.attach("nohook", zero_sae(f.d()), "blocks.9.input"),
                     "was trained at hook 'blocks.9.input', which model");
  EXPECT_THROWS_WITH(f.attach("other", zero_sae(f.d()), "blocks.1.input", "00ff"), "was trained on another model file");
  EXPECT_NO_THROW(f.attach("same", zero_sae(f.d()), "blocks.1.input", sha256_file(f.lm.model_path())));
  EvalSet empty = f.eval_set;
  empty.tokens = empty.tokens.narrow(0, 0, 0);
  EXPECT_THROWS_WITH(evaluate_saes(f.lm, f.hooked, {f.attach("z2", zero_sae(f.d()))}, empty, {}),
                     "the evaluation set is empty");
}

}  // namespace
}  // namespace saelab
