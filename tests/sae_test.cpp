// Every loss term against a small example computed by hand (the arithmetic is in the comments).
#include <gtest/gtest.h>

#include <cmath>

#include "core/json_options.h"
#include "core/safetensors.h"
#include "sae/sae.h"
#include "sae/sae_io.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

// d_in 2, d_sae 3. W_enc columns: e1, e2, e1 + e2. W_dec rows: (2, 0), (0, 1), (1, 1): norms 2, 1, √2.
std::map<std::string, torch::Tensor> tiny(const std::string& arch, std::vector<float> b) {
  std::map<std::string, torch::Tensor> p = {
      {"W_enc", torch::tensor({1.f, 0.f, 1.f, 0.f, 1.f, 1.f}).view({2, 3})},
      {"W_dec", torch::tensor({2.f, 0.f, 0.f, 1.f, 1.f, 1.f}).view({3, 2})},
      {"b_dec", torch::zeros({2})},
  };
  if (arch != "gated") p["b_enc"] = torch::tensor(b);
  return p;
}

SaeConfig cfg(const std::string& arch, int64_t k = 2) {
  SaeConfig c;
  c.architecture = parse_architecture(arch);
  c.d_in = 2;
  c.d_sae = 3;
  c.k = k;
  return c;
}

const double kSqrt2 = std::sqrt(2.0);

TEST(SaeLoss, StandardMatchesAHandComputedExample) {
  Sae sae(cfg("standard"), tiny("standard", {0.f, -1.f, -0.5f}), "test");
  // x = (1, 2): pre = (1, 1, 2.5) = f; x̂ = (2,0) + (0,1) + 2.5 (1,1) = (4.5, 3.5);
  // ‖x − x̂‖² = 3.5² + 1.5² = 14.5; penalty 0.1 · (1·2 + 1·1 + 2.5·√2).
  const SaeOutput o = sae.forward(torch::tensor({1.f, 2.f}).view({1, 2}), 0.1);
  EXPECT_TRUE(test::near_rel(o.mse.item<double>(), 14.5, 1e-6, 0));
  EXPECT_TRUE(test::near_rel(o.sparsity.item<double>(), 0.1 * (3.0 + 2.5 * kSqrt2), 1e-6, 0));
  EXPECT_TRUE(test::near_rel(o.loss.item<double>(), 14.5 + 0.1 * (3.0 + 2.5 * kSqrt2), 1e-6, 0));
  EXPECT_EQ(o.l0.item<float>(), 3.0f);
  EXPECT_TRUE(torch::allclose(o.x_hat, torch::tensor({4.5f, 3.5f}).view({1, 2})));
}

TEST(SaeLoss, GatedMatchesAHandComputedExampleAndItsAuxTermLeavesTheDecoderAlone) {
  auto p = tiny("gated", {});
  p["b_gate"] = torch::tensor({0.f, -3.f, 0.f});
  p["b_mag"] = torch::tensor({0.f, 0.f, -1.f});
  p["r_mag"] = torch::tensor({0.f, 0.f, static_cast<float>(std::log(2.0))});
  Sae sae(cfg("gated"), p, "test");
  // π_gate = (1, −1, 3) → latents 0 and 2 open; π_mag = (1, 2, 2·3 − 1) = (1, 2, 5) → f = (1, 0, 5);
  // x̂ = (2,0) + 5 (1,1) = (7, 5); mse = 6² + 3² = 45.
  // penalty 0.1 · (1·2 + 3·√2); aux: ReLU(π_gate) W_dec = (2,0) + 3 (1,1) = (5, 3) → 4² + 1² = 17.
  const SaeOutput o = sae.forward(torch::tensor({1.f, 2.f}).view({1, 2}), 0.1);
  EXPECT_TRUE(test::near_rel(o.mse.item<double>(), 45.0, 1e-6, 0));
  EXPECT_TRUE(test::near_rel(o.sparsity.item<double>(), 0.1 * (2.0 + 3.0 * kSqrt2), 1e-6, 0));
  EXPECT_TRUE(test::near_rel(o.aux.item<double>(), 17.0, 1e-6, 0));
  EXPECT_EQ(o.l0.item<float>(), 2.0f);
  o.aux.backward();
  const torch::Tensor& W_dec = sae.param("W_dec");
  EXPECT_TRUE(!W_dec.grad().defined() || W_dec.grad().abs().sum().item<double>() == 0.0);
  EXPECT_GT(sae.param("W_enc").grad().abs().sum().item<double>(), 0.0);
}

