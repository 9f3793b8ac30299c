#include <gtest/gtest.h>

#include "sae/trainer.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

// Synthetic activations built from known sparse features: n_true unit directions in d dimensions,
// each active with probability p and magnitude in [0.5, 1.5].
struct Synthetic {
  torch::Tensor directions;  // [n_true, d]
  torch::Tensor sample(int64_t n, double p, torch::Generator& gen) const {
    const int64_t k = directions.size(0);
    const torch::Tensor active = (torch::rand({n, k}, gen) < p).to(torch::kFloat32);
    const torch::Tensor mag = torch::rand({n, k}, gen) + 0.5;
    return torch::matmul(active * mag, directions);
  }
};

Synthetic make_synthetic(int64_t n_true, int64_t d, uint64_t seed) {
  torch::Generator gen = at::detail::createCPUGenerator(seed);
  torch::Tensor dirs = torch::randn({n_true, d}, gen);
  return {dirs / dirs.norm(2, {1}, true)};
}

// Mean over true directions of the best cosine similarity with a learned decoder row.
double recovery(const Sae& sae, const torch::Tensor& directions) {
  const torch::Tensor W = sae.param("W_dec").detach();
  const torch::Tensor Wn = W / W.norm(2, {1}, true).clamp_min(1e-12);
  return std::get<0>(torch::matmul(directions, Wn.t()).max(1)).mean().item<double>();
}

double train_and_measure(const std::string& arch, double l1, int64_t k, int64_t steps) {
  const Synthetic syn = make_synthetic(48, 24, 1);
  SaeSpec spec;
  spec.name = arch;
  spec.config.architecture = parse_architecture(arch);
  spec.config.d_in = 24;
  spec.config.d_sae = 96;
  spec.config.k = k;
  spec.l1_coefficient = l1;
  SaeTrainOptions o;
  o.steps = steps;
  o.batch_size = 512;
  o.lr = 3e-3;
  o.lr_warmup_steps = 20;
  o.l1_warmup_steps = 50;
  o.dead_window = 20000;
  SaeTrainer trainer({spec}, o, 3);
  torch::Generator gen = at::detail::createCPUGenerator(11);
  trainer.initialize(syn.sample(2048, 0.06, gen));
  for (int64_t s = 0; s < steps; ++s) trainer.step(syn.sample(512, 0.06, gen));
  return recovery(*trainer.saes()[0].sae, syn.directions);
}

TEST(SaeTrainer, TopKRecoversKnownSparseFeatures) {
  const double r = train_and_measure("topk", 0.0, 4, 1500);
  EXPECT_GT(r, 0.9) << "mean best cosine " << r;
}

TEST(SaeTrainer, StandardRecoversKnownSparseFeatures) {
  const double r = train_and_measure("standard", 0.3, 0, 1500);
  EXPECT_GT(r, 0.9) << "mean best cosine " << r;
}

// λ for gated and jumprelu was chosen by a sweep (gated 0.03 … 8, jumprelu 0.03 … 2): too small a
// sparsity pressure leaves features split or mixed (mean best cosine ≈ 0.5 at λ ≤ 0.3).
TEST(SaeTrainer, GatedRecoversKnownSparseFeatures) {
  const double r = train_and_measure("gated", 4.0, 0, 1500);
  EXPECT_GT(r, 0.9) << "mean best cosine " << r;
}

TEST(SaeTrainer, BatchTopKRecoversKnownSparseFeatures) {
  const double r = train_and_measure("batchtopk", 0.0, 4, 1500);
  EXPECT_GT(r, 0.9) << "mean best cosine " << r;
}

TEST(SaeTrainer, JumpReluRecoversKnownSparseFeatures) {
  const double r = train_and_measure("jumprelu", 1.0, 0, 1500);
  EXPECT_GT(r, 0.9) << "mean best cosine " << r;
}

TEST(SaeTrainer, KeepsUnitNormDecoderRowsAndTrainsManySaesOnOneBatch) {
  std::vector<SaeSpec> specs;
  for (const std::string arch : {"topk", "gated", "standard"}) {
    SaeSpec s;
    s.name = arch;
    s.config.architecture = parse_architecture(arch);
    s.config.d_in = 8;
    s.config.d_sae = 32;
    s.config.k = 3;
    s.l1_coefficient = 0.1;
    specs.push_back(s);
  }
  SaeTrainOptions o;
  o.steps = 20;
  o.batch_size = 64;
  SaeTrainer trainer(specs, o, 1);
  trainer.initialize(torch::randn({256, 8}) * 5);
  EXPECT_NEAR(trainer.scaling_factor(), std::sqrt(8.0) / (torch::randn({256, 8}) * 5).norm(2, {1}).mean().item<double>(),
              0.05 * trainer.scaling_factor());
  for (int i = 0; i < 20; ++i) {
    const auto stats = trainer.step(torch::randn({64, 8}) * 5);
    ASSERT_EQ(stats.size(), 3u);
  }
  for (size_t i = 0; i < 2; ++i) {  // topk and gated keep unit-norm rows
    const torch::Tensor norms = trainer.saes()[i].sae->param("W_dec").norm(2, {1});
    EXPECT_TRUE(torch::allclose(norms, torch::ones_like(norms), 1e-5, 1e-5)) << trainer.saes()[i].spec.name;
  }
  const torch::Tensor std_norms = trainer.saes()[2].sae->param("W_dec").norm(2, {1});
  EXPECT_FALSE(torch::allclose(std_norms, torch::ones_like(std_norms), 1e-5, 1e-5)) << "standard is unconstrained";
}

