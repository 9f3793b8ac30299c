#include <gtest/gtest.h>

#include <fstream>

#include "core/json_options.h"
#include "models/gpt.h"
#include "models/hooked_model.h"
#include "models/model_bundle.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

using torch::indexing::Slice;

GptConfig config() {
  GptConfig c;
  c.vocab_size = 97;
  c.d_model = 32;
  c.n_layers = 3;
  c.n_heads = 4;
  c.context_length = 16;
  return c;
}

struct Fixture {
  torch::jit::Module module = build_gpt(config(), 11);
  HookedModel hooked{module, residual_aliases("blocks.", 3)};
  torch::Tensor tokens = torch::randint(0, 97, {2, 10}, torch::kInt64);
  torch::Tensor plain() {
    torch::NoGradGuard g;
    return module.forward({tokens}).toTensor();
  }
  torch::Tensor run() {
    torch::NoGradGuard g;
    return hooked.forward(tokens).toTensor();
  }
};

TEST(HookedModel, OffersAnInputAndOutputPointPerModuleCallInOrder) {
  Fixture f;
  const auto& p = f.hooked.hook_points();
  auto index = [&](const std::string& n) {
    auto it = std::find(p.begin(), p.end(), n);
    EXPECT_NE(it, p.end()) << n;
    return it - p.begin();
  };
  for (const char* n : {"embed.input", "embed.output", "pos_embed.output", "blocks.0.input", "blocks.0.ln1.output",
                        "blocks.0.attn.output", "blocks.0.mlp.input", "blocks.2.output", "ln_final.output",
                        "unembed.input", "unembed.output"}) {
    index(n);
  }
  EXPECT_LT(index("blocks.0.input"), index("blocks.0.attn.input"));
  EXPECT_LT(index("blocks.0.output"), index("blocks.1.input"));
  EXPECT_LT(index("blocks.2.output"), index("unembed.output"));
  EXPECT_EQ(f.hooked.resolve("blocks.1.hook_resid_pre"), "blocks.1.input");
}

TEST(HookedModel, TransformerLensNamesIncludingComputedNormalizedOnesReadTheRightTensors) {
  Fixture f;
  HookedModel tl(f.module, gpt_hook_aliases(3));
  torch::NoGradGuard g;
  const ActivationCache c = tl.run_with_cache(f.tokens, {"blocks.1.ln2.input", "blocks.1.hook_resid_mid", "blocks.1.ln2.hook_normalized",
                                                         "blocks.1.ln2.output", "blocks.1.hook_mlp_out", "blocks.1.mlp.output"});
  EXPECT_TRUE(torch::equal(c["blocks.1.hook_resid_mid"], c["blocks.1.ln2.input"]));
  EXPECT_TRUE(torch::equal(c["blocks.1.hook_mlp_out"], c["blocks.1.mlp.output"]));
  // hook_normalized: the LayerNorm without its affine map, in float64 by hand.
  const torch::Tensor x = c["blocks.1.ln2.input"].to(torch::kFloat64);
  const torch::Tensor centred = x - x.mean(-1, true);
  const torch::Tensor want = centred / (centred.pow(2).mean(-1, true) + 1e-5).sqrt();
  EXPECT_TRUE(test::all_close(c["blocks.1.ln2.hook_normalized"].to(torch::kFloat64), want, 1e-5, 1e-6));
  // Its affine map gives the norm's output back: the weight and bias are the module's own.
  const torch::Tensor w = f.module.attr("blocks").toModule().attr("1").toModule().attr("ln2").toModule().attr("weight").toTensor();
  const torch::Tensor b = f.module.attr("blocks").toModule().attr("1").toModule().attr("ln2").toModule().attr("bias").toTensor();
  EXPECT_TRUE(test::all_close(c["blocks.1.ln2.hook_normalized"] * w + b, c["blocks.1.ln2.output"], 1e-5, 1e-6));

  // Names: an alias is kept, a point takes its TransformerLens alias, and either reads the same.
  EXPECT_EQ(tl.preferred_name("blocks.2.input"), "blocks.2.hook_resid_pre");
  EXPECT_EQ(tl.preferred_name("blocks.2.hook_resid_pre"), "blocks.2.hook_resid_pre");
  EXPECT_EQ(tl.preferred_name("blocks.2.ln1.output"), "blocks.2.ln1.output");
  EXPECT_EQ(tl.preferred_name("blocks.1.ln2.input"), "blocks.1.hook_resid_mid");  // not the computed one
  EXPECT_TRUE(tl.same_hook("blocks.1.hook_resid_mid", "blocks.1.ln2.input"));
  EXPECT_FALSE(tl.same_hook("blocks.1.ln2.hook_normalized", "blocks.1.ln2.input"));
  // A computed name is read, never written.
  HookScope scope(tl);
  EXPECT_THROWS_WITH(scope.replace("blocks.1.ln2.hook_normalized", [](const torch::Tensor& t) { return t; }),
                     "hook 'blocks.1.ln2.hook_normalized' is computed from blocks.1.ln2.input (layernorm without its "
                     "weight); it can be captured but not replaced or steered");
}

