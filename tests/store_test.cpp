// The activation store (core/activation_store.h): shards, manifests, shuffled batches, failures.
#include <gtest/gtest.h>

#include "core/activation_store.h"
#include "core/files.h"
#include "core/json_options.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

StoreManifest manifest_for(int64_t d, int64_t rows, const std::string& dtype = "float32") {
  StoreManifest m;
  m.hook = "blocks.1.input";
  m.d = d;
  m.dtype = dtype;
  m.context_length = 8;
  m.model_name = "test";
  m.model_sha256 = "abc";
  m.tokenizer = {{"kind", "gpt2"}};
  m.target_rows = rows;
  return m;
}

void write_store(const std::string& dir, const torch::Tensor& acts, const std::string& dtype, int64_t shard_rows) {
  ActivationWriter w(dir, manifest_for(acts.size(1), acts.size(0), dtype), shard_rows);
  const int64_t n = acts.size(0);
  for (int64_t i = 0; i < n; i += 7) {  // odd-sized appends cross shard boundaries
    const int64_t k = std::min<int64_t>(7, n - i);
    const torch::Tensor idx = torch::arange(i, i + k, torch::kInt64);
    w.append(i, acts.narrow(0, i, k), idx / 8, (idx % 8).to(torch::kInt32), idx * 3, (idx / 20).to(torch::kInt32));
  }
  w.finish();
}

TEST(ActivationStore, RoundTripsRowsAndProvenanceAcrossShards) {
  test::TempDir dir;
  const torch::Tensor acts = torch::randn({100, 6});
  write_store(dir / "s", acts, "float32", 30);
  const ActivationStore s = ActivationStore::open(dir / "s");
  EXPECT_EQ(s.rows(), 100);
  EXPECT_EQ(s.shard_count(), 4);  // 30 + 30 + 30 + 10
  EXPECT_TRUE(torch::equal(s.rows(0, 100), acts));
  EXPECT_TRUE(torch::equal(s.rows(25, 40), acts.narrow(0, 25, 40)));
  const StoreRows r = s.load_shard(1);
  EXPECT_EQ(r.token[0].item<int64_t>(), 90);    // row 30 → token 3 * 30
  EXPECT_EQ(r.position[0].item<int32_t>(), 6);  // 30 % 8
  EXPECT_EQ(r.context[0].item<int64_t>(), 3);
  EXPECT_TRUE(test::near_rel(s.manifest().mean_norm(), acts.norm(2, {1}).mean().item<double>(), 1e-5, 0));
}

TEST(ActivationStore, StoresHalfPrecisionAndReadsFloat32) {
  test::TempDir dir;
  const torch::Tensor acts = torch::randn({50, 4});
  for (const std::string dtype : {"float16", "bfloat16"}) {
    write_store(dir / dtype, acts, dtype, 16);
    const ActivationStore s = ActivationStore::open(dir / dtype);
    const torch::Tensor back = s.rows(0, 50);
    EXPECT_EQ(back.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(torch::equal(back, acts.to(store_dtype(dtype)).to(torch::kFloat32))) << dtype;
  }
}

TEST(ActivationStore, ShuffledBatchesAreDeterministicAndCoverEveryRowPerEpoch) {
  test::TempDir dir;
  const torch::Tensor acts = torch::arange(200, torch::kFloat32).view({200, 1}).repeat({1, 3});
  write_store(dir / "s", acts, "float32", 40);
  const ActivationStore s = ActivationStore::open(dir / "s");
  ShuffledBatches a(s, 50, 5, 42), b(s, 50, 5, 42), c(s, 50, 5, 43);
  std::vector<torch::Tensor> epoch;
  bool differs = false;
  for (int i = 0; i < 4; ++i) {
    const torch::Tensor x = a.next();
    EXPECT_TRUE(torch::equal(x, b.next()));
    differs |= !torch::equal(x, c.next());
    epoch.push_back(x.select(1, 0));
  }
  EXPECT_TRUE(differs);
  const torch::Tensor seen = std::get<0>(torch::cat(epoch).sort());
  EXPECT_TRUE(torch::equal(seen, torch::arange(200, torch::kFloat32)));
  EXPECT_FALSE(torch::equal(torch::cat(epoch), torch::arange(200, torch::kFloat32)));  // shuffled
  a.next();
  EXPECT_EQ(a.epoch(), 1);
}

TEST(ActivationStore, ShuffledBatchesHoldHalfPrecisionRowsAndAsFewShardsAsTheMemoryBoundAllows) {
  test::TempDir dir;
  const torch::Tensor acts = torch::arange(200, torch::kFloat32).view({200, 1}).repeat({1, 3});  // exact in float16
  write_store(dir / "h", acts, "float16", 40);
  write_store(dir / "f", acts, "float32", 40);
  const ActivationStore half = ActivationStore::open(dir / "h"), full = ActivationStore::open(dir / "f");
  EXPECT_EQ(half.load_shard(0, /*as_float32=*/false).acts.scalar_type(), torch::kFloat16);
  // A float16 shard is 40 × 3 × 2 = 240 bytes: 500 bytes hold two of them, a float32 one 480.
  ShuffledBatches bounded({&half}, 50, 5, 42, 500), unbounded(half, 50, 5, 42), single({&full}, 50, 5, 42, 500);
  EXPECT_EQ(bounded.shards_per_refill(), 2);
  EXPECT_EQ(unbounded.shards_per_refill(), 5);
  EXPECT_EQ(single.shards_per_refill(), 1);
  ShuffledBatches same_as_float32(full, 50, 5, 42);
  std::vector<torch::Tensor> epoch;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(bounded.next().scalar_type(), torch::kFloat32);
    EXPECT_TRUE(torch::equal(unbounded.next(), same_as_float32.next()));  // the dtype does not change the order
    epoch.push_back(single.next().select(1, 0));  // one 40-row shard per refill: 4 × 50 rows end with the epoch
  }
  EXPECT_TRUE(torch::equal(std::get<0>(torch::cat(epoch).sort()), torch::arange(200, torch::kFloat32)));
  ShuffledBatches skipped({&half}, 50, 5, 42, 500);
  skipped.skip(4);
  EXPECT_TRUE(torch::equal(skipped.next(), bounded.next()));
  EXPECT_THROWS_WITH(ShuffledBatches({&half}, 50, 5, 42, -1), "max_buffer_bytes must be >= 0");
}