TEST(SaeTrainer, FoldingTheNormalisationLeavesOutputsOnRawInputsUnchanged) {
  for (const std::string arch : {"standard", "gated", "topk", "batchtopk", "matryoshka_batchtopk", "jumprelu"}) {
    SaeSpec s;
    s.name = arch;
    s.config.architecture = parse_architecture(arch);
    s.config.d_in = 6;
    s.config.d_sae = 20;
    s.config.k = 3;
    if (arch == "matryoshka_batchtopk") s.config.matryoshka_widths = {5, 10, 20};
    s.l1_coefficient = 0.01;
    SaeTrainOptions o;
    o.steps = 5;
    o.batch_size = 32;
    SaeTrainer trainer({s}, o, 4);
    const torch::Tensor raw = torch::randn({128, 6}) * 7 + 3;
    trainer.initialize(raw);
    for (int i = 0; i < 5; ++i) trainer.step(raw.narrow(0, 32 * (i % 4), 32));
    if (arch == "standard") {
      // Decoder norms well away from 1 (a few steps move them little), as a long run leaves them.
      torch::NoGradGuard g;
      trainer.saes()[0].sae->W_dec().mul_(torch::rand({20, 1}) * 1.5 + 0.5);
    }
    const Sae folded = trainer.folded(0);
    const Sae& inner = *trainer.saes()[0].sae;
    torch::NoGradGuard g;
    const double scale = trainer.scaling_factor();
    // The trained SAE on scaled inputs, mapped back, equals the folded SAE on raw inputs.
    const torch::Tensor expected = inner.decode(inner.encode(raw * scale)) / scale;
    EXPECT_TRUE(torch::allclose(folded.decode(folded.encode(raw)), expected, 1e-4, 1e-4)) << arch;
    // Codes are the trained ones; a standard SAE's are multiplied by its decoder norms (folded
    // into the encoder, SAELens fold_W_dec_norm), so that every saved SAE has decoder rows of one
    // norm (1 / scale on raw inputs) and codes in the same units.
    const torch::Tensor norms = inner.param("W_dec").norm(2, {1});
    const torch::Tensor codes = inner.encode(raw * scale) * (arch == "standard" ? norms : torch::ones_like(norms));
    EXPECT_TRUE(torch::allclose(folded.encode(raw), codes, 1e-4, 1e-4)) << arch;
    const torch::Tensor folded_norms = folded.param("W_dec").norm(2, {1});
    EXPECT_TRUE(torch::allclose(folded_norms, torch::full_like(folded_norms, 1.0 / scale), 1e-5, 1e-6)) << arch;
  }
}

TEST(SaeTrainer, GatedAndJumpReluUseAdamWithoutMomentum) {
  std::vector<SaeSpec> specs;
  for (const std::string arch : {"standard", "gated", "topk", "batchtopk", "jumprelu"}) {
    SaeSpec s;
    s.name = arch;
    s.config.architecture = parse_architecture(arch);
    s.config.d_in = 4;
    s.config.d_sae = 8;
    s.config.k = 2;
    specs.push_back(s);
  }
  SaeTrainer trainer(specs, SaeTrainOptions{}, 1);
  for (const auto& t : trainer.saes()) {
    const auto& o = static_cast<const torch::optim::AdamOptions&>(t.optimizer->param_groups().front().options());
    const double expected = t.spec.name == "gated" || t.spec.name == "jumprelu" ? 0.0 : 0.9;
    EXPECT_EQ(std::get<0>(o.betas()), expected) << t.spec.name;
    EXPECT_EQ(std::get<1>(o.betas()), 0.999) << t.spec.name;
  }
}

