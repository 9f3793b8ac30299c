// The model families researchers use, built by transformers 5 with random weights, exported by
// tools/export_hf.py and checked against TransformerLens 4's TransformerBridge (tests/python/
// families.py, in the environment of python/models.lock): every TransformerLens hook name saelab
// gives the model reads the bridge's value within 1e-5 of its magnitude, so do the logits and the
// logit lens; `saelab model-init` on the bare traced file names the same points; capture, train,
// eval and steer run under a TransformerLens name and keep it.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "analysis/logit_effects.h"
#include "core/json_options.h"
#include "core/safetensors.h"
#include "models/hooked_model.h"
#include "models/model_bundle.h"
#include "sae/sae_io.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

namespace fs = std::filesystem;

std::string saelab(const std::string& args) { return test::saelab_binary() + " --threads 1 " + args + " 2>&1"; }

// |got − want| ≤ 1e-5 · max |want|: float32 sums differ in the last bits between libraries.
::testing::AssertionResult close(const torch::Tensor& got, const torch::Tensor& want) {
  return test::all_close(got.to(torch::kFloat32), want, 0, 1e-5 * want.abs().max().item<double>());
}

class Family : public ::testing::TestWithParam<std::string> {};

TEST_P(Family, MatchesTransformerLensAtEveryHookNameAndRunsTheCommandsUnderThoseNames) {
  const std::string family = GetParam();
  test::TempDir dir;
  const std::string folder = dir / "model";
  const auto made = test::run_command(std::string(SAELAB_MODELS_PYTHON) + " " SAELAB_SOURCE_DIR
                                      "/tests/python/families.py " + family + " " + folder + " " + test::gpt2_dir() + " 2>&1");
  ASSERT_EQ(made.exit_code, 0) << made.output;

  // Every name against the bridge, on a batch and a length the trace never saw.
  const std::map<std::string, torch::Tensor> ref = load_safetensors(folder + "/reference.safetensors").tensors;
  LanguageModel lm = LanguageModel::open(folder);
  HookedModel hooked(lm.module(), lm.info().hook_aliases);
  std::vector<std::string> names;
  for (auto it = lm.info().hook_aliases.begin(); it != lm.info().hook_aliases.end(); ++it) names.push_back(it.key());
  ASSERT_GE(names.size(), 16u);
  for (const char* must : {"blocks.1.hook_resid_pre", "blocks.1.hook_attn_out", "blocks.1.hook_mlp_out",
                           "blocks.1.hook_resid_post", "blocks.1.mlp.hook_post", "ln_final.hook_normalized"}) {
    EXPECT_TRUE(lm.info().hook_aliases.contains(must)) << must;
  }
  const torch::Tensor tokens = ref.at("tokens");
  torch::NoGradGuard no_grad;
  const ActivationCache cache = hooked.run_with_cache(tokens, names);
  for (const auto& name : names) {
    // transformers adds GPT-2's position embeddings [1, T, d] to the batch; the bridge records them
    // broadcast to [batch, T, d].
    const torch::Tensor& want = ref.at(name);
    const torch::Tensor got = name == "hook_pos_embed" ? cache[name].expand_as(want) : cache[name];
    EXPECT_TRUE(close(got, want)) << family << " " << name;
  }
  const torch::Tensor logits = lm.logits(tokens);
  EXPECT_TRUE(close(logits, ref.at("logits"))) << family << " logits";

  // The logit lens at the last layer is the model's output: the norm type (Gemma's 1 + w), the
  // final norm's bias and Gemma 2's logit softcap are read right.
  const Unembedding u = find_unembedding(lm);
  EXPECT_TRUE(close(logit_lens(u, cache["ln_final.hook_normalized"]), logits)) << family << " logit lens (" << u.norm << ")";
  EXPECT_EQ(u.norm, family == "gpt2" || family == "pythia" ? "layernorm"
                    : family.rfind("gemma", 0) == 0 ? "rmsnorm_plus_one" : "rmsnorm");
  EXPECT_EQ(u.softcap > 0, family == "gemma2");

  // model-init on the bare traced file infers the same points for the block names it can see.
  const auto init = test::run_command(saelab("model-init " + folder + "/model.pt --tokenizer " + test::gpt2_dir() +
                                             " --out " + (dir / "init")));
  ASSERT_EQ(init.exit_code, 0) << init.output;
  const nlohmann::json inferred = load_json_file(dir / "init/model.json", "model-init")["hook_aliases"];
  for (auto it = lm.info().hook_aliases.begin(); it != lm.info().hook_aliases.end(); ++it) {
    if (!it.value().is_string() || it.key().rfind("blocks.", 0) != 0) continue;
    EXPECT_EQ(inferred.value(it.key(), nlohmann::json()), it.value()) << family << " model-init " << it.key();
  }
  EXPECT_EQ(inferred.contains("blocks.1.hook_resid_mid"), lm.info().hook_aliases.contains("blocks.1.hook_resid_mid"));

  // capture → train → eval → steer under a TransformerLens name, which every artifact keeps.
  const std::string hook = "blocks.1.hook_mlp_out";
  const auto cap = test::run_command(saelab("capture --model " + folder + " --hooks " + hook +
                                            " --tokens 2000 --context-length 24 --shard-rows 1000 --out " + (dir / "acts")));
  ASSERT_EQ(cap.exit_code, 0) << cap.output;
  EXPECT_EQ(load_json_file(dir / ("acts/" + hook + "/manifest.json"), "manifest")["hook"], hook);
  const auto train = test::run_command(saelab("train --store " + (dir / "acts") +
                                              " --architectures topk --k 4 --expansion 2 --steps 20 --batch-size 128"
                                              " --init-rows 1000 --out " + (dir / "saes")));
  ASSERT_EQ(train.exit_code, 0) << train.output;
  const std::string sae = dir / ("saes/" + hook + "/topk-k4");
  EXPECT_EQ(load_sae(sae).metadata.hook_name, hook);
  const auto eval = test::run_command(saelab("eval --model " + folder + " --saes " + sae +
                                             " --contexts 2 --context-length 16 --out " + (dir / "eval.json") + " --plot ''"));
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  const nlohmann::json e = load_json_file(dir / "eval.json", "eval")["saes"][0];
  EXPECT_EQ(e["hook"], hook);
  EXPECT_TRUE(std::isfinite(e["loss_recovered_vs_zero"].get<double>())) << e.dump();
  const auto steer = test::run_command(saelab("steer --model " + folder + " --saes " + sae +
                                              " --feature 0 --alphas 0,4 --prompt 'The jury said' --out " + (dir / "steer.json")));
  ASSERT_EQ(steer.exit_code, 0) << steer.output;
  EXPECT_TRUE(fs::exists(dir / "steer.json"));
}

