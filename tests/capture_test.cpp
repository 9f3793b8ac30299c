// Capturing activations (models/capture.h) from a Hugging Face-style traced model.
#include <gtest/gtest.h>

#include "core/activation_store.h"
#include "core/files.h"
#include "core/json_options.h"
#include "models/capture.h"
#include "sae/trainer.h"
#include "models/hooked_model.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

struct HfModel {
  test::TempDir dir;
  HfModel() {
    const auto r = test::run_command(SAELAB_TEST_PYTHON " " SAELAB_SOURCE_DIR "/tests/python/make_hf_gpt2.py " +
                                     dir.path().string() + " " + test::gpt2_dir());
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }
  std::string path() const { return dir.path().string(); }
};

TEST(Capture, StoresExactlyWhatTheHookedModelComputes) {
  HfModel model;
  test::TempDir out;
  LanguageModel lm = LanguageModel::open(model.path());
  CaptureOptions o;
  o.hooks = {"blocks.1.hook_resid_pre", "transformer.ln_f.output"};
  o.tokens = 300;
  o.context_length = 16;
  o.batch_size = 4;
  o.shard_rows = 64;
  o.split = "validation";
  const CaptureResult r = capture_activations(lm, o, test::cache_dir(), out.path().string());
  EXPECT_EQ(r.rows, 300);
  // Each store is named as the hook was given: the alias, and the point without one.
  EXPECT_TRUE(std::filesystem::exists(out / "transformer.ln_f.output/manifest.json"));
  const ActivationStore s = ActivationStore::open(out / "blocks.1.hook_resid_pre");
  EXPECT_EQ(s.manifest().hook, "blocks.1.hook_resid_pre");
  EXPECT_EQ(s.rows(), 300);
  EXPECT_EQ(s.d(), 64);
  EXPECT_EQ(s.manifest().model_sha256, sha256_file(model.path() + "/model.pt"));
  // Context 3 (rows 45..59: BOS left out, 15 rows per context) recomputed directly.
  const StoreRows shard0 = s.load_shard(0);
  torch::Tensor tokens = torch::empty({1, 16}, torch::kInt64);
  tokens[0][0] = lm.tokenizer().bos_id();
  for (int64_t p = 1; p < 16; ++p) tokens[0][p] = shard0.token[45 + p - 1];
  EXPECT_EQ(shard0.context[45].item<int64_t>(), 3);
  EXPECT_EQ(shard0.position[45].item<int32_t>(), 1);
  HookedModel hooked(lm.module(), lm.info().hook_aliases);
  HookScope scope(hooked);
  scope.capture("transformer.h.1.input");
  torch::NoGradGuard g;
  hooked.forward(tokens);
  // Captured in batches of 4, recomputed alone: the matmuls may round differently.
  EXPECT_TRUE(test::all_close(shard0.acts.narrow(0, 45, 15), scope.captured("transformer.h.1.input")[0].narrow(0, 1, 15),
                              1e-5, 0));
}

TEST(Capture, ResumesAfterAKillWithTheSameStoreAsAnUninterruptedRun) {
  HfModel model;
  test::TempDir out;
  const std::string base = test::saelab_binary() + " --threads 1 capture --model " + model.path() +
                           " --hooks blocks.0.hook_resid_pre,blocks.2.hook_resid_post --tokens 150000"
                           " --context-length 32 --batch-size 2 --shard-rows 4000 --out ";
  const auto full = test::run_command(base + (out / "full"));
  ASSERT_EQ(full.exit_code, 0) << full.output;

  // The same capture, killed (SIGKILL, by the fault point) right after a store lists its second
  // shard, then rerun.
  const auto killed = test::run_command("SAELAB_FAULT=shard_listed:2 " + base + (out / "killed"));
  ASSERT_NE(killed.exit_code, 0) << "the capture was not killed: " << killed.output;
  const json m = json::parse(read_file(out / "killed/blocks.2.hook_resid_post/manifest.json", "manifest"));
  EXPECT_FALSE(m["complete"].get<bool>());
  EXPECT_LE(m["rows"].get<int64_t>(), 8000);
  EXPECT_THROW(ActivationStore::open(out / "killed/blocks.2.hook_resid_post"), c10::Error);
  const auto resumed = test::run_command(base + (out / "killed"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  for (const std::string hook : {"blocks.0.hook_resid_pre", "blocks.2.hook_resid_post"}) {
    // The manifests are byte for byte the same: row counts, shard list and the norm sum (it grows
    // by whole shards, so the resumed run adds the same numbers in the same order).
    EXPECT_EQ(read_file(out / ("killed/" + hook + "/manifest.json"), "manifest"),
              read_file(out / ("full/" + hook + "/manifest.json"), "manifest"));
    const ActivationStore a = ActivationStore::open(out / ("full/" + hook));
    const ActivationStore b = ActivationStore::open(out / ("killed/" + hook));
    ASSERT_EQ(a.shard_count(), b.shard_count());
    for (int64_t i = 0; i < a.shard_count(); ++i) {
      const StoreRows x = a.load_shard(i), y = b.load_shard(i);
      EXPECT_TRUE(torch::equal(x.acts, y.acts)) << hook << " shard " << i;
      EXPECT_TRUE(torch::equal(x.token, y.token)) << hook << " shard " << i;
      EXPECT_TRUE(torch::equal(x.context, y.context)) << hook << " shard " << i;
    }
  }
}

TEST(Capture, RefusesAnUnknownHookAndAContextLongerThanTheModel) {
  HfModel model;
  test::TempDir out;
  LanguageModel lm = LanguageModel::open(model.path());
  CaptureOptions o;
  o.hooks = {"transformer.h.9.input"};
  o.tokens = 10;
  EXPECT_THROW(capture_activations(lm, o, test::cache_dir(), out.path().string()), c10::Error);
  EXPECT_FALSE(fs::exists(out / "transformer.h.9.input/manifest.json"));
  o.hooks = {"transformer.h.0.input"};
  o.context_length = 64;
  EXPECT_THROWS_WITH(capture_activations(lm, o, test::cache_dir(), out.path().string()),
                     "context_length 64 is longer than the model supports (32)");
}

// The defaults agree: `saelab train` with its defaults reads `saelab capture`'s default store once
// (issue 34: 100k tokens against 2,000 x 4,096 rows was 82 passes over every row).
TEST(Capture, TheDefaultCaptureIsOnePassOfTheDefaultTraining) {
  const SaeTrainOptions train;
  EXPECT_EQ(CaptureOptions{}.tokens, train.steps * train.batch_size);
}

}  // namespace
}  // namespace saelab
