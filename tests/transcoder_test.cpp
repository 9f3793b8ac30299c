// Transcoders: sparse coders that read one activation and predict another (issue 30). Their loss
// terms and gradients against float64 formulas written out here, the trainer's two scales, a run
// over two hooks of one capture read in lockstep, and the splice, evaluation and steering at the
// hook a transcoder writes.
#include <gtest/gtest.h>

#include "core/activation_store.h"
#include "sae/sae_io.h"
#include "sae/train_run.h"
#include "sae/trainer.h"
#include "tests/analysis_fixture.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

constexpr int64_t kIn = 6, kOut = 5, kLatents = 16, kRows = 12;

// A transcoder with random weights (non-zero biases and skip path), as float32 tensors.
std::map<std::string, torch::Tensor> random_params(const SaeConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  std::map<std::string, torch::Tensor> p;
  for (const auto& [name, shape] : sae_shapes(c)) p[name] = 0.3 * torch::randn(shape);
  p["W_enc"] = torch::randn({c.d_in, c.d_sae});
  p["W_dec"] = torch::randn({c.d_sae, c.out_width()}) * (0.5 + torch::rand({c.d_sae, 1}));
  if (p.count("threshold")) p["threshold"] = 0.2 + 0.5 * torch::rand({c.d_sae});
  return p;
}

SaeConfig transcoder_config(const std::string& arch, bool skip) {
  SaeConfig c = test::config(arch, kIn, kLatents, 3);
  c.d_out = kOut;
  c.apply_b_dec_to_input = false;
  c.skip = skip;
  c.aux_k = 4;
  if (c.architecture == Architecture::kMatryoshkaBatchTopK) c.matryoshka_widths = {4, 8, kLatents};
  c.jumprelu_bandwidth = 0.5;
  c.pre_act_loss_coefficient = 0.1;
  return c;
}

