#include <gtest/gtest.h>

#include "sae/topk_kernels.h"

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

}  // namespace
}  // namespace saelab
