#include <gtest/gtest.h>

#include "core/files.h"
#include "core/json_options.h"
#include "models/generate.h"
#include "models/gpt.h"
#include "models/model_bundle.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

GptConfig small_config(int64_t vocab = 64) {
  GptConfig c;
  c.vocab_size = vocab;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.context_length = 16;
  return c;
}

torch::Tensor run(torch::jit::Module& m, const torch::Tensor& tokens) {
  torch::NoGradGuard no_grad;
  return m.forward({tokens}).toTensor();
}

TEST(Gpt, MapsTokensToLogitsOfTheRightShape) {
  auto m = build_gpt(small_config(), 1);
  const torch::Tensor tokens = torch::randint(0, 64, {3, 10}, torch::kInt64);
  const torch::Tensor logits = run(m, tokens);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{3, 10, 64}));
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
}

TEST(Gpt, ChangingALaterTokenNeverChangesEarlierLogits) {
  auto m = build_gpt(small_config(), 2);
  torch::Tensor a = torch::randint(0, 64, {2, 16}, torch::kInt64);
  torch::Tensor b = a.clone();
  b.index_put_({torch::indexing::Slice(), 9}, (a.index({torch::indexing::Slice(), 9}) + 1) % 64);
  const torch::Tensor la = run(m, a), lb = run(m, b);
  using torch::indexing::Slice;
  EXPECT_TRUE(test::all_close(la.index({Slice(), Slice(0, 9)}), lb.index({Slice(), Slice(0, 9)}), 1e-5, 0));
  EXPECT_GT((la.index({Slice(), Slice(9)}) - lb.index({Slice(), Slice(9)})).abs().max().item<double>(), 1e-4);
}

TEST(Gpt, TiesTheUnembeddingToTheEmbedding) {
  auto m = build_gpt(small_config(), 3);
  EXPECT_EQ(m.attr("embed").toModule().attr("weight").toTensor().data_ptr(),
            m.attr("unembed").toModule().attr("weight").toTensor().data_ptr());
  const auto params = unique_parameters(m);
  int64_t total = 0;
  for (const auto& [name, t] : params) {
    EXPECT_NE(name, "unembed.weight");
    total += t.numel();
  }
  // embed 64x32, pos 16x32, per block: 2 LN (2x2x32) + qkv (96x32 + 96) + O (32x32 + 32)
  // + MLP (128x32 + 128 + 32x128 + 32), final LN 2x32.
  const int64_t block = 4 * 32 + 96 * 32 + 96 + 32 * 32 + 32 + 128 * 32 + 128 + 32 * 128 + 32;
  EXPECT_EQ(total, 64 * 32 + 16 * 32 + 2 * block + 2 * 32);
}

TEST(Gpt, SaveAndLoadGiveIdenticalLogitsInCppAndPython) {
  test::TempDir dir;
  auto m = build_gpt(small_config(), 4);
  m.eval();
  m.save(dir / "model.pt");
  auto loaded = load_torchscript(dir / "model.pt");
  loaded.eval();
  const torch::Tensor tokens = torch::randint(0, 64, {2, 12}, torch::kInt64);
  const torch::Tensor logits = run(m, tokens);
  EXPECT_TRUE(torch::equal(logits, run(loaded, tokens)));
  EXPECT_EQ(loaded.attr("embed").toModule().attr("weight").toTensor().data_ptr(),
            loaded.attr("unembed").toModule().attr("weight").toTensor().data_ptr());

  write_file_atomic(dir / "tokens.bin",
                    std::string(static_cast<const char*>(tokens.data_ptr()), tokens.numel() * sizeof(int64_t)));
  write_file_atomic(dir / "logits.bin",
                    std::string(static_cast<const char*>(logits.data_ptr()), logits.numel() * sizeof(float)));
  write_file_atomic(dir / "shape.json", json{{"tokens", tokens.sizes().vec()},
                                             {"logits", logits.sizes().vec()},
                                             {"n_heads", 4}}.dump());
  const auto r = test::run_command(SAELAB_TEST_PYTHON " " SAELAB_SOURCE_DIR "/tests/python/check_gpt.py " +
                                   dir.path().string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("layers 2;"), std::string::npos) << r.output;
}

TEST(GptConfig, RejectsBadValuesNamingTheField) {
  GptConfig c = small_config();
  c.n_heads = 5;
  EXPECT_THROWS_WITH(c.validate(), "model.n_heads must divide d_model (got n_heads 5, d_model 32)");
  EXPECT_THROW(GptConfig::from_json(json{{"d_modle", 3}}, "cfg"), c10::Error);
}