// The training loss of a transcoder, written out in float64 from the definitions (no sparse kernel,
// no saelab code): p holds float64 leaves (log_threshold for JumpReLU), x [B, d_in], y [B, d_out].
torch::Tensor reference_loss(const SaeConfig& c, std::map<std::string, torch::Tensor>& p, const torch::Tensor& x,
                             const torch::Tensor& y, double l1, const torch::Tensor& dead) {
  const torch::Tensor& W_enc = p.at("W_enc");
  const torch::Tensor& W_dec = p.at("W_dec");
  torch::Tensor base = p.at("b_dec").expand({x.size(0), c.out_width()});
  if (c.skip) base = base + torch::matmul(x, p.at("W_skip").t());
  auto mse = [](const torch::Tensor& a, const torch::Tensor& b) { return (a - b).pow(2).sum(-1).mean(); };
  const torch::Tensor norms = W_dec.norm(2, {1});
  torch::Tensor f, loss;
  switch (c.architecture) {
    case Architecture::kStandard: {
      f = torch::relu(torch::matmul(x, W_enc) + p.at("b_enc"));
      loss = mse(y, torch::matmul(f, W_dec) + base) + l1 * (f * norms).sum(-1).mean();
      break;
    }
    case Architecture::kGated: {
      const torch::Tensor gate = torch::matmul(x, W_enc) + p.at("b_gate");
      const torch::Tensor mag = torch::matmul(x, W_enc * p.at("r_mag").exp()) + p.at("b_mag");
      f = (gate > 0).to(mag.dtype()) * torch::relu(mag);
      const torch::Tensor g = torch::relu(gate);
      loss = mse(y, torch::matmul(f, W_dec) + base) + l1 * (g * norms).sum(-1).mean() +
             mse(y, torch::matmul(g, W_dec.detach()) + base.detach());
      break;
    }
    case Architecture::kTopK:
    case Architecture::kBatchTopK:
    case Architecture::kMatryoshkaBatchTopK: {
      const torch::Tensor pre = torch::relu(torch::matmul(x, W_enc) + p.at("b_enc"));
      torch::Tensor keep;
      if (c.architecture == Architecture::kTopK) {
        keep = torch::zeros_like(pre).scatter(1, std::get<1>(pre.topk(c.k, 1)), 1.0);
      } else {
        const torch::Tensor theta = std::get<0>(pre.detach().reshape(-1).topk(c.k * x.size(0))).min();
        keep = (pre.detach() >= theta).to(pre.dtype());
      }
      f = pre * keep;
      const torch::Tensor y_hat = torch::matmul(f, W_dec) + base;
      loss = mse(y, y_hat);
      if (c.architecture == Architecture::kMatryoshkaBatchTopK) {
        for (size_t l = 0; l + 1 < c.matryoshka_widths.size(); ++l) {
          const int64_t w = c.matryoshka_widths[l];
          loss = loss + mse(y, torch::matmul(f.narrow(1, 0, w), W_dec.narrow(0, 0, w)) + base);
        }
      }
      // AuxK: the top aux_k ReLU pre-activations among dead latents model the residual y − ŷ.
      const torch::Tensor idx = dead.nonzero().squeeze(1);
      const torch::Tensor e = (y - y_hat).detach();
      const torch::Tensor pre_dead = pre.index_select(1, idx);
      const int64_t k_aux = std::min<int64_t>(c.aux_k, idx.size(0));
      const torch::Tensor aux_keep = torch::zeros_like(pre_dead).scatter(1, std::get<1>(pre_dead.detach().topk(k_aux, 1)), 1.0);
      const torch::Tensor e_hat = torch::matmul(pre_dead * aux_keep, W_dec.index_select(0, idx));
      loss = loss + c.aux_k_coefficient * mse(e, e_hat) / (e - e.mean(0)).pow(2).sum(-1).mean();
      break;
    }
    case Architecture::kJumpReLU: {
      // f = π·1[π > θ]; ∂f/∂θ = −(θ/ε)·K((π − θ)/ε), K the unit rectangle: a term of value 0 with
      // that gradient.
      const torch::Tensor pre = torch::matmul(x, W_enc) + p.at("b_enc");
      const torch::Tensor theta = p.at("log_threshold").exp();
      const double eps = c.jumprelu_bandwidth;
      const torch::Tensor td = theta.detach();
      const torch::Tensor kernel = (((pre.detach() - td) / eps).abs() < 0.5).to(pre.dtype());
      f = pre * (pre.detach() > td).to(pre.dtype()) + (-(td / eps) * kernel) * (theta - td);
      loss = mse(y, torch::matmul(f, W_dec) + base) +
             l1 * torch::tanh(c.jumprelu_tanh_scale * f * norms).sum(-1).mean() +
             c.pre_act_loss_coefficient * (torch::relu(theta - pre) * (dead.to(pre.dtype()) * norms)).sum(-1).mean();
      break;
    }
  }
  return loss;
}

TEST(Transcoder, LossAndEveryGradientEqualTheFloat64DefinitionsForEveryArchitecture) {
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({kRows, kIn});
  const torch::Tensor y = torch::randn({kRows, kOut}) + 0.5;
  const torch::Tensor dead = torch::arange(kLatents) % 3 == 0;
  const double l1 = 0.05;
  for (const char* arch : {"standard", "gated", "topk", "batchtopk", "matryoshka_batchtopk", "jumprelu"}) {
    for (bool skip : {false, true}) {
      for (int64_t cap : {int64_t{0}, int64_t{-1}}) {  // dense code, and the sparse path where one exists
        SCOPED_TRACE(std::string(arch) + (skip ? " skip" : "") + (cap == 0 ? " dense" : " sparse"));
        const SaeConfig c = transcoder_config(arch, skip);
        const auto params = random_params(c, 5);
        Sae sae(c, params, "test");
        sae.set_sparse_code_cap(cap);
        const SaeOutput o = sae.forward(x, l1, dead, y);
        o.loss.backward();

        std::map<std::string, torch::Tensor> p;
        for (const auto& [name, t] : params) {
          if (name == "threshold") {
            p["log_threshold"] = t.detach().to(torch::kFloat64).log().requires_grad_(true);
          } else {
            p[name] = t.detach().to(torch::kFloat64).requires_grad_(true);
          }
        }
        const torch::Tensor want = reference_loss(c, p, x.to(torch::kFloat64), y.to(torch::kFloat64), l1, dead);
        want.backward();
        EXPECT_NEAR(o.loss.item<double>(), want.item<double>(), 1e-5 * std::abs(want.item<double>()));
        EXPECT_EQ(o.x_hat.sizes(), (std::vector<int64_t>{kRows, kOut}));
        for (const auto& [name, t] : sae.parameters()) {
          SCOPED_TRACE(name);
          ASSERT_TRUE(p.count(name));
          const torch::Tensor ref = p.at(name).grad();
          if (!ref.defined() || ref.abs().max().item<double>() == 0) {
            EXPECT_TRUE(!t.grad().defined() || t.grad().abs().max().item<double>() < 1e-6);
            continue;
          }
          ASSERT_TRUE(t.grad().defined());
          EXPECT_TRUE(test::all_close(t.grad(), ref, 1e-4, 1e-6 * ref.abs().max().item<double>()));
        }
      }
    }
  }
}