// Anthropic's tanh penalty reaches the pre-activations, so λ sets the sparsity within a short run
// (the step penalty's gradient reaches only θ, through a window of width ε).
TEST(SaeTrainer, RaisingJumpReluLambdaLowersL0WithinAShortRun) {
  const Synthetic syn = make_synthetic(48, 24, 1);
  std::vector<SaeSpec> specs;
  for (const double l1 : {0.05, 0.5, 2.0}) {
    SaeSpec s;
    s.name = "jumprelu-" + std::to_string(l1);
    s.config.architecture = Architecture::kJumpReLU;
    s.config.d_in = 24;
    s.config.d_sae = 96;
    s.l1_coefficient = l1;
    specs.push_back(s);
  }
  SaeTrainOptions o;
  o.steps = 300;
  o.batch_size = 512;
  o.lr = 3e-3;
  o.lr_warmup_steps = 20;
  o.l1_warmup_steps = 50;
  SaeTrainer trainer(specs, o, 3);
  torch::Generator gen = at::detail::createCPUGenerator(11);
  trainer.initialize(syn.sample(2048, 0.06, gen));
  std::vector<double> l0(specs.size(), 0.0);
  for (int64_t s = 0; s < o.steps; ++s) {
    const auto stats = trainer.step(syn.sample(512, 0.06, gen));
    if (s >= o.steps - 20) {
      for (size_t i = 0; i < stats.size(); ++i) l0[i] += stats[i].l0 / 20;
    }
  }
  EXPECT_LT(l0[1], 0.8 * l0[0]) << l0[0] << " " << l0[1];
  EXPECT_LT(l0[2], 0.8 * l0[1]) << l0[1] << " " << l0[2];
}

TEST(SaeTrainer, CalibratedBatchTopKThresholdsGiveKOnHeldOutRows) {
  const Synthetic syn = make_synthetic(48, 24, 1);
  std::vector<SaeSpec> specs;
  for (const std::string arch : {"batchtopk", "matryoshka_batchtopk"}) {
    SaeSpec s;
    s.name = arch;
    s.config.architecture = parse_architecture(arch);
    s.config.d_in = 24;
    s.config.d_sae = 96;
    s.config.k = 6;
    if (arch == "matryoshka_batchtopk") s.config.matryoshka_widths = {12, 24, 48, 96};
    specs.push_back(s);
  }
  SaeTrainOptions o;
  o.steps = 100;
  o.batch_size = 256;
  o.lr = 3e-3;
  SaeTrainer trainer(specs, o, 3);
  torch::Generator gen = at::detail::createCPUGenerator(5);
  trainer.initialize(syn.sample(2048, 0.06, gen));
  for (int64_t s = 0; s < o.steps; ++s) trainer.step(syn.sample(256, 0.06, gen));
  trainer.calibrate_thresholds(syn.sample(4096, 0.06, gen));
  const torch::Tensor held_out = syn.sample(4096, 0.06, gen);
  for (size_t i = 0; i < specs.size(); ++i) {
    const Sae folded = trainer.folded(i);
    torch::NoGradGuard g;
    const double l0 = (folded.encode(held_out) > 0).sum(1).to(torch::kFloat64).mean().item<double>();
    EXPECT_NEAR(l0, 6.0, 0.25) << specs[i].name;
  }
}

TEST(SaeTrainer, GeometricMedianIgnoresOutliersUnlikeTheMean) {
  // 40 points around the origin in four directions and one far outlier: the median (unique, as
  // the points are not collinear) stays near the origin; the mean moves far away.
  torch::Tensor x = torch::zeros({41, 2});
  for (int i = 0; i < 40; ++i) x[i][i % 2] = (i % 4 < 2) ? 1.0 : -1.0;
  x[40][0] = 1000;
  x[40][1] = 1000;
  const torch::Tensor m = geometric_median(x);
  EXPECT_LT(m.norm().item<double>(), 0.1);
  EXPECT_GT(x.mean(0).norm().item<double>(), 20);
}

TEST(SaeTrainer, StopsWithTheStepOnNaNInput) {
  SaeSpec s;
  s.name = "a";
  s.config.architecture = Architecture::kTopK;
  s.config.d_in = 4;
  s.config.d_sae = 8;
  s.config.k = 2;
  SaeTrainOptions o;
  o.batch_size = 4;
  SaeTrainer trainer({s}, o, 1);
  trainer.initialize(torch::randn({16, 4}));
  trainer.step(torch::randn({4, 4}));
  torch::Tensor bad = torch::randn({4, 4});
  bad[2][1] = NAN;
  EXPECT_THROWS_WITH(trainer.step(bad), "the training batch of step 2 holds NaN or Inf activations");
}

TEST(SaeTrainer, SchedulesWarmUpAndDecay) {
  SaeSpec s;
  s.name = "a";
  s.config.architecture = Architecture::kStandard;
  s.config.d_in = 4;
  s.config.d_sae = 8;
  SaeTrainOptions o;
  o.steps = 100;
  o.lr = 1.0;
  o.lr_warmup_steps = 10;
  o.lr_decay_fraction = 0.2;
  o.l1_warmup_steps = 20;
  SaeTrainer t({s}, o, 1);
  EXPECT_DOUBLE_EQ(t.lr_at(0), 0.1);
  EXPECT_DOUBLE_EQ(t.lr_at(50), 1.0);
  EXPECT_DOUBLE_EQ(t.lr_at(90), 0.5);
  EXPECT_DOUBLE_EQ(t.l1_scale_at(9), 0.5);
  EXPECT_DOUBLE_EQ(t.l1_scale_at(40), 1.0);
}

}  // namespace
}  // namespace saelab
