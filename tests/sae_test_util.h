// Helpers of the SAE kernel tests (sae_kernels_test.cpp, sparse_codes_test.cpp).
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "sae/sae.h"
#include "sae/sparse_grad.h"

namespace saelab {

// Adam at lr 1e-2 over an SAE's parameters (the training-equivalence tests).
inline std::unique_ptr<torch::optim::Adam> adam_for(const Sae& s) {
  std::vector<torch::Tensor> params;
  for (const auto& [name, p] : s.parameters()) params.push_back(p);
  return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(1e-2).betas({0.9, 0.999}));
}

// The parameters of an SAE as float64 (the class builds float32 ones), for float64 references.
inline void to_float64(Sae& sae) {
  for (const auto& [name, p] : sae.parameters()) const_cast<torch::Tensor&>(p).set_data(p.detach().to(torch::kFloat64));
}

// The whole gradient of a parameter: .grad plus what its sink recorded.
inline torch::Tensor full_grad(Sae& sae, const std::string& name) {
  const torch::Tensor& p = sae.param(name);
  torch::Tensor g = p.grad().defined() ? p.grad().clone() : torch::zeros_like(p);
  if (SparseGradSinks* s = sae.sparse_gradients()) {
    if (name == "W_enc" && !s->W_enc.empty()) g += s->W_enc.dense(p.size(1)).t();
    if (name == "W_dec" && !s->W_dec.empty()) g += s->W_dec.dense(p.size(0), p);
  }
  return g;
}

// Every parameter of `a` equals `b`'s to float32 training tolerance.
inline void expect_same_weights(const Sae& a, const Sae& b, const std::string& what) {
  for (const auto& [name, p] : b.parameters()) {
    const torch::Tensor f = a.param(name).detach(), q = p.detach();
    EXPECT_TRUE(torch::allclose(f, q, 1e-4, 1e-5)) << what << " " << name << " max diff " << (f - q).abs().max().item<double>();
  }
}

}  // namespace saelab