TEST(HookedModel, RefusesAComputedAliasThatIsNotUnderstood) {
  Fixture f;
  EXPECT_THROWS_WITH(HookedModel(f.module, nlohmann::json{{"x", {{"point", "blocks.0.input"}, {"normalize", "batchnorm"}, {"eps", 1e-5}}}}),
                     "hook alias 'x': normalize must be \"layernorm\" or \"rmsnorm\"");
  EXPECT_THROWS_WITH(HookedModel(f.module, nlohmann::json{{"x", {{"point", "blocks.0.input"}, {"normalize", "rmsnorm"}, {"eps", 0}}}}),
                     "hook alias 'x': eps must be a number in (0, 1)");
  EXPECT_THROWS_WITH(HookedModel(f.module, nlohmann::json{{"x", {{"point", "blocks.9.input"}, {"normalize", "rmsnorm"}, {"eps", 1e-6}}}}),
                     "hook alias 'x' names 'blocks.9.input', which is not a hook point of this model");
}

TEST(HookedModel, RunWithCacheHoldsWhatAFullCapturedPassSeesAndHookShapeGivesWidths) {
  Fixture f;
  torch::Tensor full_resid, full_mlp;
  {
    HookScope scope(f.hooked);
    scope.capture("blocks.1.input");
    scope.capture("blocks.0.mlp.output");
    f.run();
    full_resid = scope.captured("blocks.1.input");
    full_mlp = scope.captured("blocks.0.mlp.output");
  }
  const ActivationCache cache = f.hooked.run_with_cache(f.tokens, {"blocks.1.hook_resid_pre", "blocks.0.mlp.output"});
  EXPECT_TRUE(torch::equal(cache["blocks.1.hook_resid_pre"], full_resid));
  EXPECT_TRUE(torch::equal(cache["blocks.0.mlp.output"], full_mlp));
  EXPECT_FALSE(cache["blocks.1.hook_resid_pre"].requires_grad());
  EXPECT_THROWS_WITH(cache["blocks.1.input"], "the activation cache holds no 'blocks.1.input'");
  EXPECT_EQ(f.hooked.hook_shape("blocks.0.input"), (std::vector<int64_t>{1, 2, 32}));
  EXPECT_EQ(f.hooked.hook_shape("unembed.output"), (std::vector<int64_t>{1, 2, 97}));
  EXPECT_THROWS_WITH(f.hooked.hook_shape("blocks.9.input"), "unknown hook point 'blocks.9.input'");
  // The hooks are gone afterwards: a plain pass is the module's.
  EXPECT_TRUE(torch::equal(f.run(), f.plain()));
}

TEST(HookedModel, WithoutHooksGivesBitwiseTheModulesLogits) {
  Fixture f;
  EXPECT_TRUE(torch::equal(f.run(), f.plain()));
}