TEST(SaeLoss, TopKAndItsAuxKMatchAHandComputedExample) {
  Sae sae(cfg("topk", 2), tiny("topk", {0.f, -0.5f, -0.4f}), "test");
  const torch::Tensor x = torch::tensor({1.f, 2.f, 0.f, 1.f}).view({2, 2});
  // Row 1: pre (1, 1.5, 2.6) keeps latents 2, 1 → x̂ = (2.6, 4.1), e = (−1.6, −2.1), ‖e‖² = 6.97.
  // Row 2: pre (0, 0.5, 0.6) keeps latents 2, 1 → x̂ = (0.6, 1.1), e = (−0.6, −0.1), ‖e‖² = 0.37.
  const SaeOutput plain = sae.forward(x, 0.0);
  EXPECT_TRUE(test::near_rel(plain.mse.item<double>(), (6.97 + 0.37) / 2, 1e-6, 0));
  EXPECT_EQ(plain.l0.item<float>(), 2.0f);
  EXPECT_EQ(plain.aux.item<double>(), 0.0);
  EXPECT_FALSE(plain.features.defined());  // the code stays sparse
  EXPECT_TRUE(torch::equal(plain.fire_counts, torch::tensor({0, 2, 2}, torch::kInt64)));
  // AuxK with latent 0 dead (k_aux = d_in / 2 = 1): ê = ReLU(1, 0) · W_dec[0] = (2,0), (0,0);
  // ‖e − ê‖² = 3.6² + 2.1² = 17.37 and 0.37 → mean 8.87; mean(e) = (−1.1, −1.1) →
  // ‖e − mean‖² = 1.25 each; aux = 8.87 / 1.25 / 32.
  const SaeOutput o = sae.forward(x, 0.0, torch::tensor({true, false, false}));
  EXPECT_TRUE(test::near_rel(o.aux.item<double>(), 8.87 / 1.25 / 32.0, 1e-6, 0));
  EXPECT_TRUE(test::near_rel(o.loss.item<double>(), (6.97 + 0.37) / 2 + 8.87 / 1.25 / 32.0, 1e-6, 0));
}

TEST(SaeLoss, BatchTopKKeepsTheLargestOverTheBatchAndLearnsAThreshold) {
  Sae sae(cfg("batchtopk", 1), tiny("batchtopk", {0.f, -0.5f, -0.4f}), "test");
  const torch::Tensor x = torch::tensor({1.f, 2.f, 0.f, 1.f}).view({2, 2});
  // k · batch = 2 over ReLU pre-activations (1, 1.5, 2.6 | 0, 0.5, 0.6): 2.6 and 1.5, both row 1.
  const SaeOutput o = sae.forward(x, 0.0);
  EXPECT_TRUE(torch::allclose(o.dense_features(3), torch::tensor({0.f, 1.5f, 2.6f, 0.f, 0.f, 0.f}).view({2, 3})));
  EXPECT_EQ(o.l0.item<float>(), 1.0f);
  // Row 1: x̂ = 1.5 (0,1) + 2.6 (1,1) = (2.6, 4.1) → 6.97; row 2: x̂ = 0 → 0² + 1² = 1.
  EXPECT_TRUE(test::near_rel(o.mse.item<double>(), (6.97 + 1.0) / 2, 1e-6, 0));
  // The first estimate of the threshold is the smallest kept activation; inference uses it.
  EXPECT_TRUE(test::near_rel(sae.threshold()[0].item<double>(), 1.5, 1e-6, 0));
  EXPECT_TRUE(torch::allclose(sae.encode(x.narrow(0, 0, 1)), torch::tensor({0.f, 0.f, 2.6f}).view({1, 3})));
}

