// Sparse steps of standard, gated and JumpReLU coders (threshold_select, the band, the row split,
// the gathered kernels and factored gradients) against the dense float64 path.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "sae/sae.h"
#include "sae/sparse_grad.h"
#include "sae/topk_kernels.h"
#include "sae/trainer.h"
#include "tests/sae_test_util.h"

namespace saelab {
namespace {

struct SparseCase {
  const char* name;
  Architecture architecture;
  JumpReluSparsity sparsity = JumpReluSparsity::kTanh;
  double bandwidth = 2.0;
  int64_t cap = 0;
  bool with_sinks = true;
  int64_t dead_stride = 5;  // every dead_stride-th latent is dead
  bool split = false;       // cap set below the fullest rows: those rows dense, the others sparse
};

// standard, gated and jumprelu once their codes are sparse: the sparse path (threshold_select, the
// gathered kernels, factored gradients with the decoder-norm term) gives the loss terms and every
// gradient of the dense float64 autograd path of the same SAE.
TEST(SparseCodes, ForwardAndGradientsEqualTheDenseFloat64Path) {
  const std::vector<SparseCase> cases = {
      {"standard", Architecture::kStandard, JumpReluSparsity::kTanh, 2.0, 120, true},
      {"standard, no sinks", Architecture::kStandard, JumpReluSparsity::kTanh, 2.0, 120, false},
      {"gated", Architecture::kGated, JumpReluSparsity::kTanh, 2.0, 120, true},
      {"gated, no sinks", Architecture::kGated, JumpReluSparsity::kTanh, 2.0, 120, false},
      {"jumprelu tanh", Architecture::kJumpReLU, JumpReluSparsity::kTanh, 2.0, 300, true},  // 60 dead: gathered
      // Rows with more entries in θ's kernel window than the cap, but fewer active ones: sparse,
      // the window's inactive band entries reaching θ through BandFn and the band's penalty slope.
      {"jumprelu tanh, window wider than the cap", Architecture::kJumpReLU, JumpReluSparsity::kTanh, 2.0, 100, true},
      {"jumprelu step, window wider than the cap", Architecture::kJumpReLU, JumpReluSparsity::kStep, 2.0, 100, true},
      // A cap that 1 to 4 of the 64 rows pass (at most 1/16 of the batch): split_rows.
      {"standard, rows past the cap", Architecture::kStandard, JumpReluSparsity::kTanh, 2.0, 0, true, 5, true},
      {"gated, rows past the cap", Architecture::kGated, JumpReluSparsity::kTanh, 2.0, 0, true, 5, true},
      {"jumprelu tanh, rows past the cap", Architecture::kJumpReLU, JumpReluSparsity::kTanh, 2.0, 0, true, 5, true},
      {"jumprelu step", Architecture::kJumpReLU, JumpReluSparsity::kStep, 0.3, 120, true, 2},  // 150 dead > cap: dense
  };
  const int64_t B = 64, d = 12, d_sae = 300;
  for (const SparseCase& sc : cases) {
    SaeConfig c;
    c.architecture = sc.architecture;
    c.d_in = d;
    c.d_sae = d_sae;
    c.jumprelu_sparsity = sc.sparsity;
    c.jumprelu_bandwidth = sc.bandwidth;
    c.pre_act_loss_coefficient = 0.05;  // large enough to matter at 1e-10
    torch::manual_seed(31);
    Sae sparse(c, 3), dense(c, 3);
    for (Sae* s : {&sparse, &dense}) {
      to_float64(*s);
      torch::NoGradGuard g;
      torch::manual_seed(32);
      auto& p = const_cast<torch::Tensor&>(s->param("W_dec"));
      p.mul_(torch::rand({d_sae, 1}, torch::kFloat64) + 0.5);  // norms away from 1 (standard's penalty)
      s->b_dec().copy_(torch::randn({d}, torch::kFloat64) * 0.3);
      if (sc.architecture == Architecture::kGated) {
        const_cast<torch::Tensor&>(s->param("b_gate")).copy_(torch::randn({d_sae}, torch::kFloat64) * 0.2 - 1.8);
        const_cast<torch::Tensor&>(s->param("b_mag")).copy_(torch::randn({d_sae}, torch::kFloat64) * 0.5);
        const_cast<torch::Tensor&>(s->param("r_mag")).copy_(torch::randn({d_sae}, torch::kFloat64) * 0.3);
      } else {
        const_cast<torch::Tensor&>(s->param("b_enc")).copy_(torch::randn({d_sae}, torch::kFloat64) * 0.2 -
                                                             (sc.architecture == Architecture::kStandard ? 1.8 : 0.0));
      }
      if (sc.architecture == Architecture::kJumpReLU) {
        const_cast<torch::Tensor&>(s->param("log_threshold")).copy_((torch::rand({d_sae}, torch::kFloat64) * 0.4 + 1.4).log());
      }
    }
    if (sc.with_sinks) sparse.set_sparse_gradients(true);
    dense.set_sparse_code_cap(0);
    torch::manual_seed(33);
    const torch::Tensor x = torch::randn({B, d}, torch::kFloat64) * torch::linspace(0.5, 1.5, B, torch::kFloat64).unsqueeze(1);
    int64_t cap = sc.cap;
    if (sc.split) {
      // Each row's candidates (positive pre-activations, open gates, latents above θ), sorted.
      torch::NoGradGuard g;
      const bool gated = sc.architecture == Architecture::kGated;
      const torch::Tensor pre = torch::matmul(x - dense.b_dec(), dense.W_enc()) + dense.param(gated ? "b_gate" : "b_enc");
      const torch::Tensor counts = std::get<0>(
          (pre > (sc.architecture == Architecture::kJumpReLU ? dense.threshold() : torch::zeros({d_sae}, torch::kFloat64)))
              .sum(1)
              .sort(0, true));
      const int64_t fullest = counts[0].item<int64_t>();
      int64_t over = 1;
      while (over < 4 && counts[over].item<int64_t>() == fullest) ++over;
      cap = counts[over].item<int64_t>();
      ASSERT_LT(cap, fullest) << sc.name;
      ASSERT_GT(cap, 0) << sc.name;
    }
    sparse.set_sparse_code_cap(cap);
    const torch::Tensor dead = torch::arange(d_sae) % sc.dead_stride == 0;
    const SaeOutput os = sparse.forward(x, 0.7, dead), od = dense.forward(x, 0.7, dead);
    ASSERT_FALSE(os.features.defined()) << sc.name << ": the sparse path ran";
    ASSERT_TRUE(od.features.defined()) << sc.name;
    EXPECT_GT(os.l0.item<double>(), 1.0) << sc.name;
    EXPECT_LT(os.code_values.size(1), d_sae) << sc.name << ": the code is narrower than the dictionary";
    if (sc.split) EXPECT_GT(os.code_values.size(1), cap) << sc.name << ": the rows past the cap are in the code";
    if (sc.architecture == Architecture::kJumpReLU) {
      // entries below the threshold inside the kernel's window, which carry θ's gradient only
      torch::NoGradGuard g;
      const torch::Tensor pre = dense.pre_activations(x), th = dense.threshold();
      EXPECT_GT(((pre > th - sc.bandwidth / 2).logical_and(pre <= th)).sum().item<int64_t>(), 0) << sc.name;
      if (std::string(sc.name).find("window") != std::string::npos) {
        EXPECT_GT((pre > th - sc.bandwidth / 2).sum(1).max().item<int64_t>(), sc.cap) << sc.name << ": a window wider than the cap";
      }
      EXPECT_GT(od.aux.item<double>(), 0) << sc.name;
    }
    for (const auto& [what, a, b] : {std::make_tuple("mse", os.mse, od.mse), std::make_tuple("sparsity", os.sparsity, od.sparsity),
                                     std::make_tuple("aux", os.aux, od.aux), std::make_tuple("loss", os.loss, od.loss)}) {
      EXPECT_NEAR(a.item<double>(), b.item<double>(), 1e-10 * (1 + std::abs(b.item<double>()))) << sc.name << " " << what;
    }
    EXPECT_TRUE(torch::allclose(os.x_hat, od.x_hat, 1e-10, 1e-10)) << sc.name;
    EXPECT_TRUE(torch::allclose(os.dense_features(d_sae), od.features, 1e-10, 1e-10)) << sc.name;
    EXPECT_TRUE(torch::equal(os.fire_counts, od.fire_counts)) << sc.name;
    EXPECT_DOUBLE_EQ(os.l0.item<double>(), od.l0.item<double>()) << sc.name;
    // A loss that weighs the terms unequally, so that each term's gradient is checked.
    (os.loss + 3.0 * os.sparsity + 2.0 * os.aux).backward();
    (od.loss + 3.0 * od.sparsity + 2.0 * od.aux).backward();
    // (A split batch's dense rows leave dense gradients, which the update adds to the factored ones.)
    if (sc.with_sinks && sc.dead_stride == 5 && !sc.split) {
      EXPECT_FALSE(sparse.W_enc().grad().defined()) << sc.name << ": W_enc's gradient stayed factored";
    }
    if (sc.with_sinks && !sc.split) {
      EXPECT_FALSE(sparse.W_dec().grad().defined()) << sc.name << ": W_dec's gradient stayed factored";
    }
    for (const auto& [name, p] : dense.parameters()) {
      const torch::Tensor gs = full_grad(sparse, name), gd = p.grad();
      ASSERT_TRUE(gd.defined()) << sc.name << " " << name;
      const double scale = gd.abs().max().item<double>();
      EXPECT_GT(scale, 0) << sc.name << " " << name;
      EXPECT_LT((gs - gd).abs().max().item<double>(), 1e-10 * (1 + scale)) << sc.name << " " << name;
    }
  }
}

TEST(SparseCodes, ACodeAboveTheCapTakesTheDensePath) {
  SaeConfig c;
  c.architecture = Architecture::kStandard;
  c.d_in = 16;
  c.d_sae = 256;
  Sae sae(c, 1);  // b_enc 0: about half the latents fire
  sae.set_sparse_code_cap(32);
  const SaeOutput o = sae.forward(torch::randn({8, 16}), 1.0);
  EXPECT_TRUE(o.features.defined());
  EXPECT_GT(o.l0.item<double>(), 32);
  const ThresholdCode code = threshold_select(torch::randn({8, 16}), sae.W_enc(), sae.param("b_enc"),
                                              torch::zeros({256}), 32);
  EXPECT_FALSE(code.defined());
}

// The decoder-norm term of a factored gradient (SparseGrad::add_self) in the norm and the update.
TEST(SparseCodes, NormTermsOfAFactoredGradientEqualTheDenseGradient) {
  torch::manual_seed(41);
  const int64_t d = 24, d_sae = 40;
  const torch::Tensor W = torch::randn({d_sae, d});
  SparseGrad grad;
  grad.add(torch::randn({50}), torch::randint(0, d_sae, {50}), torch::randint(0, 10, {50}), torch::randn({10, d}));
  grad.add_self(torch::randn({d_sae}));
  grad.add_self(torch::randn({d_sae}));  // accumulates
  const torch::Tensor G = grad.dense(d_sae, W);
  EXPECT_NEAR(sparse_grad_norm_sq(W, grad, LatentAxis::kRows, false), G.pow(2).sum().item<double>(),
              1e-4 * G.pow(2).sum().item<double>());
  torch::Tensor Wf = W.clone(), m = torch::zeros_like(W), v = torch::zeros_like(W);
  torch::Tensor Wd = W.clone(), md = torch::zeros_like(W), vd = torch::zeros_like(W);
  AdamStep a;
  a.step_size = 0.01f;
  fused_sparse_adam(Wf, grad, LatentAxis::kRows, false, 0.5, m, v, a, false);
  adam_span(Wd.data_ptr<float>(), md.data_ptr<float>(), vd.data_ptr<float>(), G.contiguous().data_ptr<float>(), 0.5f,
            W.numel(), a);
  EXPECT_TRUE(torch::allclose(Wf, Wd, 1e-5, 1e-6)) << (Wf - Wd).abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(m, md, 1e-5, 1e-7));
}

// Whole training steps of standard, gated and jumprelu SAEs in their sparse regime: the factored
// path (the trainer's) and the dense path with dense gradients give the same weights.
TEST(SparseCodes, TrainingOnTheSparsePathEqualsTheDenseUpdate) {
  for (const char* arch : {"standard", "gated", "jumprelu"}) {
    SaeConfig c;
    c.architecture = parse_architecture(arch);
    c.d_in = 24;
    c.d_sae = 256;
    c.jumprelu_bandwidth = 0.5;
    torch::manual_seed(51);
    const torch::Tensor x = torch::randn({96, 24});
    const torch::Tensor dead = torch::arange(256) % 7 == 0;
    Sae fused(c, 5), plain(c, 5);
    for (Sae* s : {&fused, &plain}) {
      torch::NoGradGuard g;
      if (c.architecture == Architecture::kGated) {
        const_cast<torch::Tensor&>(s->param("b_gate")).fill_(-1.8);
      } else if (c.architecture == Architecture::kStandard) {
        const_cast<torch::Tensor&>(s->param("b_enc")).fill_(-1.8);
      } else {
        const_cast<torch::Tensor&>(s->param("log_threshold")).fill_(std::log(1.8));
      }
    }
    fused.set_sparse_gradients(true);
    fused.set_sparse_code_cap(64);
    plain.set_sparse_code_cap(0);
    auto fused_opt = adam_for(fused), plain_opt = adam_for(plain);
    for (int step = 0; step < 4; ++step) {
      const SaeOutput of = fused.forward(x, 0.5, dead);
      ASSERT_FALSE(of.features.defined()) << arch << " step " << step << ": the sparse path ran";
      sae_optimizer_step(fused, *fused_opt, of.loss, 1e-2, 0.05);  // clipping active
      const SaeOutput op = plain.forward(x, 0.5, dead);
      sae_optimizer_step(plain, *plain_opt, op.loss, 1e-2, 0.05);
    }
    expect_same_weights(fused, plain, arch);
  }
}

}  // namespace
}  // namespace saelab
