// What the tests against the peers' own libraries share (tests/peers_test.cpp,
// tests/transcoder_peers_test.cpp): running tests/python/peers.py in the pinned environment of
// python/peers.lock, the bundled model's rows it encodes, what it wrote, and the comparisons (L0
// exact; values within 1e-5 of the magnitude compared).
#pragma once
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "core/json_options.h"
#include "core/safetensors.h"
#include "tests/analysis_fixture.h"
#include "tests/test_config.h"

namespace saelab::test::peer {

inline constexpr const char* kHook = "blocks.1.hook_resid_pre";

inline std::string peers(const std::string& args) {
  return std::string(SAELAB_PEERS_PYTHON) + " " SAELAB_SOURCE_DIR "/tests/python/peers.py " + args + " 2>&1";
}

inline void run_or_fail(const std::string& command) {
  const test::CommandResult r = test::run_command(command);
  ASSERT_EQ(r.exit_code, 0) << command << "\n" << r.output;
}

// The bundled model's activations at kHook, one row per token: [rows, d_model].
struct Rows {
  test::TempDir dir;
  torch::Tensor acts;
  std::string file;
  Rows() {
    Fixture& f = fixture();
    torch::NoGradGuard no_grad;
    acts = f.hooked.run_with_cache(f.eval_set.tokens, {kHook})[kHook].reshape({-1, f.d()}).contiguous();
    file = dir / "acts.safetensors";
    save_safetensors(file, {{"acts", acts}});
  }
};

inline Rows& rows() {
  static Rows r;
  return r;
}

// What a peer command wrote: expected.json and reference.safetensors under `out`.
struct PeerOutput {
  nlohmann::json expected;
  std::map<std::string, torch::Tensor> reference;
  explicit PeerOutput(const std::string& out) {
    expected = load_json_file(out + "/expected.json", "peer expectations");
    reference = load_safetensors(out + "/reference.safetensors").tensors;
  }
};

// L0 exact, values within 1e-5 of the magnitude compared.
inline void expect_same_codes(const torch::Tensor& got, const torch::Tensor& want) {
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_EQ((got != 0).sum().item<int64_t>(), (want != 0).sum().item<int64_t>());
  EXPECT_TRUE(torch::equal(got != 0, want != 0));
  EXPECT_TRUE(test::all_close(got.to(torch::kFloat64), want.to(torch::kFloat64), 1e-5,
                              1e-6 * want.abs().max().item<double>()));
}

inline void expect_same_values(const torch::Tensor& got, const torch::Tensor& want) {
  EXPECT_TRUE(test::all_close(got.to(torch::kFloat64), want.to(torch::kFloat64), 1e-5,
                              1e-6 * want.abs().max().item<double>()));
}

}  // namespace saelab::test::peer
