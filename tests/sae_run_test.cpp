#include <gtest/gtest.h>

#include "core/files.h"
#include "core/json_options.h"
#include "core/safetensors.h"
#include "sae/sae_io.h"
#include "sae/train_run.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

// Activations with sparse structure: 2400 rows of 16 dims from 32 random directions.
torch::Tensor synthetic_acts(uint64_t seed) {
  torch::Generator gen = at::detail::createCPUGenerator(seed);
  const torch::Tensor dirs = torch::randn({32, 16}, gen);
  const torch::Tensor active = (torch::rand({2400, 32}, gen) < 0.1).to(torch::kFloat32);
  return torch::matmul(active * (torch::rand({2400, 32}, gen) + 0.5), dirs) + 0.3;
}

SaeRunOptions small_run(const std::string& store, const std::string& out) {
  SaeRunOptions o;
  o.store = store;
  o.out = out;
  o.saes = SaeGridOptions{{"standard", "gated", "topk", "batchtopk", "jumprelu"}, {4}, {0.3}, 2}.specs();
  o.train.steps = 40;
  o.train.batch_size = 128;
  o.train.lr_warmup_steps = 5;
  o.train.l1_warmup_steps = 10;
  o.train.dead_window = 1000;  // latents die within the run, so AuxK and the counters are exercised
  o.init_rows = 500;
  o.buffer_shards = 2;
  o.checkpoint_every = 5;
  return o;
}

TEST(SaeRun, AResumedRunEndsWithTheSameWeightsMetricsAndDensitiesAsAnUninterruptedOne) {
  test::TempDir dir;
  test::write_activation_store(dir / "acts/blocks.0.input", synthetic_acts(1), "blocks.0.input", 300);
  test::write_activation_store(dir / "acts/blocks.1.input", synthetic_acts(2) * 3, "blocks.1.input", 300);
  const SaeRunResult whole = run_sae_training(small_run(dir / "acts", dir / "whole"));
  ASSERT_TRUE(whole.complete);
  ASSERT_EQ(whole.sae_dirs.size(), 10u);  // 2 hooks x 5 SAEs

  SaeRunOptions parts = small_run(dir / "acts", dir / "parts");
  parts.stop_after = 17;  // between checkpoints: the stop itself checkpoints
  const SaeRunResult first = run_sae_training(parts);
  EXPECT_FALSE(first.complete);
  EXPECT_EQ(first.steps_done, 17);
  EXPECT_TRUE(first.sae_dirs.empty());
  EXPECT_FALSE(fs::exists(dir / "parts/blocks.0.input"));  // no SAE folder that looks finished
  parts.stop_after = 0;
  const SaeRunResult second = run_sae_training(parts);
  ASSERT_TRUE(second.complete);
  EXPECT_EQ(second.resumed_from, 17);

  for (const std::string& d : whole.sae_dirs) {
    const std::string rel = fs::relative(d, dir / "whole").string();
    for (const char* file : {"sae_weights.safetensors", "sparsity.safetensors", "cfg.json"}) {
      EXPECT_EQ(sha256_file(fs::path(d) / file), sha256_file(fs::path(dir / "parts") / rel / file)) << rel << "/" << file;
    }
  }
  EXPECT_EQ(read_file(dir / "whole/metrics.jsonl", "metrics"), read_file(dir / "parts/metrics.jsonl", "metrics"));
  const json run = load_json_file(dir / "parts/run.json", "run");
  EXPECT_TRUE(run.at("complete").get<bool>());
}

TEST(SaeRun, NaNActivationsStopTheRunNamingTheStepAndLeaveTheLastCheckpointIntact) {
  test::TempDir dir;
  test::write_activation_store(dir / "acts/blocks.0.input", synthetic_acts(3), "blocks.0.input", 300);
  {  // The writer refuses NaN, so corrupt a finished shard afterwards (as a faulty disk or tool would).
    const std::string shard = dir / "acts/blocks.0.input/shard-00003.safetensors";
    const SafetensorsFile f = load_safetensors(shard);
    std::vector<std::pair<std::string, torch::Tensor>> tensors(f.tensors.begin(), f.tensors.end());
    for (auto& [name, t] : tensors) {
      if (name == "acts") t[100][3] = std::numeric_limits<float>::quiet_NaN();
    }
    save_safetensors(shard, tensors, f.metadata);
  }
  SaeRunOptions o = small_run(dir / "acts", dir / "out");
  o.init_rows = 200;
  o.train.steps = 200;
  EXPECT_THROWS_WITH(run_sae_training(o), "hook blocks.0.input: the training batch of step ",
                     "holds NaN or Inf activations; the last good checkpoint (step ")
      << "a NaN row was trained on";
  // The checkpoint loads and resuming reaches the same bad batch again, at the same step.
  ASSERT_TRUE(fs::exists(dir / "out/checkpoint.pt"));
  EXPECT_FALSE(load_json_file(dir / "out/run.json", "run").contains("complete"));
  EXPECT_FALSE(fs::exists(dir / "out/blocks.0.input"));
  EXPECT_THROWS_WITH(run_sae_training(o), "holds NaN or Inf activations") << "the resumed run trained on the NaN row";
}

TEST(SaeRun, RefusesToResumeARunWithOtherOptions) {
  test::TempDir dir;
  test::write_activation_store(dir / "acts/blocks.0.input", synthetic_acts(1), "blocks.0.input", 300);
  SaeRunOptions o = small_run(dir / "acts", dir / "out");
  o.stop_after = 3;
  run_sae_training(o);
  o.train.lr *= 2;
  EXPECT_THROWS_WITH(run_sae_training(o), "'" + (dir / "out") +
                                               "' holds a training run with different options or activations (lr); use "
                                               "another output folder or delete it")
      << "resumed with another learning rate";
}

TEST(SaeRun, ReadsAJsonConfigAndNamesAnUnknownKey) {
  SaeRunOptions o;
  read_sae_run_options(json::parse(R"({"steps": 7, "saes": [{"architecture": "gated", "l1": 2},
      {"architecture": "topk", "k": 8, "expansion": 4, "name": "tk"}], "expansion": 16})"), "cfg.json", o);
  EXPECT_EQ(o.train.steps, 7);
  ASSERT_EQ(o.saes.size(), 2u);
  EXPECT_EQ(o.saes[0].folder_name(), "gated-l1_2");
  EXPECT_EQ(o.saes[0].expansion, 16);
  EXPECT_EQ(o.saes[1].folder_name(), "tk");
  EXPECT_EQ(o.saes[1].expansion, 4);
  EXPECT_THROWS_WITH(
      read_sae_run_options(json::parse(R"({"saes": [{"architecture": "topk"}, {"architecture": "gated", "lambda": 1}]})"),
                           "cfg.json", o),
      "cfg.json: saes[1]: unknown key 'lambda' (valid keys: ")
      << "accepted an unknown key";
  SaeRunOptions example;
  read_sae_run_options(load_json_file(SAELAB_SOURCE_DIR "/configs/train-example.json", "example"),
                       "configs/train-example.json", example);
  example.validate();
  EXPECT_EQ(example.saes.size(), 6u);
  o.saes = SaeGridOptions{{"topk", "topk"}, {4}, {1.0}, 2}.specs();
  EXPECT_THROW(o.validate(), c10::Error);  // two SAEs with one folder name
}

}  // namespace
}  // namespace saelab