TEST(ActivationStore, RefusesAFolderHoldingAnotherCaptureOrAnIncompleteOne) {
  test::TempDir dir;
  ActivationWriter w(dir / "s", manifest_for(4, 10), 5);
  w.append(0, torch::randn({6, 4}), torch::zeros({6}, torch::kInt64), torch::zeros({6}, torch::kInt32),
           torch::zeros({6}, torch::kInt64), torch::zeros({6}, torch::kInt32));
  EXPECT_THROWS_WITH(ActivationStore::open(dir / "s"), "is incomplete");
  EXPECT_THROWS_WITH(ActivationWriter other(dir / "s", manifest_for(8, 10), 5), "holds a different capture");
  // Reopening the same capture resumes after the listed shard (5 rows), not the 6 appended.
  ActivationWriter again(dir / "s", manifest_for(4, 10), 5);
  EXPECT_EQ(again.rows_done(), 5);
}

TEST(ActivationStore, AFailedShardWriteIsReportedAndNeverListed) {
  test::TempDir dir;
  ActivationWriter w(dir / "s", manifest_for(2, 8), 4);
  fs::create_directories(dir / "s/shard-00000.safetensors");  // the rename onto it must fail
  EXPECT_THROWS_WITH(w.append(0, torch::zeros({4, 2}), torch::zeros({4}, torch::kInt64), torch::zeros({4}, torch::kInt32),
                              torch::zeros({4}, torch::kInt64), torch::zeros({4}, torch::kInt32)),
                     "cannot write '" + (dir / "s/shard-00000.safetensors") + "'");
  const json m = load_json_file(dir / "s/manifest.json", "manifest");
  EXPECT_EQ(m["rows"], 0);
  EXPECT_TRUE(m["shards"].empty());
  for (const auto& e : fs::directory_iterator(dir / "s")) {
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << "temporary file left: " << e.path();
  }
}

TEST(ActivationStore, RejectsNaNActivationsNamingTheHook) {
  test::TempDir dir;
  ActivationWriter w(dir / "s", manifest_for(2, 4), 4);
  torch::Tensor bad = torch::zeros({2, 2});
  bad[1][0] = NAN;
  EXPECT_THROWS_WITH(w.append(0, bad, torch::zeros({2}, torch::kInt64), torch::zeros({2}, torch::kInt32),
                              torch::zeros({2}, torch::kInt64), torch::zeros({2}, torch::kInt32)),
                     "activations at 'blocks.1.input' hold NaN or Inf (rows 0..1)");
}

}  // namespace
}  // namespace saelab
