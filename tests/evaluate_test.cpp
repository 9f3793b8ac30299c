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

}  // namespace
}  // namespace saelab