// The bundled model as TransformerLens' HookedTransformer (tools/bundled_to_tl.py, in the peers'
// environment, whose TransformerLens 3 SAELens and circuit-tracer use): the same logits, and every
// hook name of its model.json reads TransformerLens' value of that name.
TEST(BundledModel, IsAHookedTransformerWithTheSameLogitsAndHookValues) {
  test::TempDir dir;
  const std::string folder = SAELAB_SOURCE_DIR "/assets/brown-gpt";
  const auto made = test::run_command(std::string(SAELAB_PEERS_PYTHON) + " " SAELAB_SOURCE_DIR "/tools/bundled_to_tl.py " +
                                      folder + " --reference " + (dir / "ref.safetensors") + " 2>&1");
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const std::map<std::string, torch::Tensor> ref = load_safetensors(dir / "ref.safetensors").tensors;
  LanguageModel lm = LanguageModel::open(folder);
  HookedModel hooked(lm.module(), lm.info().hook_aliases);
  std::vector<std::string> names;
  for (auto it = lm.info().hook_aliases.begin(); it != lm.info().hook_aliases.end(); ++it) names.push_back(it.key());
  EXPECT_EQ(names.size(), 4u * 7 + 3);
  torch::NoGradGuard no_grad;
  const ActivationCache cache = hooked.run_with_cache(ref.at("tokens"), names);
  for (const auto& name : names) EXPECT_TRUE(close(cache[name], ref.at(name))) << name;
  EXPECT_TRUE(close(lm.logits(ref.at("tokens")), ref.at("logits")));
  EXPECT_TRUE(close(logit_lens(find_unembedding(lm), cache["ln_final.hook_normalized"]), ref.at("logits")));
}

INSTANTIATE_TEST_SUITE_P(Transformers, Family,
                         ::testing::Values("gpt2", "pythia", "llama3", "gemma2", "gemma3", "qwen2.5", "qwen3", "olmo2"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           std::string n = p.param;
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n;
                         });

}  // namespace
}  // namespace saelab
