#include <gtest/gtest.h>

#include <fstream>

#include "core/files.h"
#include "core/json_options.h"
#include "models/corpus.h"
#include "models/gpt.h"
#include "models/lm_data.h"
#include "models/lm_train.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

// A byte-level stream of a few Brown documents: a small real corpus with a 256-token vocabulary.
std::vector<int64_t> byte_stream(int docs) {
  const Corpus brown = read_brown(test::brown_dir());
  std::vector<int64_t> s;
  for (int i = 0; i < docs; ++i) {
    for (unsigned char ch : brown.documents[i].text) s.push_back(ch);
  }
  return s;
}

GptConfig tiny() {
  GptConfig c;
  c.vocab_size = 256;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 2;
  c.context_length = 32;
  return c;
}

LmTrainOptions quick(int64_t steps) {
  LmTrainOptions o;
  o.steps = steps;
  o.batch_size = 8;
  o.lr = 3e-3;
  o.warmup_steps = 5;
  o.eval_every = 1000;
  o.eval_rows = 16;
  o.checkpoint_every = 3;
  o.seed = 7;
  return o;
}

TEST(LmData, BuildsBosFirstContextsAndDeterministicBatches) {
  const std::vector<int64_t> stream = {10, 11, 12, 13, 14, 15, 16, 17};
  const torch::Tensor ctx = eval_contexts(stream, 3, 1);
  ASSERT_EQ(ctx.sizes(), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(ctx[0][0].item<int64_t>(), 1);
  EXPECT_EQ(ctx[0][1].item<int64_t>(), 10);
  EXPECT_EQ(ctx[1][1].item<int64_t>(), 13);
  EXPECT_EQ(ctx[1][3].item<int64_t>(), 15);
  const torch::Tensor a = training_batch(stream, 3, 1, 4, 9, 5), b = training_batch(stream, 3, 1, 4, 9, 5);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, training_batch(stream, 3, 1, 4, 9, 6)));
  // Every row is BOS then a contiguous run of the stream.
  for (int64_t r = 0; r < 4; ++r) {
    EXPECT_EQ(a[r][0].item<int64_t>(), 1);
    EXPECT_EQ(a[r][2].item<int64_t>(), a[r][1].item<int64_t>() + 1);
  }
}

TEST(LmData, UnigramEntropyMatchesAHandComputedCase) {
  // Targets {5, 5, 6, 7}: p = (1/2, 1/4, 1/4), H = 1.5 ln 2.
  const torch::Tensor ctx = torch::tensor({0, 5, 5, 0, 6, 7}, torch::kInt64).view({2, 3});
  EXPECT_NEAR(unigram_entropy(ctx, 8), 1.5 * std::log(2.0), 1e-12);
}

TEST(LmTrain, LowersTheLossOnASmallCorpus) {
  test::TempDir dir;
  const auto stream = byte_stream(3);
  const torch::Tensor val = eval_contexts(stream, 32, 0, 16);
  auto m = build_gpt(tiny(), 1);
  const double before = evaluate_lm([&](const torch::Tensor& t) { return m.forward({t}).toTensor(); }, val);
  const LmTrainResult r = train_lm(m, tiny(), quick(60), stream, val, 0, dir.path().string());
  EXPECT_TRUE(r.finished);
  EXPECT_NEAR(before, std::log(256.0), 0.3);  // an untrained model is near uniform
  EXPECT_LT(r.validation_loss, before - 2.0) << "before " << before << ", after " << r.validation_loss;
  EXPECT_TRUE(fs::exists(dir / "checkpoint.pt"));
}

TEST(LmTrain, AResumedRunEndsWithTheSameWeightsAsAnUninterruptedOne) {
  test::TempDir a, b;
  const auto stream = byte_stream(2);
  const torch::Tensor val = eval_contexts(stream, 32, 0, 8);
  auto straight = build_gpt(tiny(), 3);
  train_lm(straight, tiny(), quick(10), stream, val, 0, a.path().string());

  auto first = build_gpt(tiny(), 3);
  LmTrainOptions killed = quick(10);
  killed.stop_after = 4;  // as if killed after step 4 (checkpoints at 3 and at the stop)
  const LmTrainResult partial = train_lm(first, tiny(), killed, stream, val, 0, b.path().string());
  EXPECT_FALSE(partial.finished);
  EXPECT_EQ(partial.steps, 4);
  auto resumed = build_gpt(tiny(), 99);  // different init: everything must come from the checkpoint
  const LmTrainResult done = train_lm(resumed, tiny(), quick(10), stream, val, 0, b.path().string());
  EXPECT_TRUE(done.finished);
  const auto pa = unique_parameters(straight), pb = unique_parameters(resumed);
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i].second, pb[i].second)) << pa[i].first;
  // The metrics log holds each step once.
  std::ifstream in(b / "metrics.jsonl");
  std::string line;
  std::vector<int64_t> steps;
  while (std::getline(in, line)) steps.push_back(json::parse(line)["step"].get<int64_t>());
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
}

TEST(LmTrain, RefusesACheckpointFromAnotherConfig) {
  test::TempDir dir;
  const auto stream = byte_stream(1);
  const torch::Tensor val = eval_contexts(stream, 32, 0, 4);
  auto m = build_gpt(tiny(), 1);
  train_lm(m, tiny(), quick(3), stream, val, 0, dir.path().string());
  LmTrainOptions other = quick(3);
  other.lr = 1e-3;
  EXPECT_THROWS_WITH(train_lm(m, tiny(), other, stream, val, 0, dir.path().string()),
                     "was written with a different model or training config");
}

}  // namespace
}  // namespace saelab
