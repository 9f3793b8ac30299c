// Streaming training (models/capture.h: open_activation_stream; saelab train --model): the model
// runs inside the training loop and fills a shuffle buffer. Checked against a capture of the same
// plan (the rows), against itself (seeds, resume) and for its one-line refusals.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string_view>

#include "core/activation_store.h"
#include "core/files.h"
#include "models/capture.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

using nlohmann::json;

const std::string kBundled = SAELAB_SOURCE_DIR "/assets/brown-gpt";

CaptureOptions plan_of(int64_t tokens) {
  CaptureOptions plan;
  plan.hooks = {"blocks.0.input", "blocks.1.input"};
  plan.tokens = tokens;
  plan.batch_size = 4;
  plan.shard_rows = 1 << 20;
  return plan;
}

std::string row_bytes(const torch::Tensor& row) {
  const torch::Tensor r = row.contiguous();
  return std::string(static_cast<const char*>(r.data_ptr()), static_cast<size_t>(r.numel()) * sizeof(float));
}

TEST(Streaming, BatchesAreTheCapturedRowsShuffledAcrossContextsAndTheSameForTheSameSeed) {
  LanguageModel lm = LanguageModel::open(kBundled);
  const CaptureOptions plan = plan_of(3000);
  test::TempDir dir;
  capture_activations(lm, plan, test::cache_dir(), dir / "acts");
  const ActivationStore s0 = ActivationStore::open(dir / "acts/blocks.0.hook_resid_pre");
  const ActivationStore s1 = ActivationStore::open(dir / "acts/blocks.1.hook_resid_pre");
  const torch::Tensor rows0 = s0.rows(0, 3000), rows1 = s1.rows(0, 3000);
  // A position's rows at both hooks → its index in the capture (hook 0 alone repeats: the same
  // token at the same position).
  auto key = [](const torch::Tensor& a, const torch::Tensor& b) { return row_bytes(a) + row_bytes(b); };
  std::map<std::string, int64_t> index_of;
  for (int64_t i = 0; i < 3000; ++i) index_of[key(rows0[i], rows1[i])] = i;

  const auto stream = open_activation_stream(lm, plan, test::cache_dir(), 128, 1024, 3);
  ASSERT_EQ(stream->manifests().size(), 2u);
  EXPECT_EQ(stream->manifests()[1].hook, "blocks.1.hook_resid_pre");
  EXPECT_EQ(stream->manifests()[1].d, s1.d());
  EXPECT_EQ(stream->manifests()[0].model_sha256, s0.manifest().model_sha256);

  // The initialisation rows are the plan's first rows in corpus order, as a capture stores them.
  const std::vector<torch::Tensor> first = stream->first_rows(500);
  EXPECT_TRUE(torch::equal(first[0], rows0.narrow(0, 0, 500)));
  EXPECT_TRUE(torch::equal(first[1], rows1.narrow(0, 0, 500)));

  // 40 batches of 128 (1.7 passes over the plan, a refill every 4 batches): every row is a row of
  // the capture (both hooks' rows of the same position), and a batch mixes far-apart positions.
  std::set<int64_t> seen;
  for (int b = 0; b < 40; ++b) {
    const std::vector<torch::Tensor> batch = stream->next();
    ASSERT_EQ(batch[0].sizes(), (std::vector<int64_t>{128, s0.d()}));
    int64_t lo = INT64_MAX, hi = -1;
    for (int64_t r = 0; r < 128; ++r) {
      const auto it = index_of.find(key(batch[0][r], batch[1][r]));
      ASSERT_NE(it, index_of.end()) << "batch " << b << " row " << r << " is not a position of the capture";
      lo = std::min(lo, it->second);
      hi = std::max(hi, it->second);
      seen.insert(it->second);
    }
    EXPECT_GT(hi - lo, 512) << "batch " << b << " holds positions " << lo << ".." << hi << " only";
  }
  EXPECT_GT(seen.size(), 2500u);  // nearly every row of the plan was drawn

  // The same seed gives the same batches; another seed others.
  const auto again = open_activation_stream(lm, plan, test::cache_dir(), 128, 1024, 3);
  const auto other = open_activation_stream(lm, plan, test::cache_dir(), 128, 1024, 4);
  const torch::Tensor a = again->next()[0], b = other->next()[0];
  const auto fresh = open_activation_stream(lm, plan, test::cache_dir(), 128, 1024, 3);
  EXPECT_TRUE(torch::equal(a, fresh->next()[0]));
  EXPECT_FALSE(torch::equal(a, b));

  // A saved position restores the rest of the sequence exactly (buffer and corpus position).
  for (int i = 0; i < 6; ++i) again->next();
  torch::serialize::OutputArchive out;
  again->save(out);
  const std::string path = dir / "position.pt";
  out.save_to(path);
  torch::serialize::InputArchive in;
  in.load_from(path);
  const auto restored = open_activation_stream(lm, plan, test::cache_dir(), 128, 1024, 3);
  restored->load(in, path);
  for (int i = 0; i < 12; ++i) {
    const std::vector<torch::Tensor> x = again->next(), y = restored->next();
    EXPECT_TRUE(torch::equal(x[0], y[0])) << "batch " << i << " after the restore";
    EXPECT_TRUE(torch::equal(x[1], y[1])) << "batch " << i << " after the restore";
  }
}