TEST(SaeLoss, BatchTopKTrainsWithAuxKOnDeadLatents) {
  Sae sae(cfg("batchtopk", 1), tiny("batchtopk", {0.f, -0.5f, -0.4f}), "test");
  const torch::Tensor x = torch::tensor({1.f, 2.f, 0.f, 1.f}).view({2, 2});
  // Kept: 2.6 and 1.5 of row 1 → e = (−1.6, −2.1) and (0, 1). Latent 0 dead (k_aux 1): its
  // pre-activations (1, 0) → ê = (2, 0) and (0, 0); ‖e − ê‖² = 17.37 and 1 → mean 9.185;
  // mean(e) = (−0.8, −0.55) → ‖e − mean‖² = 0.64 + 2.4025 = 3.0425 each; aux = 9.185 / 3.0425 / 32.
  const SaeOutput o = sae.forward(x, 0.0, torch::tensor({true, false, false}));
  EXPECT_TRUE(test::near_rel(o.aux.item<double>(), 9.185 / 3.0425 / 32.0, 1e-6, 0));
  EXPECT_TRUE(test::near_rel(o.loss.item<double>(), (6.97 + 1.0) / 2 + 9.185 / 3.0425 / 32.0, 1e-6, 0));
  o.aux.backward();
  // The gradient reaches the dead latent's encoder column, and no live one.
  const torch::Tensor g = sae.param("W_enc").grad();
  EXPECT_GT(g.select(1, 0).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(g.narrow(1, 1, 2).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(sae.forward(x, 0.0).aux.item<double>(), 0.0);  // nothing dead, no AuxK
}

TEST(SaeLoss, MatryoshkaAddsTheInnerLevelsReconstructionsOfTheSameCode) {
  SaeConfig c = cfg("matryoshka_batchtopk", 1);
  c.matryoshka_widths = {2, 3};
  Sae sae(c, tiny("matryoshka_batchtopk", {0.f, -0.5f, -0.4f}), "test");
  const torch::Tensor x = torch::tensor({1.f, 2.f, 0.f, 1.f}).view({2, 2});
  // The batchtopk code keeps 2.6 (latent 2) and 1.5 (latent 1) of row 1: full mse (6.97 + 1) / 2.
  // Level 2 keeps latent 1 alone: row 1 x̂ = (0, 1.5) → 1 + 0.25; row 2 x̂ = 0 → 1; mean 1.125.
  const SaeOutput o = sae.forward(x, 0.0);
  EXPECT_TRUE(test::near_rel(o.mse.item<double>(), (6.97 + 1.0) / 2, 1e-6, 0));
  EXPECT_TRUE(test::near_rel(o.nested.item<double>(), 1.125, 1e-6, 0));
  EXPECT_TRUE(test::near_rel(o.loss.item<double>(), (6.97 + 1.0) / 2 + 1.125, 1e-6, 0));
  EXPECT_EQ(o.l0.item<float>(), 1.0f);
  // A plain batchtopk SAE with the same weights has no nested term.
  Sae plain(cfg("batchtopk", 1), tiny("batchtopk", {0.f, -0.5f, -0.4f}), "test");
  EXPECT_EQ(plain.forward(x, 0.0).nested.item<double>(), 0.0);
  // Widths must nest up to d_sae and start at k or above.
  c.matryoshka_widths = {2};
  EXPECT_THROW(Sae(c, 1), c10::Error);
  c.matryoshka_widths = {3, 3};
  EXPECT_THROW(Sae(c, 1), c10::Error);
  c.matryoshka_widths = {};
  EXPECT_THROW(Sae(c, 1), c10::Error);
}

// A batch too wide for the dense path decodes each level sparsely; both equal the definition
// computed in float64 from the code, and so do their gradients to W_dec.
TEST(SaeLoss, MatryoshkaNestedLossEqualsItsDefinitionOnTheDenseAndTheSparsePath) {
  for (const int64_t rows : {int64_t{64}, int64_t{1100}}) {  // 64 · 16384 ≤ 2^24 < 1100 · 16384
    SaeConfig c;
    c.architecture = Architecture::kMatryoshkaBatchTopK;
    c.d_in = 8;
    c.d_sae = 16384;
    c.k = 3;
    c.matryoshka_widths = {4096, 8192, 16384};
    Sae sae(c, 5);
    torch::manual_seed(9);
    const torch::Tensor x = torch::randn({rows, 8});
    const SaeOutput o = sae.forward(x, 0.0);
    o.nested.backward();
    const torch::Tensor grad = sae.param("W_dec").grad().to(torch::kFloat64).clone();
    // Reference: the dense code in float64, level by level.
    const torch::Tensor f = o.dense_features(c.d_sae).detach().to(torch::kFloat64);
    const torch::Tensor W = sae.param("W_dec").detach().to(torch::kFloat64).requires_grad_(true);
    const torch::Tensor b = sae.param("b_dec").detach().to(torch::kFloat64);
    torch::Tensor want = torch::zeros({}, torch::kFloat64);
    for (const int64_t w : {int64_t{4096}, int64_t{8192}}) {
      const torch::Tensor xh = torch::matmul(f.narrow(1, 0, w), W.narrow(0, 0, w)) + b;
      want = want + (x.to(torch::kFloat64) - xh).pow(2).sum(-1).mean();
    }
    want.backward();
    EXPECT_TRUE(test::near_rel(o.nested.item<double>(), want.item<double>(), 1e-5, 0)) << rows;
    EXPECT_TRUE(torch::allclose(grad, W.grad(), 1e-4, 1e-6)) << rows;
  }
}

TEST(SaeLoss, BatchTopKCalibrationKeepsExactlyKPerRowOnAverage) {
  Sae sae(cfg("batchtopk", 1), tiny("batchtopk", {0.f, -0.5f, -0.4f}), "test");
  const torch::Tensor x = torch::tensor({1.f, 2.f, 0.f, 1.f}).view({2, 2});
  // ReLU pre-activations (1, 1.5, 2.6 | 0, 0.5, 0.6); k · rows = 2 → θ is the third largest, 1.
  EXPECT_TRUE(test::near_rel(sae.calibrate_batchtopk_threshold(x), 1.0, 1e-6, 0));
  EXPECT_TRUE(torch::allclose(sae.encode(x), torch::tensor({0.f, 1.5f, 2.6f, 0.f, 0.f, 0.f}).view({2, 3})));

  // Wide enough that the rows are read in two chunks; the threshold is still the (k·n + 1)-th
  // largest activation of them all, and held-out rows of the same distribution get L0 ≈ k.
  SaeConfig c;
  c.architecture = Architecture::kBatchTopK;
  c.d_in = 8;
  c.d_sae = 16384;
  c.k = 3;
  Sae wide(c, 2);
  torch::manual_seed(3);
  const torch::Tensor rows = torch::randn({1100, 8});
  const double theta = wide.calibrate_batchtopk_threshold(rows);
  torch::NoGradGuard g;
  const torch::Tensor all = std::get<0>(torch::relu(wide.pre_activations(rows)).reshape(-1).sort(0, true));
  EXPECT_EQ(theta, all[3 * 1100].item<double>());
  EXPECT_EQ((wide.encode(rows) > 0).sum().item<int64_t>(), 3 * 1100);
  const double held_out = (wide.encode(torch::randn({2000, 8})) > 0).sum(1).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(held_out, 3.0, 0.3);
}

TEST(SaeLoss, JumpReluTanhPenaltyAndPreActivationLossMatchAHandComputedExample) {
  SaeConfig c = cfg("jumprelu");
  c.jumprelu_bandwidth = 0.5;
  c.jumprelu_sparsity = JumpReluSparsity::kTanh;
  c.jumprelu_tanh_scale = 0.25;  // small enough that no tanh saturates (float32 gradients stay exact)
  c.pre_act_loss_coefficient = 0.5;
  auto p = tiny("jumprelu", {0.f, -1.f, -0.5f});
  p["threshold"] = torch::tensor({0.5f, 1.2f, 2.0f});
  Sae sae(c, p, "test");
  // pre = (1, 1, 2.5); θ = (0.5, 1.2, 2) → f = (1, 0, 2.5); ‖W_dec‖ = (2, 1, √2);
  // penalty 0.1 · (tanh(0.25 · 1 · 2) + tanh(0) + tanh(0.25 · 2.5 · √2)).
  // Pre-activation loss with latents 1 and 2 dead: 0.5 · (ReLU(1.2 − 1) · 1 + ReLU(2 − 2.5) · √2) = 0.1.
  const SaeOutput o = sae.forward(torch::tensor({1.f, 2.f}).view({1, 2}), 0.1, torch::tensor({false, true, true}));
  EXPECT_TRUE(test::near_rel(o.mse.item<double>(), 12.5, 1e-6, 0));
  EXPECT_TRUE(test::near_rel(o.sparsity.item<double>(), 0.1 * (std::tanh(0.5) + std::tanh(0.625 * kSqrt2)), 1e-6, 0));
  EXPECT_TRUE(test::near_rel(o.aux.item<double>(), 0.1, 1e-5, 0));
  o.sparsity.backward();
  // Latent 1 sits within ε/2 of θ: ∂penalty/∂f₁ = 0.1 · 0.25 · 1 · sech²(0) = 0.025, times
  // −θ/ε = −2.4 → −0.06 per θ; ∂/∂log θ₁ = 1.2 · (−0.06) = −0.072. The penalty's gradient also
  // reaches the pre-activations of active latents (the step penalty's does not): b_enc₀ gets
  // 0.1 · 0.25 · 2 · sech²(0.5), b_enc₂ 0.1 · 0.25 · √2 · sech²(0.625 √2), inactive b_enc₁ nothing.
  const torch::Tensor g = sae.param("log_threshold").grad();
  EXPECT_TRUE(test::near_rel(g[1].item<double>(), -0.072, 1e-5, 0));
  EXPECT_NEAR(g[0].item<double>(), 0.0, 1e-7);
  auto sech2 = [](double v) { return 1.0 / std::pow(std::cosh(v), 2); };
  const torch::Tensor gb = sae.param("b_enc").grad();
  EXPECT_TRUE(test::near_rel(gb[0].item<double>(), 0.1 * 0.25 * 2 * sech2(0.5), 1e-5, 0));
  EXPECT_TRUE(test::near_rel(gb[2].item<double>(), 0.1 * 0.25 * kSqrt2 * sech2(0.625 * kSqrt2), 1e-5, 0));
  EXPECT_EQ(gb[1].item<double>(), 0.0);
}

TEST(SaeLoss, JumpReluMatchesAHandComputedExampleIncludingThresholdGradients) {
  SaeConfig c = cfg("jumprelu");
  c.jumprelu_bandwidth = 0.5;
  c.jumprelu_sparsity = JumpReluSparsity::kStep;
  auto p = tiny("jumprelu", {0.f, -1.f, -0.5f});
  p["threshold"] = torch::tensor({0.5f, 1.2f, 2.0f});
  Sae sae(c, p, "test");
  // pre = (1, 1, 2.5); θ = (0.5, 1.2, 2) → f = (1, 0, 2.5); x̂ = (4.5, 2.5); mse = 3.5² + 0.5² = 12.5;
  // penalty 0.1 · L0 = 0.1 · 2.
  const SaeOutput o = sae.forward(torch::tensor({1.f, 2.f}).view({1, 2}), 0.1);
  EXPECT_TRUE(test::near_rel(o.mse.item<double>(), 12.5, 1e-6, 0));
  EXPECT_TRUE(test::near_rel(o.sparsity.item<double>(), 0.2, 1e-6, 0));
  o.loss.backward();
  // Only latent 1 sits within ε/2 of its threshold: (1 − 1.2) / 0.5 = −0.4. Through f:
  // ∂mse/∂f₁ = 2 (x̂ − x) · W_dec[1] = 2 · 0.5 = 1, times −θ/ε = −2.4; through the penalty:
  // 0.1 · (−1/ε) = −0.2. ∂/∂log θ₁ = θ₁ · (−2.6) = −3.12; latents 0 and 2 get nothing.
  const torch::Tensor g = sae.param("log_threshold").grad();
  EXPECT_NEAR(g[0].item<double>(), 0.0, 1e-7);
  EXPECT_TRUE(test::near_rel(g[1].item<double>(), -3.12, 1e-6, 0));
  EXPECT_NEAR(g[2].item<double>(), 0.0, 1e-7);
  EXPECT_TRUE(torch::allclose(sae.threshold(), torch::tensor({0.5f, 1.2f, 2.0f})));
}

TEST(SaeInit, DecoderRowsHaveUnitNormAndTheEncoderIsTheirTranspose) {
  SaeConfig c = cfg("standard");
  c.d_in = 16;
  c.d_sae = 64;
  Sae sae(c, 5);
  EXPECT_TRUE(torch::allclose(sae.param("W_dec").norm(2, {1}), torch::ones({64}), 1e-5, 1e-5));
  EXPECT_TRUE(torch::equal(sae.param("W_enc"), sae.param("W_dec").t()));
}

TEST(SaeFiles, SaveAndLoadGiveIdenticalOutputsForEveryArchitecture) {
  test::TempDir dir;
  for (const std::string arch : {"standard", "gated", "topk", "batchtopk", "matryoshka_batchtopk", "jumprelu"}) {
    SaeConfig c = cfg(arch, 4);
    c.d_in = 8;
    c.d_sae = 32;
    if (arch == "matryoshka_batchtopk") c.matryoshka_widths = {8, 16, 32};
    Sae sae(c, 9);
    const torch::Tensor x = torch::randn({10, 8});
    if (uses_batch_topk(c.architecture)) sae.forward(x, 0.0);  // sets the threshold
    SaeMetadata m;
    m.model_name = "brown-gpt";
    m.hook_name = "blocks.1.hook_resid_pre";
    m.context_size = 128;
    save_sae(dir / arch, sae, m, torch::full({32}, -2.0));
    const LoadedSae back = load_sae(dir / arch);
    EXPECT_EQ(architecture_name(back.sae.config().architecture), arch);
    EXPECT_EQ(back.sae.config().matryoshka_widths, c.matryoshka_widths);
    EXPECT_EQ(back.metadata.hook_name, "blocks.1.hook_resid_pre");
    EXPECT_EQ(back.metadata.context_size, 128);
    EXPECT_TRUE(torch::equal(back.log10_density, torch::full({32}, -2.0)));
    torch::NoGradGuard g;
    EXPECT_TRUE(torch::allclose(back.sae.encode(x), sae.encode(x), 1e-6, 1e-6)) << arch;
    EXPECT_TRUE(torch::allclose(back.sae.decode(sae.encode(x)), sae.decode(sae.encode(x)), 1e-6, 1e-6)) << arch;
    const json cfg_json = load_json_file(dir / (arch + "/cfg.json"), "cfg");
    EXPECT_EQ(cfg_json["d_sae"], 32);
    // SAELens reads the batch-top-k SAEs as it writes them for inference: JumpReLU.
    EXPECT_EQ(cfg_json["architecture"], uses_batch_topk(c.architecture) ? "jumprelu" : arch);
    EXPECT_EQ(cfg_json["metadata"]["model_name"], "brown-gpt");
  }
}

TEST(SaeFiles, LoadsAnOlderSaeLensTopKLayoutWithTopLevelMetadata) {
  test::TempDir dir;
  SaeConfig c = cfg("topk", 3);
  c.d_in = 4;
  c.d_sae = 8;
  Sae sae(c, 2);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [n, t] : sae.state()) tensors.emplace_back(n, t);
  save_safetensors(dir / "sae_weights.safetensors", tensors);
  test::write_text(dir / "cfg.json", R"({"architecture": "standard", "activation_fn_str": "topk",
      "activation_fn_kwargs": {"k": 3}, "d_in": 4, "d_sae": 8, "dtype": "float32", "hook_name": "blocks.2.hook_resid_pre",
      "model_name": "gpt2", "apply_b_dec_to_input": true, "normalize_activations": "none", "lr": 0.0004})");
  const LoadedSae back = load_sae(dir.path().string());
  EXPECT_EQ(back.sae.config().architecture, Architecture::kTopK);
  EXPECT_EQ(back.sae.config().k, 3);
  EXPECT_EQ(back.metadata.hook_name, "blocks.2.hook_resid_pre");
  EXPECT_FALSE(back.log10_density.defined());
}

TEST(SaeFiles, RejectsWeightsWhoseShapesDisagreeWithCfgJson) {
  test::TempDir dir;
  SaeConfig c = cfg("standard");
  c.d_in = 4;
  c.d_sae = 8;
  save_sae(dir.path().string(), Sae(c, 1), SaeMetadata{});
  json j = load_json_file(dir / "cfg.json", "cfg");
  j["d_sae"] = 16;
  test::write_text(dir / "cfg.json", j.dump());
  EXPECT_THROWS_WITH(load_sae(dir.path().string()),
                     "sae_weights.safetensors: tensor 'W_dec' has shape [8, 4], expected [16, 4]");
  j["d_sae"] = 8;
  j["architecture"] = "gated";
  test::write_text(dir / "cfg.json", j.dump());
  EXPECT_THROWS_WITH(load_sae(dir.path().string()), "sae_weights.safetensors: tensor 'b_gate' is missing");
}

}  // namespace
}  // namespace saelab
