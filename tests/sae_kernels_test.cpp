#include <gtest/gtest.h>

#include <limits>

#include "sae/sae.h"
#include "sae/sparse_grad.h"
#include "sae/topk_kernels.h"
#include "sae/trainer.h"
#include "tests/sae_test_util.h"

namespace saelab {
namespace {

struct Grads {
  torch::Tensor out, x, W_enc, b_enc, W_dec;
};

// Dense float64 reference: ReLU of the pre-activations masked to the top-k latents, decoded by a matmul.
Grads dense_reference(torch::Tensor x, torch::Tensor W_enc, torch::Tensor b_enc, torch::Tensor W_dec, int64_t k,
                      const torch::Tensor& R) {
  for (auto* t : {&x, &W_enc, &b_enc, &W_dec}) *t = t->detach().clone().requires_grad_(true);
  const torch::Tensor pre = torch::matmul(x, W_enc) + b_enc;
  const torch::Tensor idx = std::get<1>(pre.detach().topk(k, 1));
  const torch::Tensor mask = torch::zeros_like(pre).scatter(1, idx, 1.0);
  const torch::Tensor out = torch::matmul(torch::relu(pre) * mask, W_dec);
  (out * R).sum().backward();
  return {out.detach(), x.grad(), W_enc.grad(), b_enc.grad(), W_dec.grad()};
}

Grads sparse_kernels(torch::Tensor x, torch::Tensor W_enc, torch::Tensor b_enc, torch::Tensor W_dec, int64_t k,
                     const torch::Tensor& R) {
  for (auto* t : {&x, &W_enc, &b_enc, &W_dec}) *t = t->detach().clone().requires_grad_(true);
  const TopKCode code = topk_encode(x, W_enc, b_enc, k);
  const torch::Tensor out = topk_decode(code.values, code.indices, W_dec);
  (out * R).sum().backward();
  return {out.detach(), x.grad(), W_enc.grad(), b_enc.grad(), W_dec.grad()};
}

TEST(TopKKernels, ForwardAndGradientsEqualDenseFloat64Autograd) {
  torch::manual_seed(3);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  // d_sae 12 takes torch::topk's path, 160 the one-pass selection kernel (k ≤ d_sae / 16).
  for (int64_t d_sae : {12, 160})
  for (int64_t k : {1, 3, 7}) {
    const torch::Tensor x = torch::randn({300, 5}, opts);
    const torch::Tensor W_enc = torch::randn({5, d_sae}, opts);
    const torch::Tensor b_enc = torch::randn({d_sae}, opts) * 0.5 - 0.5;  // some selected entries are negative
    const torch::Tensor W_dec = torch::randn({d_sae, 5}, opts);
    const torch::Tensor R = torch::randn({300, 5}, opts);
    const Grads ref = dense_reference(x, W_enc, b_enc, W_dec, k, R);
    const Grads got = sparse_kernels(x, W_enc, b_enc, W_dec, k, R);
    EXPECT_TRUE(torch::allclose(got.out, ref.out, 1e-12, 1e-12)) << "k " << k << " d_sae " << d_sae;
    EXPECT_TRUE(torch::allclose(got.x, ref.x, 1e-12, 1e-12)) << "k " << k;
    EXPECT_TRUE(torch::allclose(got.W_enc, ref.W_enc, 1e-12, 1e-12)) << "k " << k;
    EXPECT_TRUE(torch::allclose(got.b_enc, ref.b_enc, 1e-12, 1e-12)) << "k " << k;
    EXPECT_TRUE(torch::allclose(got.W_dec, ref.W_dec, 1e-12, 1e-12)) << "k " << k;
  }
}

// BatchTopK reference: the `total` largest pre-activations over the whole batch, ReLU, matmul decode.
Grads dense_batch_reference(torch::Tensor x, torch::Tensor W_enc, torch::Tensor b_enc, torch::Tensor W_dec,
                            int64_t total, const torch::Tensor& R) {
  for (auto* t : {&x, &W_enc, &b_enc, &W_dec}) *t = t->detach().clone().requires_grad_(true);
  const torch::Tensor pre = torch::matmul(x, W_enc) + b_enc;
  const torch::Tensor idx = std::get<1>(pre.detach().reshape(-1).topk(total));
  const torch::Tensor mask = torch::zeros({pre.numel()}, pre.options()).index_fill(0, idx, 1.0).view_as(pre);
  const torch::Tensor out = torch::matmul(torch::relu(pre) * mask, W_dec);
  (out * R).sum().backward();
  return {out.detach(), x.grad(), W_enc.grad(), b_enc.grad(), W_dec.grad()};
}

TEST(TopKKernels, BatchTopKForwardAndGradientsEqualDenseFloat64Autograd) {
  torch::manual_seed(5);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  for (int64_t total : {1, 40, 900, 3600, 20000}) {  // 3600: every entry of d_sae 12 (negative ones too)
    const int64_t d_sae = total > 3600 ? 400 : 12;  // wide enough for the one-pass selection kernel
    // Rows of very different scale so that rows keep very different numbers of latents.
    const torch::Tensor x = torch::randn({300, 5}, opts) * torch::linspace(0.1, 3.0, 300, opts).unsqueeze(1);
    const torch::Tensor W_enc = torch::randn({5, d_sae}, opts);
    const torch::Tensor b_enc = torch::randn({d_sae}, opts) * 0.5 - 0.5;
    const torch::Tensor W_dec = torch::randn({d_sae, 5}, opts);
    const torch::Tensor R = torch::randn({300, 5}, opts);
    const Grads ref = dense_batch_reference(x, W_enc, b_enc, W_dec, total, R);
    Grads got;
    {
      torch::Tensor xs = x.clone().requires_grad_(true), We = W_enc.clone().requires_grad_(true),
                    be = b_enc.clone().requires_grad_(true), Wd = W_dec.clone().requires_grad_(true);
      const TopKCode code = batch_topk_encode(xs, We, be, total);
      EXPECT_LE((code.values > 0).sum().item<int64_t>(), total);
      const torch::Tensor out = topk_decode(code.values, code.indices, Wd);
      (out * R).sum().backward();
      got = {out.detach(), xs.grad(), We.grad(), be.grad(), Wd.grad()};
    }
    EXPECT_TRUE(torch::allclose(got.out, ref.out, 1e-12, 1e-12)) << "total " << total;
    EXPECT_TRUE(torch::allclose(got.x, ref.x, 1e-12, 1e-12)) << "total " << total;
    EXPECT_TRUE(torch::allclose(got.W_enc, ref.W_enc, 1e-12, 1e-12)) << "total " << total;
    EXPECT_TRUE(torch::allclose(got.b_enc, ref.b_enc, 1e-12, 1e-12)) << "total " << total;
    EXPECT_TRUE(torch::allclose(got.W_dec, ref.W_dec, 1e-12, 1e-12)) << "total " << total;
  }
}

// The radix selection of BatchTopK against a float64 sort of the whole matrix: the same entries,
// each row's in column order; ties at the smallest kept value resolved in row-major order; fewer
// positive entries than asked keeps them all.
TEST(TopKKernels, BatchSelectionKeepsTheLargestPositiveEntriesOfTheBatch) {
  torch::manual_seed(21);
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    const torch::Tensor pre = (torch::randn({257, 700}) * torch::linspace(0.01, 4.0, 257).unsqueeze(1)).to(dtype);
    for (int64_t total : {1, 33, 8 * 257, 50000, 200000}) {
      const BatchSelection sel = batch_select(pre, total);
      const torch::Tensor flat = pre.to(torch::kFloat64).reshape(-1);
      const int64_t positives = (flat > 0).sum().item<int64_t>();
      const int64_t want_n = std::min(total, positives);
      const torch::Tensor want = std::get<1>(flat.topk(want_n));
      torch::Tensor got_mask = torch::zeros({flat.numel()}, torch::kBool);
      const torch::Tensor flat_idx = (torch::arange(257).unsqueeze(1) * 700 + sel.indices).masked_select(sel.valid);
      got_mask.index_fill_(0, flat_idx, true);
      torch::Tensor want_mask = torch::zeros({flat.numel()}, torch::kBool).index_fill_(0, want, true);
      EXPECT_EQ(flat_idx.numel(), want_n) << "total " << total;
      EXPECT_TRUE(torch::equal(got_mask, want_mask)) << "total " << total;
      EXPECT_TRUE(torch::equal(sel.values, pre.gather(1, sel.indices) * sel.valid.to(pre.dtype())));
      // Column order within each row.
      const torch::Tensor later = sel.indices.narrow(1, 1, sel.indices.size(1) - 1) > sel.indices.narrow(1, 0, sel.indices.size(1) - 1);
      EXPECT_TRUE(later.logical_or(sel.valid.narrow(1, 1, sel.valid.size(1) - 1).logical_not()).all().item<bool>());
    }
  }
  // Ties: 10 entries of 1.0 in rows 3..7, two of them kept, the first two in row-major order.
  torch::Tensor tied = torch::full({10, 6}, -1.0);
  tied[0][0] = 5.0;
  tied[1][2] = 4.0;
  for (int64_t r = 3; r < 8; ++r) tied[r][1] = tied[r][4] = 1.0;
  const BatchSelection sel = batch_select(tied, 4);
  EXPECT_EQ(sel.valid.sum().item<int64_t>(), 4);
  EXPECT_TRUE(sel.valid[3][0].item<bool>() && sel.valid[3][1].item<bool>());
  EXPECT_EQ(sel.indices[3][0].item<int64_t>(), 1);
  EXPECT_EQ(sel.indices[3][1].item<int64_t>(), 4);
  EXPECT_FALSE(sel.valid[4].any().item<bool>());
}

// Wide float32 encoders take the blocked path (the GEMM in column blocks merged into the rows'
// running top-k): the same selection as a float64 top-k over the whole product.
TEST(TopKKernels, BlockedSelectionOfAWideEncoderEqualsTheFullTopK) {
  torch::manual_seed(13);
  const int64_t B = 1024, d = 8, d_sae = 16384 + 4000;  // three column blocks, the last one partial
  const torch::Tensor x = torch::randn({B, d}), W = torch::randn({d, d_sae}), b = torch::randn({d_sae}) * 0.1;
  const torch::Tensor b_dec = torch::randn({d}) * 0.3;
  const TopKCode code = topk_encode(x, W, b, 7, b_dec);
  const torch::Tensor pre = torch::matmul(x.to(torch::kFloat64) - b_dec.to(torch::kFloat64), W.to(torch::kFloat64)) +
                            b.to(torch::kFloat64);
  const auto [want, want_idx] = pre.topk(7, 1);
  // Values equal the float64 top-k, sorted descending; the indices point at those values.
  EXPECT_TRUE(torch::allclose(code.values.to(torch::kFloat64), want.clamp_min(0), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(pre.gather(1, code.indices).clamp_min(0), want.clamp_min(0), 1e-5, 1e-5));
  EXPECT_GT((code.indices == want_idx).to(torch::kFloat64).mean().item<double>(), 0.999);
  EXPECT_TRUE((code.indices >= 16384).any().item<bool>()) << "the last block is searched";
}

TEST(TopKKernels, RowTopKEqualsAStableSortWithTiesInColumnOrder) {
  torch::manual_seed(5);
  struct Shape {
    int64_t rows, n, k;
  };
  // chunked (n up to 64 k, one with a partial last chunk), by insertion (n past 64 k), and torch's (k near n)
  for (const Shape sh : {Shape{64, 1024, 32}, Shape{64, 1024, 16}, Shape{33, 16 * 17 + 5, 3}, Shape{16, 4096, 8},
                         Shape{16, 40, 8}}) {
    for (const bool ties : {false, true}) {
      for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
        torch::Tensor pre = torch::randn({sh.rows, sh.n}, dtype);
        if (ties) pre = (pre * 3).round();  // many equal values, at the boundary too
        const auto [values, indices] = row_topk(pre, sh.k);
        const auto [want, want_idx] = torch::sort(pre, /*stable=*/true, 1, /*descending=*/true);
        const std::string what = std::to_string(sh.n) + " x k " + std::to_string(sh.k) + (ties ? " with ties" : "");
        EXPECT_TRUE(torch::equal(values, want.narrow(1, 0, sh.k))) << what;
        if (sh.k * 16 <= sh.n) {  // torch::topk (k near n) orders ties its own way
          EXPECT_TRUE(torch::equal(indices, want_idx.narrow(1, 0, sh.k))) << what;
        }
      }
    }
  }
  // A row holding a NaN takes the insertion path; the other rows are unaffected.
  torch::Tensor pre = torch::randn({4, 1024});
  pre[1][100] = std::numeric_limits<float>::quiet_NaN();
  const auto [values, indices] = row_topk(pre, 32);
  const auto [want, want_idx] = torch::sort(pre.narrow(0, 2, 2), true, 1, true);
  EXPECT_TRUE(torch::equal(indices.narrow(0, 2, 2), want_idx.narrow(1, 0, 32)));
  EXPECT_FALSE(torch::isnan(values[1]).any().item<bool>()) << "NaN is never ranked above a number";
}

TEST(TopKKernels, DenseViewHoldsExactlyKNonNegativeLatentsPerRow) {
  const torch::Tensor x = torch::randn({8, 4});
  const TopKCode code = topk_encode(x, torch::randn({4, 20}), torch::zeros({20}), 5);
  const torch::Tensor dense = topk_to_dense(code, 20);
  EXPECT_EQ(dense.sizes(), (std::vector<int64_t>{8, 20}));
  EXPECT_TRUE((dense >= 0).all().item<bool>());
  EXPECT_TRUE(((dense != 0).sum(1) <= 5).all().item<bool>());
  EXPECT_TRUE(torch::equal(dense.gather(1, code.indices), code.values));
}

TEST(TopKKernels, RejectsAKLargerThanTheDictionary) {
  EXPECT_THROW(topk_encode(torch::randn({2, 4}), torch::randn({4, 6}), torch::zeros({6}), 7), c10::Error);
}


// The factored gradients (SparseGrad) equal float64 dense autograd, for topk and batchtopk codes,
// with the input centred by b_dec inside the kernel, and for AuxK-style gathered entries.
TEST(TopKKernels, FactoredGradientsEqualDenseFloat64Autograd) {
  torch::manual_seed(11);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  const int64_t B = 200, d = 6, d_sae = 160;
  for (int64_t mode : {0, 1}) {  // 0: topk k 5, 1: batchtopk total 900
    const torch::Tensor x = torch::randn({B, d}, opts) * torch::linspace(0.2, 2.0, B, opts).unsqueeze(1);
    const torch::Tensor W_enc0 = torch::randn({d, d_sae}, opts), b_enc0 = torch::randn({d_sae}, opts) * 0.5 - 0.3;
    const torch::Tensor b_dec0 = torch::randn({d}, opts), W_dec0 = torch::randn({d_sae, d}, opts);
    const torch::Tensor R = torch::randn({B, d}, opts), R2 = torch::randn({B, d}, opts);
    // AuxK-like second code: 3 given latents per row among the first 40.
    const torch::Tensor aux_idx = std::get<1>(torch::rand({B, 40}, opts).topk(3, 1));

    // Reference: dense autograd on (x − b_dec) W_enc + b_enc.
    torch::Tensor We = W_enc0.clone().requires_grad_(true), be = b_enc0.clone().requires_grad_(true),
                  bd = b_dec0.clone().requires_grad_(true), Wd = W_dec0.clone().requires_grad_(true);
    const torch::Tensor pre = torch::matmul(x - bd, We) + be;
    torch::Tensor mask;
    if (mode == 0) {
      mask = torch::zeros_like(pre).scatter(1, std::get<1>(pre.detach().topk(5, 1)), 1.0);
    } else {
      mask = torch::zeros({pre.numel()}, opts).index_fill(0, std::get<1>(pre.detach().reshape(-1).topk(900)), 1.0).view_as(pre);
    }
    const torch::Tensor aux_mask = torch::zeros_like(pre).scatter(1, aux_idx, 1.0);
    const torch::Tensor ref_out = torch::matmul(torch::relu(pre) * mask, Wd);
    const torch::Tensor ref_aux = torch::matmul(torch::relu(pre) * aux_mask, Wd);
    ((ref_out * R).sum() + (ref_aux * R2).sum()).backward();

    torch::Tensor We2 = W_enc0.clone().requires_grad_(true), be2 = b_enc0.clone().requires_grad_(true),
                  bd2 = b_dec0.clone().requires_grad_(true), Wd2 = W_dec0.clone().requires_grad_(true);
    SparseGrad enc, dec;
    const TopKCode code = mode == 0 ? topk_encode(x, We2, be2, 5, bd2, &enc) : batch_topk_encode(x, We2, be2, 900, bd2, &enc);
    const torch::Tensor out = topk_decode(code.values, code.indices, Wd2, &dec);
    torch::Tensor aux_pre;
    {
      torch::NoGradGuard g;
      aux_pre = (torch::matmul(x - bd2, We2) + be2).gather(1, aux_idx);
    }
    const torch::Tensor aux_out = topk_decode(gathered_encode(x, We2, be2, aux_idx, aux_pre, bd2, &enc), aux_idx, Wd2, &dec);
    ((out * R).sum() + (aux_out * R2).sum()).backward();
    EXPECT_FALSE(We2.grad().defined()) << "W_enc's gradient went to the sink, not .grad";
    EXPECT_FALSE(Wd2.grad().defined());
    EXPECT_TRUE(torch::allclose(out, ref_out, 1e-12, 1e-12)) << mode;
    EXPECT_TRUE(torch::allclose(enc.dense(d_sae).t(), We.grad(), 1e-12, 1e-12)) << mode;
    EXPECT_TRUE(torch::allclose(dec.dense(d_sae), Wd.grad(), 1e-12, 1e-12)) << mode;
    EXPECT_TRUE(torch::allclose(be2.grad(), be.grad(), 1e-12, 1e-12)) << mode;
    EXPECT_TRUE(torch::allclose(bd2.grad(), bd.grad(), 1e-12, 1e-12)) << mode;
  }
}

// The fused update equals the plain one: the dense gradient, its parallel component removed per
// row, clipped, Adam (torch::optim::Adam), rows renormalised; W_enc's latents along columns.
TEST(TopKKernels, FusedSparseAdamEqualsTheDenseUpdate) {
  torch::manual_seed(12);
  // d_sae not a multiple of the 16-latent column block; d 150: two 64-wide register blocks and a tail
  for (const int64_t d : {40, 150}) {
    const int64_t d_sae = 37;
    SparseGrad grad;
    for (int t = 0; t < 2; ++t) {
      const torch::Tensor M = torch::randn({30, d});
      grad.add(torch::randn({90}), torch::randint(0, d_sae - 3, {90}), torch::randint(0, 30, {90}), M);  // 3 latents get no gradient
    }
    for (bool rows : {true, false}) {
      torch::Tensor W = rows ? torch::randn({d_sae, d}) : torch::randn({d, d_sae});
      if (rows) W = W / W.norm(2, {1}, true);
      const torch::Tensor G = rows ? grad.dense(d_sae) : grad.dense(d_sae).t().contiguous();
      // Plain: torch::optim::Adam over three steps on the same gradient, clipped at 0.5 of its norm.
      torch::Tensor Wp = W.clone().requires_grad_(true);
      torch::optim::Adam adam({Wp}, torch::optim::AdamOptions(0.01).betas({0.9, 0.999}));
      torch::Tensor Wf = W.clone(), m = torch::zeros_like(W), v = torch::zeros_like(W);
      for (int step = 1; step <= 3; ++step) {
        torch::Tensor g = G.clone();
        if (rows) g -= (g * Wp.detach()).sum(1, true) * Wp.detach();
        const double clip = 0.5 * g.norm().item<double>();
        Wp.mutable_grad() = g;
        torch::nn::utils::clip_grad_norm_(std::vector<torch::Tensor>{Wp}, clip);
        adam.step();
        if (rows) {
          torch::NoGradGuard ng;
          Wp.div_(Wp.norm(2, {1}, true));
        }
        const double sq = sparse_grad_norm_sq(Wf, grad, rows ? LatentAxis::kRows : LatentAxis::kColumns, rows);
        EXPECT_NEAR(std::sqrt(sq), clip / 0.5, 1e-4 * clip);
        AdamStep a;
        a.step_size = static_cast<float>(0.01 / (1 - std::pow(0.9, step)));
        a.inv_sqrt_bc2 = static_cast<float>(1 / std::sqrt(1 - std::pow(0.999, step)));
        fused_sparse_adam(Wf, grad, rows ? LatentAxis::kRows : LatentAxis::kColumns, rows, clip / (std::sqrt(sq) + 1e-6), m,
                          v, a, rows);
        EXPECT_TRUE(torch::allclose(Wf, Wp.detach(), 1e-4, 1e-5)) << (rows ? "rows" : "columns") << " d " << d << " step " << step
                                                                  << " max diff " << (Wf - Wp.detach()).abs().max().item<double>();
      }
    }
  }
}

// Whole training steps of topk, batchtopk and matryoshka SAEs with AuxK active: the factored path
// (the trainer's) and dense .grad with the library's plain update give the same weights.
TEST(TopKKernels, TrainingWithFactoredGradientsEqualsThePlainUpdate) {
  for (const char* arch : {"topk", "batchtopk", "matryoshka_batchtopk"}) {
    SaeConfig c;
    c.architecture = parse_architecture(arch);
    c.d_in = 24;
    c.d_sae = 128;
    c.k = 4;
    if (c.architecture == Architecture::kMatryoshkaBatchTopK) c.matryoshka_widths = {16, 64, 128};
    torch::manual_seed(21);
    const torch::Tensor x = torch::randn({96, 24});
    const torch::Tensor dead = torch::arange(128) % 3 == 0;  // AuxK on a third of the latents
    Sae fused(c, 5), plain(c, 5);
    fused.set_sparse_gradients(true);
    auto fused_opt = adam_for(fused), plain_opt = adam_for(plain);
    for (int step = 0; step < 4; ++step) {
      const SaeOutput of = fused.forward(x, 0.0, dead);
      EXPECT_GT(of.aux.item<double>(), 0) << arch;
      sae_optimizer_step(fused, *fused_opt, of.loss, 1e-2, 0.05);  // clipping active
      EXPECT_FALSE(fused.W_enc().grad().defined()) << arch << ": W_enc's gradient stayed factored";
      // Plain: dense gradients, the library's clipping and Adam.
      const SaeOutput op = plain.forward(x, 0.0, dead);
      std::vector<torch::Tensor> params;
      for (const auto& [name, p] : plain.parameters()) {
        const_cast<torch::Tensor&>(p).mutable_grad() = torch::Tensor();
        params.push_back(p);
      }
      op.loss.backward();
      torch::NoGradGuard g;
      torch::Tensor gW = plain.W_dec().grad();
      gW.sub_((gW * plain.W_dec()).sum(1, true) * plain.W_dec());
      torch::nn::utils::clip_grad_norm_(params, 0.05);
      plain_opt->step();
      plain.W_dec().div_(plain.W_dec().norm(2, {1}, true));
    }
    expect_same_weights(fused, plain, arch);
  }
}

}  // namespace
}  // namespace saelab