TEST(Transcoder, ASkipTranscoderLearnsALinearMapAndItsFoldedWeightsPredictRawTargets) {
  // y = x C + (a sparse part of x's latents): the skip path carries the linear part.
  torch::Generator gen = at::detail::createCPUGenerator(9);
  const int64_t n = 4096, d_in = 12, d_out = 10;
  const torch::Tensor codes = (torch::rand({n, 24}, gen) < 0.1).to(torch::kFloat32) * (torch::rand({n, 24}, gen) + 0.5);
  const torch::Tensor x = torch::matmul(codes, torch::randn({24, d_in}, gen)) * 7.0;
  const torch::Tensor y = torch::matmul(x, torch::randn({d_in, d_out}, gen)) * 0.01 + 0.2;
  SaeTrainOptions o;
  o.steps = 300;
  o.batch_size = 256;
  o.lr = 3e-3;
  o.lr_warmup_steps = 10;
  std::vector<SaeSpec> specs;
  for (bool skip : {false, true}) {
    SaeSpec s;
    s.name = skip ? "skip" : "plain";
    s.config = transcoder_config("topk", skip);
    s.config.d_in = d_in;
    s.config.d_out = d_out;
    s.config.d_sae = 48;
    s.config.matryoshka_widths.clear();
    specs.push_back(s);
  }
  SaeTrainer trainer(specs, o, 1);
  EXPECT_THROWS_WITH(trainer.initialize(x.narrow(0, 0, 1024)), "transcoders need the targets");
  trainer.initialize(x.narrow(0, 0, 1024), y.narrow(0, 0, 1024));
  EXPECT_NE(trainer.scaling_factor(), trainer.target_scaling_factor());  // the two widths are scaled apart
  EXPECT_THROWS_WITH(trainer.step(x.narrow(0, 0, 256)), "transcoders need the target rows");
  std::vector<SaeStepStats> last;
  for (int64_t s = 0; s < o.steps; ++s) {
    const int64_t at = (s * 256) % (n - 256);
    last = trainer.step(x.narrow(0, at, 256), y.narrow(0, at, 256));
  }
  EXPECT_LT(last[1].fvu, 0.02);             // the skip path fits the linear map
  EXPECT_LT(last[1].fvu, 0.5 * last[0].fvu);  // which 3 latents a row cannot
  // The folded coder on raw activations predicts what the trained one predicts on scaled ones.
  torch::NoGradGuard no_grad;
  const Sae folded = trainer.folded(1);
  const Sae& inner = *trainer.saes()[1].sae;
  const torch::Tensor xs = x.narrow(0, 0, 64);
  const torch::Tensor want = inner.predict(xs * trainer.scaling_factor(), inner.encode(xs * trainer.scaling_factor())) /
                             trainer.target_scaling_factor();
  EXPECT_TRUE(test::all_close(folded.predict(xs, folded.encode(xs)), want, 1e-5, 1e-6));
  const torch::Tensor fvu = (folded.predict(x, folded.encode(x)) - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum();
  EXPECT_LT(fvu.item<double>(), 0.05);
}

TEST(Transcoder, LockstepBatchesHoldTheSameRowsOfBothHooksInTheSingleStoreOrder) {
  test::TempDir dir;
  const torch::Tensor a = torch::randn({1000, 4});
  test::write_activation_store(dir / "a", a, "a", 128);
  test::write_activation_store(dir / "b", torch::cat({a, a.sum(1, true)}, 1) * 2, "b", 128);
  const ActivationStore sa = ActivationStore::open(dir / "a"), sb = ActivationStore::open(dir / "b");
  ShuffledBatches alone(sa, 100, 2, 7);
  ShuffledBatches both({&sa, &sb}, 100, 2, 7);
  for (int i = 0; i < 25; ++i) {  // past two epochs
    const torch::Tensor one = alone.next();
    const std::vector<torch::Tensor> pair = both.next_all();
    ASSERT_TRUE(torch::equal(pair[0], one));
    ASSERT_TRUE(torch::equal(pair[1], torch::cat({one, one.sum(1, true)}, 1) * 2));
  }
  // Stores of another capture (another shard layout) are refused, naming both hooks.
  test::write_activation_store(dir / "c", a, "c", 100);
  const ActivationStore sc = ActivationStore::open(dir / "c");
  EXPECT_THROWS_WITH(ShuffledBatches({&sa, &sc}, 100, 2, 7), "hooks 'a' and 'c' are not one capture");
}

TEST(Transcoder, ARunTrainsTranscodersFromTwoHooksOfOneCaptureAndSavesThemWithTheirOutputHook) {
  test::TempDir dir;
  torch::Generator gen = at::detail::createCPUGenerator(4);
  const torch::Tensor codes = (torch::rand({2400, 32}, gen) < 0.1).to(torch::kFloat32) * (torch::rand({2400, 32}, gen) + 0.5);
  const torch::Tensor x = torch::matmul(codes, torch::randn({32, 16}, gen));
  const torch::Tensor y = torch::matmul(codes, torch::randn({32, 8}, gen)) + 1.0;
  test::write_activation_store(dir / "acts/blocks.0.mlp_in", x, "blocks.0.mlp_in", 300);
  test::write_activation_store(dir / "acts/blocks.0.mlp_out", y, "blocks.0.mlp_out", 300);
  SaeRunOptions o;
  o.store = dir / "acts";
  o.out = dir / "run";
  o.hooks = {"blocks.0.mlp_in", "blocks.0.mlp_in"};
  o.targets = {"blocks.0.mlp_out", "blocks.0.mlp_in"};  // a transcoder group, and an SAE group
  o.saes = SaeGridOptions{{"topk", "jumprelu"}, {4}, {0.1}, 2}.specs();
  o.train.steps = 200;
  o.train.batch_size = 128;
  o.train.lr = 2e-3;
  o.init_rows = 500;
  const SaeRunResult r = run_sae_training(o);
  ASSERT_TRUE(r.complete);
  ASSERT_EQ(r.sae_dirs.size(), 4u);
  EXPECT_EQ(r.sae_dirs[0], (dir / "run/blocks.0.mlp_in__blocks.0.mlp_out/topk-k4"));
  EXPECT_EQ(r.sae_dirs[2], (dir / "run/blocks.0.mlp_in/topk-k4"));
  for (size_t i : {size_t{0}, size_t{1}}) {
    SCOPED_TRACE(r.sae_dirs[i]);
    const LoadedSae t = load_sae(r.sae_dirs[i]);
    EXPECT_EQ(t.metadata.hook_name, "blocks.0.mlp_in");
    EXPECT_EQ(t.metadata.hook_name_out, "blocks.0.mlp_out");
    EXPECT_EQ(t.sae.config().out_width(), 8);
    EXPECT_FALSE(t.sae.config().apply_b_dec_to_input);
    torch::NoGradGuard no_grad;
    const torch::Tensor pred = t.sae.predict(x, t.sae.encode(x));
    const double fvu = ((pred - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum()).item<double>();
    EXPECT_LT(fvu, 0.6);  // trained against y: far better than predicting its mean (measured: 0.49 TopK, 0.38 JumpReLU after 200 steps)
  }
  EXPECT_EQ(load_sae(r.sae_dirs[2]).metadata.hook_name_out, "");
  // Metrics name the group; the run's options record the targets.
  EXPECT_NE(read_file(dir / "run/metrics.jsonl", "metrics").find("\"hook\":\"blocks.0.mlp_in__blocks.0.mlp_out\""), std::string::npos);
  SaeRunOptions bad = o;
  bad.out = dir / "bad";
  bad.targets = {"blocks.0.mlp_out"};
  EXPECT_THROWS_WITH(run_sae_training(bad), "targets names the hook each of hooks predicts: give 2 (got 1)");
  bad.targets = {"blocks.0.mlp_out", "blocks.0.mlp_in"};
  bad.saes.front().skip = true;
  EXPECT_THROWS_WITH(run_sae_training(bad), "skip is for transcoders");
}

// A transcoder of the bundled model from hook `in` to hook `out` with no code (W_dec 0) and the skip
// path W_skip = scale·I: its prediction is scale × the input activation.
AttachedSae skip_only(test::Fixture& f, const std::string& folder, const std::string& in, const std::string& out,
                      double scale) {
  const int64_t d = f.d();
  SaeConfig c = test::config("standard", d, 8);
  c.d_out = d;
  c.apply_b_dec_to_input = false;
  c.skip = true;
  const Sae sae(c, {{"W_enc", torch::randn({d, 8})}, {"b_enc", torch::zeros({8})}, {"W_dec", torch::zeros({8, d})},
                    {"b_dec", torch::zeros({d})}, {"W_skip", scale * torch::eye(d)}}, "skip-only");
  SaeMetadata meta;
  meta.model_name = f.lm.info().name;
  meta.hook_name = in;
  meta.hook_name_out = out;
  save_sae(f.dir / folder, sae, meta);
  return attach_saes(f.lm, f.hooked, {f.dir / folder}).front();
}

// Mean next-token cross-entropy of the eval set's contexts under the hooks `install` puts in a scope.
double cross_entropy(test::Fixture& f, const std::function<void(HookScope&)>& install) {
  torch::NoGradGuard no_grad;
  HookScope scope(f.hooked);
  install(scope);
  const torch::Tensor toks = f.eval_set.tokens;
  const torch::Tensor logp = torch::log_softmax(f.lm.logits_from_output(f.hooked.forward(toks)).to(torch::kFloat64), -1);
  const int64_t T = toks.size(1);
  return -logp.narrow(1, 0, T - 1).gather(2, toks.narrow(1, 1, T - 1).unsqueeze(-1)).mean().item<double>();
}

TEST(Transcoder, EvaluationSplicesTheTargetHookAndComparesThePredictionWithIt) {
  test::Fixture& f = test::fixture();
  const std::string in = "blocks.1.hook_resid_mid", out = "blocks.1.hook_mlp_out";
  const AttachedSae t = skip_only(f, "eval-a/tc", in, out, 0.5);
  EXPECT_TRUE(t.transcoder());
  EXPECT_EQ(t.hooks_text(), "reads " + in + ", writes " + out);
  EvalOptions o;
  o.batch_size = 3;
  o.with_error_term = true;
  const EvalReport report = evaluate_saes(f.lm, f.hooked, {t}, f.eval_set, o);
  const SaeEvalResult& e = report.saes.front();
  EXPECT_EQ(e.hook_out, out);
  // Statistics against the target: ŷ = 0.5 · resid_mid, y = mlp_out (positions 1..).
  torch::NoGradGuard no_grad;
  const ActivationCache cache = f.hooked.run_with_cache(f.eval_set.tokens, {in, out});
  const int64_t T = f.eval_set.tokens.size(1);
  const torch::Tensor xr = cache[in].narrow(1, 1, T - 1).reshape({-1, f.d()}).to(torch::kFloat64);
  const torch::Tensor yr = cache[out].narrow(1, 1, T - 1).reshape({-1, f.d()}).to(torch::kFloat64);
  const double fvu = ((0.5 * xr - yr).pow(2).sum() / (yr - yr.mean(0)).pow(2).sum()).item<double>();
  EXPECT_NEAR(e.fvu, fvu, 1e-5 * fvu);
  // The spliced run: mlp_out at positions 1.. replaced by 0.5 · resid_mid of the same pass.
  const double spliced = cross_entropy(f, [&](HookScope& s) {
    s.capture(in);
    HookScope* p = &s;
    s.replace(out, [p, in, T](const torch::Tensor& v) {
      torch::Tensor o2 = v.clone();
      o2.narrow(1, 1, T - 1).copy_(0.5 * p->captured(in).narrow(1, 1, T - 1));
      return o2;
    });
  });
  EXPECT_NEAR(e.ce_spliced, spliced, 1e-5 * spliced);
  const double zero = cross_entropy(f, [&](HookScope& s) {
    s.replace(out, [T](const torch::Tensor& v) {
      torch::Tensor o2 = v.clone();
      o2.narrow(1, 1, T - 1).zero_();
      return o2;
    });
  });
  EXPECT_NEAR(e.ce_zero, zero, 1e-5 * zero);  // the baseline ablates the MLP's output, not the input
  EXPECT_NEAR(e.ce_with_error, e.ce_clean, 1e-4 * e.ce_clean);
  EXPECT_GT(std::abs(e.ce_spliced - e.ce_clean), 1e-3);  // the splice changed something
  EXPECT_FALSE(e.absorption_measured);
}

TEST(Transcoder, TranscodersOfOneNameAreAlsoEvaluatedAsOneReplacementModel) {
  test::Fixture& f = test::fixture();
  const AttachedSae a = skip_only(f, "rep-0/tc", "blocks.0.hook_resid_mid", "blocks.0.hook_mlp_out", 0.3);
  const AttachedSae b = skip_only(f, "rep-1/tc", "blocks.1.hook_resid_mid", "blocks.1.hook_mlp_out", 0.6);
  EvalOptions o;
  o.batch_size = 6;
  const EvalReport report = evaluate_saes(f.lm, f.hooked, {a, b}, f.eval_set, o);
  ASSERT_EQ(report.replacements.size(), 1u);
  const ReplacementResult& r = report.replacements.front();
  EXPECT_EQ(r.name, "tc");
  EXPECT_EQ(r.coders, (std::vector<std::string>{"rep-0/tc", "rep-1/tc"}));
  const double both = cross_entropy(f, [&](HookScope& s) { splice_coders(s, {&a, &b}); });
  EXPECT_NEAR(r.ce_replaced, both, 1e-5 * both);
  // Both at once is neither splice alone.
  EXPECT_GT(std::abs(r.ce_replaced - report.saes[0].ce_spliced), 1e-4);
  EXPECT_GT(std::abs(r.ce_replaced - report.saes[1].ce_spliced), 1e-4);
  EXPECT_NE(report.table().find("replacement model 'tc' (2 transcoders at once)"), std::string::npos);
}

TEST(Transcoder, SteeringAddsTheDecoderDirectionAtTheHookTheTranscoderWrites) {
  test::Fixture& f = test::fixture();
  const std::string in = "blocks.0.hook_resid_mid", out = "blocks.0.hook_mlp_out";
  const int64_t d = f.d();
  SaeConfig c = test::config("topk", d, 16, 2);
  c.d_out = d;
  c.apply_b_dec_to_input = false;
  SaeMetadata meta;
  meta.hook_name = in;
  meta.hook_name_out = out;
  save_sae(f.dir / "steer/tc", Sae(c, 3), meta);
  const AttachedSae t = attach_saes(f.lm, f.hooked, {f.dir / "steer/tc"}).front();
  torch::NoGradGuard no_grad;
  const torch::Tensor toks = f.eval_set.tokens.narrow(0, 0, 2);
  const ActivationCache clean = f.hooked.run_with_cache(toks, {in, out});
  SteerOptions so;
  HookScope scope(f.hooked);
  install_steering(scope, t, {5}, {3.0}, {0.0}, so);
  scope.capture(in);
  scope.capture(out);
  f.hooked.forward(toks);
  const torch::Tensor w = t.sae().param("W_dec")[5];
  const int64_t T = toks.size(1);
  EXPECT_TRUE(torch::equal(scope.captured(in), clean[in]));  // the input is not touched
  EXPECT_TRUE(test::all_close(scope.captured(out).narrow(1, 1, T - 1), clean[out].narrow(1, 1, T - 1) + 3.0 * w, 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(scope.captured(out).narrow(1, 0, 1), clean[out].narrow(1, 0, 1)));  // BOS not steered
}

}  // namespace
}  // namespace saelab