// Every file of a training run but its checkpoint and run.json (which names the folder).
std::map<std::string, std::string> run_files(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name != ".saelab.lock" && name != "checkpoint.pt" && name != "run.json") {
      out[fs::relative(e.path(), root).string()] = sha256_file(e.path());
    }
  }
  return out;
}

std::string stream_train(const std::string& out, const std::string& extra = "", int64_t tokens = 4000,
                         int64_t buffer_rows = 2048) {
  return "OMP_NUM_THREADS=1 " + test::saelab_binary() + " train --model " + kBundled +
         " --hooks blocks.0.input,blocks.1.input --tokens " + std::to_string(tokens) +
         " --steps 30 --batch-size 256 --buffer-rows " + std::to_string(buffer_rows) +
         " --architectures topk,batchtopk,standard --k 8 --l1 1 --expansion 2 --init-rows 1000 --checkpoint-every 7"
         " --out " + out + " " + extra + " 2>&1";
}

TEST(Streaming, TrainingFromTheModelGivesTheSameSaesTwiceAndResumesExactly) {
  test::TempDir dir;
  const auto a = test::run_command(stream_train(dir / "a"));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_NE(a.output.find("wrote " + (dir / "a/blocks.1.hook_resid_pre/standard-l1_1")), std::string::npos) << a.output;
  const auto b = test::run_command(stream_train(dir / "b"));
  ASSERT_EQ(b.exit_code, 0) << b.output;
  const auto files = run_files(dir / "a");
  EXPECT_EQ(files.size(), 1u + 2u * 3u * 3u);  // metrics.jsonl; per SAE cfg, weights, sparsity
  EXPECT_EQ(files, run_files(dir / "b"));

  const auto stopped = test::run_command(stream_train(dir / "c", "--stop-after 12"));
  ASSERT_EQ(stopped.exit_code, 0) << stopped.output;
  EXPECT_NE(stopped.output.find("stopped at step 12 of 30"), std::string::npos) << stopped.output;
  const auto resumed = test::run_command(stream_train(dir / "c"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming from step 12"), std::string::npos) << resumed.output;
  EXPECT_EQ(files, run_files(dir / "c"));

  const auto seeded = test::run_command(stream_train(dir / "d", "--seed 5"));
  ASSERT_EQ(seeded.exit_code, 0) << seeded.output;
  EXPECT_NE(files.at("blocks.0.hook_resid_pre/topk-k8/sae_weights.safetensors"),
            run_files(dir / "d").at("blocks.0.hook_resid_pre/topk-k8/sae_weights.safetensors"));

  // The run records the stream; a resume with another stream is refused.
  const json run = json::parse(read_file(dir / "a/run.json", "run"));
  EXPECT_EQ(run.at("stream").at("tokens"), 4000);
  EXPECT_EQ(run.at("stream").at("buffer_rows"), 2048);
  const auto changed = test::run_command(stream_train(dir / "c", "", 4000, 4096));
  EXPECT_NE(changed.exit_code, 0);
  EXPECT_NE(changed.output.find("holds a training run with different options or activations"), std::string::npos)
      << changed.output;
}

TEST(Streaming, RefusesWhatItCannotDoInOneLine) {
  test::TempDir dir;
  const auto small = test::run_command(stream_train(dir / "a", "", 4000, 300));
  EXPECT_NE(small.exit_code, 0);
  EXPECT_NE(small.output.find("saelab: error: buffer_rows 300 must be at least twice the batch_size (256)"),
            std::string::npos)
      << small.output;
  const auto no_model = test::run_command(test::saelab_binary() + " train --store " + (dir / "x") +
                                          " --tokens 1000 --out " + (dir / "b") + " 2>&1");
  EXPECT_NE(no_model.exit_code, 0);
  EXPECT_NE(no_model.output.find("describe streaming from a model; give --model too"), std::string::npos)
      << no_model.output;
  const auto no_hooks = test::run_command(test::saelab_binary() + " train --model " + kBundled + " --out " +
                                          (dir / "c") + " 2>&1");
  EXPECT_NE(no_hooks.exit_code, 0);
  EXPECT_NE(no_hooks.output.find("saelab: error: --model streams activations at --hooks"), std::string::npos)
      << no_hooks.output;
  const auto short_corpus = test::run_command(stream_train(dir / "d", "", 90000000));
  EXPECT_NE(short_corpus.exit_code, 0);
  EXPECT_NE(short_corpus.output.find("fewer than the 90000000 of one pass (--tokens)"), std::string::npos)
      << short_corpus.output;
}

}  // namespace
}  // namespace saelab
