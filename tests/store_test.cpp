#include <gtest/gtest.h>

#include <fstream>

#include "core/activation_store.h"
#include "core/files.h"
#include "core/json_options.h"
#include "core/safetensors.h"
#include "models/capture.h"
#include "models/hooked_model.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  test::TempDir dir;
  const torch::Tensor f32 = torch::randn({3, 4});
  const std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"f32", f32},
      {"f64", torch::randn({2}, torch::kFloat64)},
      {"f16", torch::randn({5}).to(torch::kFloat16)},
      {"bf16", torch::randn({5}).to(torch::kBFloat16)},
      {"i64", torch::arange(6, torch::kInt64).view({2, 3})},
      {"i32", torch::arange(4, torch::kInt32)},
      {"u8", torch::arange(3, torch::kUInt8)},
      {"b", torch::tensor({true, false})},
      {"empty", torch::empty({0, 7})},
      {"transposed", f32.t()},
  };
  save_safetensors(dir / "a.safetensors", tensors, {{"k", "v"}});
  const SafetensorsFile f = load_safetensors(dir / "a.safetensors");
  EXPECT_EQ(f.metadata.at("k"), "v");
  ASSERT_EQ(f.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    EXPECT_TRUE(torch::equal(f.at(name), t.contiguous())) << name;
    EXPECT_EQ(f.at(name).scalar_type(), t.scalar_type()) << name;
  }
  // The header is padded so the data section starts 8-byte aligned.
  const std::string raw = read_file(dir / "a.safetensors", "file");
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
}

TEST(Safetensors, FilesWeWriteLoadWithAPlainPythonReader) {
  test::TempDir dir;
  const torch::Tensor a = torch::randn({4, 5});
  const torch::Tensor h = torch::randn({6}).to(torch::kFloat16);
  const torch::Tensor bf = torch::randn({6}).to(torch::kBFloat16);
  const torch::Tensor i = torch::arange(10, torch::kInt64);
  save_safetensors(dir / "x.safetensors", {{"a", a}, {"h", h}, {"bf", bf}, {"i", i}}, {{"hook", "blocks.1.input"}});
  const auto r = test::run_command("/usr/bin/python3 " SAELAB_SOURCE_DIR "/tests/python/read_safetensors.py " +
                                   (dir / "x.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = json::parse(r.output);
  EXPECT_EQ(j["metadata"]["hook"], "blocks.1.input");
  EXPECT_EQ(j["tensors"]["a"]["shape"], json({4, 5}));
  EXPECT_EQ(j["tensors"]["a"]["dtype"], "F32");
  EXPECT_NEAR(j["tensors"]["a"]["sum"].get<double>(), a.to(torch::kFloat64).sum().item<double>(), 1e-4);
  EXPECT_NEAR(j["tensors"]["h"]["sum"].get<double>(), h.to(torch::kFloat64).sum().item<double>(), 1e-3);
  EXPECT_NEAR(j["tensors"]["bf"]["sum"].get<double>(), bf.to(torch::kFloat64).sum().item<double>(), 1e-3);
  EXPECT_EQ(j["tensors"]["i"]["sum"].get<double>(), 45.0);
}

// Builds a file from a header string and a data section.
std::string file_with(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

void expect_rejected(const std::string& bytes, const std::string& phrase) {
  EXPECT_THROWS_WITH(parse_safetensors(bytes, "bad.safetensors"), phrase, "bad.safetensors");
}

TEST(Safetensors, RejectsCorruptFilesWithClearErrors) {
  const std::string data(16, '\0');
  expect_rejected("abc", "is truncated");
  std::string huge(8, '\0');
  huge[6] = 1;  // header length far past the end
  expect_rejected(huge + "{}", "runs past the end of the file");
  expect_rejected(file_with("{\"a\": ", data), "header is not valid JSON");
  expect_rejected(file_with("[1, 2]", data), "header is not a JSON object");
  expect_rejected(file_with(R"({"a": {"dtype": "F33", "shape": [4], "data_offsets": [0, 16]}})", data),
                  "unknown dtype 'F33'");
  expect_rejected(file_with(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})", data),
                  "needs 12 bytes but data_offsets give 16");
  expect_rejected(file_with(R"({"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}})", data),
                  "fall outside the data section of 16 bytes");
  expect_rejected(file_with(R"({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})", data),
                  "negative or non-integer size");
  expect_rejected(file_with(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                            data),
                  "overlap");
  expect_rejected(file_with(R"({"a": {"dtype": "F32", "shape": [2]}})", data), "needs dtype, shape and data_offsets");
  expect_rejected(file_with(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [8, 4]}})", data),
                  "fall outside the data section");
  expect_rejected(file_with(R"({"__metadata__": {"k": 3}})", data), "metadata 'k' is not a string");
}

TEST(Safetensors, AMissingFileIsNamed) {
  EXPECT_THROWS_WITH(load_safetensors("/nonexistent/sae_weights.safetensors"),
                     "safetensors file '/nonexistent/sae_weights.safetensors' does not exist");
}

// ---- activation store ----

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

// ---- capture ----

struct HfModel {
  test::TempDir dir;
  HfModel() {
    const auto r = test::run_command("/usr/bin/python3 " SAELAB_SOURCE_DIR "/tests/python/make_hf_gpt2.py " +
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
  const ActivationStore s = ActivationStore::open(out / "transformer.h.1.input");
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
  const json m = json::parse(read_file(out / "killed/transformer.h.2.output/manifest.json", "manifest"));
  EXPECT_FALSE(m["complete"].get<bool>());
  EXPECT_LE(m["rows"].get<int64_t>(), 8000);
  EXPECT_THROW(ActivationStore::open(out / "killed/transformer.h.2.output"), c10::Error);
  const auto resumed = test::run_command(base + (out / "killed"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  for (const std::string hook : {"transformer.h.0.input", "transformer.h.2.output"}) {
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

}  // namespace
}  // namespace saelab