TEST(LanguageModel, OpensAFolderAndChecksTheContextLength) {
  test::TempDir dir;
  const GptConfig c = small_config(50257);
  auto m = build_gpt(c, 5);
  test::write_model_folder(m, c, dir.path().string());
  LanguageModel lm = LanguageModel::open(dir.path().string());
  EXPECT_EQ(lm.info().hook_aliases["blocks.1.hook_resid_pre"], "blocks.1.input");
  const torch::Tensor tokens = torch::randint(0, 50257, {1, 16}, torch::kInt64);
  EXPECT_TRUE(torch::equal(lm.logits(tokens), run(m, tokens)));
  EXPECT_THROWS_WITH(lm.logits(torch::zeros({1, 17}, torch::kInt64)),
                     "input of 17 tokens is longer than the model's context length 16");
  EXPECT_THROWS_WITH(prompt_ids(lm, std::string(40, 'a') + " b c d e f g h i j k l m n o p q r"),
                     "is longer than the model's context length 16");
}

TEST(LanguageModel, FindsLogitsInTupleAndDictOutputs) {
  test::TempDir dir;
  const GptConfig c = small_config(50257);
  auto inner = build_gpt(c, 6);
  const torch::Tensor tokens = torch::randint(0, 50257, {2, 8}, torch::kInt64);
  const torch::Tensor expected = run(inner, tokens);
  for (const std::string kind : {"tuple", "dict"}) {
    torch::jit::Module wrapper("__torch__.test.Wrapper" + kind);
    wrapper.register_module("inner", inner);
    if (kind == "tuple") {
      wrapper.define("def forward(self, tokens: Tensor) -> Tuple[Tensor, Tensor]:\n"
                     "    return (tokens, self.inner.forward(tokens))\n");
    } else {
      wrapper.define("def forward(self, tokens: Tensor) -> Dict[str, Tensor]:\n"
                     "    return {'logits': self.inner.forward(tokens), 'tokens': tokens}\n");
    }
    const std::string folder = dir / kind;
    ModelInfo info = test::write_model_folder(wrapper, c, folder);
    info.logits.output = kind;
    info.logits.index = 1;
    info.logits.key = "logits";
    write_file_atomic(folder + "/model.json", info.to_json().dump());
    LanguageModel lm = LanguageModel::open(folder);
    EXPECT_TRUE(torch::equal(lm.logits(tokens), expected)) << kind;

    info.logits.index = 0;
    info.logits.key = "hidden";
    write_file_atomic(folder + "/model.json", info.to_json().dump());
    // A model.json that points at the wrong output fails when the model is opened (its probe pass).
    const std::string expected_error = kind == "tuple" ? "logits must have shape [batch, pos, vocab] (got [1, 16])"
                                                       : "the model's output dict has no key 'hidden'";
    EXPECT_THROWS_WITH(LanguageModel::open(folder), "fails on 16 tokens", expected_error) << kind;
  }
}

TEST(LanguageModel, RejectsAModelJsonWithoutLogitsOrWithUnknownKeys) {
  test::TempDir dir;
  const GptConfig c = small_config(50257);
  auto m = build_gpt(c, 7);
  ModelInfo info = test::write_model_folder(m, c, dir.path().string());
  json j = info.to_json();
  j.erase("logits");
  write_file_atomic(dir / "model.json", j.dump());
  EXPECT_THROWS_WITH(LanguageModel::open(dir.path().string()), "model.json: key 'logits' is missing");
  j = info.to_json();
  j["d_modle"] = 3;
  write_file_atomic(dir / "model.json", j.dump());
  EXPECT_THROWS_WITH(LanguageModel::open(dir.path().string()), "unknown key 'd_modle'");
  write_file_atomic(dir / "model.json", info.to_json().dump());
  write_file_atomic(dir / "model.pt", "not a zip archive");
  EXPECT_THROWS_WITH(LanguageModel::open(dir.path().string()),
                     "model file '" + (dir / "model.pt") + "' is damaged: no zip end-of-central-directory record");
}

TEST(Generate, IsDeterministicForASeedAndGreedyAtTemperatureZero) {
  test::TempDir dir;
  const GptConfig c = small_config(50257);
  auto m = build_gpt(c, 8);
  test::write_model_folder(m, c, dir.path().string());
  LanguageModel lm = LanguageModel::open(dir.path().string());
  const auto prompt = prompt_ids(lm, "Hello");
  EXPECT_EQ(prompt, (std::vector<int64_t>{50256, 15496}));
  GenerateOptions o;
  o.max_new_tokens = 30;  // longer than the context: the window slides
  o.stop_at_eos = false;
  o.seed = 3;
  const auto a = generate(lm, prompt, o), b = generate(lm, prompt, o);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 30u);
  o.temperature = 0;
  const auto greedy = generate(lm, prompt, o);
  // The first greedy token is the argmax of the prompt's last logits.
  const torch::Tensor logits = lm.logits(torch::tensor(prompt, torch::kInt64).unsqueeze(0));
  EXPECT_EQ(greedy[0], logits[0][-1].argmax().item<int64_t>());
}

}  // namespace
}  // namespace saelab