TEST(HookedModel, CaptureEqualsADirectComputation) {
  Fixture f;
  HookScope scope(f.hooked);
  scope.capture("blocks.1.hook_resid_pre");
  scope.capture("blocks.0.ln1.output");
  f.run();
  torch::NoGradGuard g;
  auto sub = [&](const std::string& path) {
    torch::jit::Module m = f.module;
    size_t start = 0;
    while (start <= path.size()) {
      const size_t dot = path.find('.', start);
      m = m.attr(path.substr(start, dot - start)).toModule();
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    return m;
  };
  const torch::Tensor x0 = sub("embed").forward({f.tokens}).toTensor() + sub("pos_embed").forward({f.tokens}).toTensor();
  const torch::Tensor x1 = sub("blocks.0").forward({x0}).toTensor();
  EXPECT_TRUE(torch::allclose(scope.captured("blocks.1.input"), x1, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(scope.captured("blocks.0.ln1.output"), sub("blocks.0.ln1").forward({x0}).toTensor(),
                              1e-6, 1e-6));
  scope.check_all_fired();
}

TEST(HookedModel, ReplacingWithIdentityLeavesLogitsBitwiseUnchangedAndZerosChangeThem) {
  Fixture f;
  const torch::Tensor clean = f.plain();
  {
    HookScope scope(f.hooked);
    scope.replace("blocks.1.input", [](const torch::Tensor& x) { return x; });
    EXPECT_TRUE(torch::equal(f.run(), clean));
  }
  HookScope scope(f.hooked);
  scope.replace("blocks.1.input", [](const torch::Tensor& x) { return torch::zeros_like(x); });
  EXPECT_GT((f.run() - clean).abs().max().item<double>(), 1e-3);
}

TEST(HookedModel, SteeringAddsExactlyTheVector) {
  Fixture f;
  torch::Tensor before;
  {
    HookScope scope(f.hooked);
    scope.capture("blocks.0.output");
    f.run();
    before = scope.captured("blocks.0.output");
  }
  const torch::Tensor v = torch::randn({32});
  HookScope scope(f.hooked);
  scope.add("blocks.0.output", v);
  scope.capture("blocks.1.input");  // the next block sees the steered stream
  f.run();
  EXPECT_TRUE(torch::equal(scope.captured("blocks.1.input"), before + v));
}

TEST(HookedModel, StopsEarlyWithTheSameActivations) {
  Fixture f;
  torch::Tensor full;
  {
    HookScope scope(f.hooked);
    scope.capture("blocks.1.output");
    f.run();
    full = scope.captured("blocks.1.output");
  }
  HookScope scope(f.hooked);
  scope.capture("blocks.1.output");
  scope.stop_after_last_hook();
  torch::NoGradGuard g;
  const c10::IValue out = f.hooked.forward(f.tokens);
  EXPECT_TRUE(out.isNone());
  EXPECT_TRUE(scope.stopped());
  EXPECT_TRUE(torch::equal(scope.captured("blocks.1.output"), full));
}

TEST(HookedModel, AnUnknownNameListsTheClosestValidOnes) {
  Fixture f;
  EXPECT_THROWS_WITH(f.hooked.resolve("blocks.1.inptu"),
                     "unknown hook point 'blocks.1.inptu' (closest: blocks.1.input");
}

TEST(HookedModel, AHookOnAModuleThatNeverRunsIsReportedAfterTheForwardPass) {
  auto leaf = [](const std::string& type, const std::string& body) {
    torch::jit::Module m("__torch__.test." + type);
    m.define("def forward(self, x: Tensor) -> Tensor:\n    return " + body + "\n");
    return m;
  };
  torch::jit::Module root("__torch__.test.Branchy");
  root.register_module("rare", leaf("Rare", "x * 2.0"));
  root.register_module("common", leaf("Common", "x + 1.0"));
  root.define(
      "def forward(self, x: Tensor) -> Tensor:\n"
      "    if x.size(1) > 100:\n"
      "        x = self.rare.forward(x)\n"
      "    return self.common.forward(x)\n");
  HookedModel hooked(root);
  const auto& p = hooked.hook_points();
  EXPECT_NE(std::find(p.begin(), p.end(), "rare.output"), p.end());  // found inside the if
  HookScope scope(hooked);
  scope.capture("rare.output");
  scope.capture("common.output");
  torch::NoGradGuard g;
  const torch::Tensor y = hooked.forward(torch::ones({1, 5})).toTensor();
  EXPECT_TRUE(torch::equal(y, torch::full({1, 5}, 2.0)));
  EXPECT_THROWS_WITH(scope.check_all_fired(), "hook point(s) rare.output never ran during the forward pass");
}

std::vector<float> read_floats(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

TEST(HookedModel, CapturesAHuggingFaceStyleTracedModelAsPyTorchComputesIt) {
  test::TempDir dir;
  const auto made = test::run_command(SAELAB_TEST_PYTHON " " SAELAB_SOURCE_DIR "/tests/python/make_hf_gpt2.py " +
                                      dir.path().string() + " " + test::gpt2_dir());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const json shapes = load_json_file(dir / "shapes.json", "shapes");
  LanguageModel lm = LanguageModel::open(dir.path().string());
  HookedModel hooked(lm.module(), lm.info().hook_aliases);
  for (const char* n : {"transformer.wte.output", "transformer.h.0.input", "transformer.h.0.attn.output",
                        "transformer.h.2.output", "transformer.ln_f.output", "lm_head.output"}) {
    const auto& p = hooked.hook_points();
    EXPECT_NE(std::find(p.begin(), p.end(), n), p.end()) << n;
  }
  const auto tok_shape = shapes["tokens"].get<std::vector<int64_t>>();
  std::ifstream in(dir / "tokens.bin", std::ios::binary);
  torch::Tensor tokens = torch::empty(tok_shape, torch::kInt64);
  in.read(static_cast<char*>(tokens.data_ptr()), tokens.numel() * sizeof(int64_t));
  ASSERT_EQ(tokens.size(1), 12);  // traced at 8

  HookScope scope(hooked);
  for (int i = 0; i < 3; ++i) scope.capture("blocks." + std::to_string(i) + ".hook_resid_pre");
  scope.capture("transformer.ln_f.output");
  scope.capture("transformer.h.1.output");  // element 0 of the block's tuple
  torch::NoGradGuard g;
  const torch::Tensor logits = lm.logits_from_output(hooked.forward(tokens));
  auto expect_close = [&](const torch::Tensor& got, const std::string& file) {
    const auto ref = read_floats(dir / (file + ".bin"));
    const torch::Tensor r = torch::from_blob(const_cast<float*>(ref.data()), got.sizes(), torch::kFloat32);
    ASSERT_EQ(got.numel(), static_cast<int64_t>(ref.size())) << file;
    // The same operations in PyTorch and LibTorch, with other thread counts: last-bit differences.
    EXPECT_TRUE(test::all_close(got, r, 1e-5, 0)) << file;
  };
  for (int i = 0; i < 3; ++i) {
    expect_close(scope.captured("transformer.h." + std::to_string(i) + ".input"), "resid_pre_" + std::to_string(i));
  }
  expect_close(scope.captured("transformer.h.1.output"), "resid_pre_2");
  expect_close(scope.captured("transformer.ln_f.output"), "ln_f");
  expect_close(logits, "logits");
}

}  // namespace
}  // namespace saelab
