// Hostile input, faults and concurrent runs (issue 12): every class of defect ends with one clear
// line naming the file, key or flag, a non-zero exit, no damaged output, and a rerun that gives
// the uninterrupted result.
#include <gtest/gtest.h>

#include <sys/file.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <csignal>
#include <functional>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <limits>
#include <thread>

#include "analysis/feature_db.h"
#include "core/activation_store.h"
#include "core/files.h"
#include "core/json_options.h"
#include "core/options.h"
#include "core/runtime.h"
#include "core/safetensors.h"
#include "sae/sae_io.h"
#include "sae/train_run.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

std::string saelab(const std::string& args) { return test::saelab_binary() + " --threads 1 " + args; }

std::string nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// ---- JSON: one bounded parser for every reader ----

TEST(Hardening, DeeplyNestedJsonIsRefusedNamingTheFileWithoutOverflowingTheStack) {
  test::TempDir dir;
  test::write_text(dir / "deep.json", "{\"a\": " + nested(300000) + "}");
  EXPECT_THROWS_WITH(load_json_file(dir / "deep.json", "training config"), "training config '" + (dir / "deep.json") + "'",
                     "nested deeper than 64 levels");
  // Brackets inside strings do not count, and the limit itself is accepted.
  EXPECT_NO_THROW(parse_json_text("{\"s\": \"" + std::string(1000, '[') + "\", \"x\": " + nested(63) + "}", "x"));
  EXPECT_THROWS_WITH(parse_json_text(nested(65), "x"), "x is nested deeper than 64 levels");
  for (const char* cmd : {"train --config", "demo --check --config", "capture --config"}) {
    const auto r = test::run_command(saelab(std::string(cmd) + " " + (dir / "deep.json")));
    EXPECT_EQ(r.exit_code, 1) << cmd << ": " << r.output;
    EXPECT_NE(test::last_line(r.output).find("nested deeper than 64 levels"), std::string::npos) << r.output;
  }
}

TEST(Hardening, ANumberTooLargeForADoubleNamesTheFile) {
  test::TempDir dir;
  test::write_text(dir / "big.json", "{\"steps\": 1e999}");
  EXPECT_THROWS_WITH(load_json_file(dir / "big.json", "training config"), "training config '" + (dir / "big.json") + "'",
                     "number out of range", "1e999");
  EXPECT_THROWS_WITH(parse_json_text("{\"a\": [1, 2,]}", "cfg.json"), "cfg.json is not valid JSON (byte 13");
}

TEST(Hardening, SafetensorsHeadersGoThroughTheSameParser) {
  const std::string header = nested(100);
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  EXPECT_THROWS_WITH(parse_safetensors(bytes + header, "w.safetensors"), "safetensors file 'w.safetensors': header",
                     "nested deeper");
  const std::string overflow = "{\"w\": {\"dtype\": \"F32\", \"shape\": [1e999], \"data_offsets\": [0, 4]}}";
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((overflow.size() >> (8 * i)) & 0xff);
  EXPECT_THROWS_WITH(parse_safetensors(bytes + overflow + "abcd", "w.safetensors"), "w.safetensors", "out of range");
  // 2^62 floats need 2^64 bytes: the byte count wraps to 0 and matched empty data_offsets (fuzzing).
  const std::string wraps = "{\"w\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904], \"data_offsets\": [0, 0]}}";
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((wraps.size() >> (8 * i)) & 0xff);
  EXPECT_THROWS_WITH(parse_safetensors(bytes + wraps, "w.safetensors"), "tensor 'w': shape 4611686018427387904 of F32",
                     "needs more bytes than the file's data section of 0 holds");
}

// ---- option values: one rule per field, checked for configs and flags alike ----

struct Ranged {
  int64_t count = 1;
  double rate = 0.5;
  std::string name = "a";
  std::vector<std::string> hooks;
  template <class V>
  void fields(V& v) {
    v("count", count, "", at_least(1));
    v("rate", rate, "", in_range(0, 1));
    v("name", name, "", path_name());
    v("hooks", hooks, "", path_name().and_non_empty());
  }
};

TEST(Hardening, OptionRulesNameTheKeyAndWhatIsWrong) {
  Ranged r;
  EXPECT_THROWS_WITH(read_options(json::parse(R"({"count": 0})"), "w.json", r), "w.json: key 'count' must be at least 1 (got 0)");
  EXPECT_THROWS_WITH(read_options(json::parse(R"({"count": 2.5})"), "w.json", r), "w.json: key 'count' must be an integer");
  EXPECT_THROWS_WITH(read_options(json::parse(R"({"rate": 3})"), "w.json", r), "key 'rate' must be between 0 and 1 (got 3)");
  EXPECT_THROWS_WITH(read_options(json::parse(R"({"name": "../../victim"})"), "w.json", r), "key 'name' must be a plain file name");
  EXPECT_THROWS_WITH(read_options(json::parse(R"({"hooks": []})"), "w.json", r), "key 'hooks' must not be empty");
  EXPECT_THROWS_WITH(read_options(json::parse(R"({"hooks": ["ok", "/etc"]})"), "w.json", r), "key 'hooks' must be a plain");
  read_options(json::parse(R"({"count": 3, "rate": 1, "name": "topk-k32", "hooks": ["blocks.0.hook_resid_pre"]})"), "w.json", r);
  EXPECT_EQ(r.count, 3);
  EXPECT_THROWS_WITH(detail::check_number(HUGE_VAL, FieldRule{}, "--alphas"), "--alphas must be a finite number (got inf)");
}

TEST(Hardening, PathNamesAreOneComponentThatStaysInItsFolder) {
  for (const char* bad : {"", ".", "..", "../../victim", "/abs", "a/b", "a\\b", ".hidden", "-rf", "a b", "x\n"}) {
    EXPECT_THROWS_WITH(check_path_name(bad, "SAE name"), "SAE name must be a plain file name") << bad;
  }
  EXPECT_THROWS_WITH(check_path_name(std::string(101, 'a'), "SAE name"), "more than 100 characters");
  for (const char* good : {"topk-k32", "standard-l1_2.5", "blocks.0.hook_resid_pre", "transformer.h.2.output", "a+b=c,d@e"}) {
    EXPECT_NO_THROW(check_path_name(good, "SAE name")) << good;
  }
}

TEST(Hardening, BadFlagValuesAreOneLineNamingTheFlag) {
  const struct {
    const char* args;
    const char* message;
  } cases[] = {
      {"generate --samples -1", "--samples must be between 1 and 10000 (got -1)"},
      {"steer --saes x --feature 0 --alphas 1,inf", "--alphas must be a finite number (got inf)"},
      {"train --store x --k 0", "--k must be at least 1 (got 0)"},
      {"train --store x --hooks ../../victim", "--hooks must be a plain file name"},
      {"capture --tokens -5", "--tokens must be at least 1 (got -5)"},
      {"hooks --length 0", "--length must be at least 1 (got 0)"},
      {"hooks --length 200", "--length 200 is past the context of model 'brown-gpt' (128 tokens)"},
  };
  for (const auto& c : cases) {
    const auto r = test::run_command(saelab(c.args));
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(test::last_line(r.output).find(c.message), std::string::npos) << c.args << ": " << r.output;
  }
  const auto threads = test::run_command(test::saelab_binary() + " --threads 100000 generate");
  EXPECT_EQ(threads.exit_code, 1);
  EXPECT_NE(test::last_line(threads.output).find("--threads 100000 is more than 4 x the"), std::string::npos)
      << threads.output;
  const auto r = test::run_command(saelab("trian"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(test::last_line(r.output).rfind("saelab: error: unknown command 'trian' (commands: demo, hooks, capture, train, eval,", 0), 0u)
      << r.output;
}

// ---- damaged model and SAE files ----

TEST(Hardening, DamagedSaeConfigsAndWeightsAreRefused) {
  test::TempDir dir;
  SaeConfig c;
  c.architecture = Architecture::kTopK;
  c.d_in = 4;
  c.d_sae = 8;
  c.k = 2;
  save_sae(dir / "sae", Sae(c, 1), SaeMetadata{}, torch::Tensor());
  const json good = load_json_file(dir / "sae/cfg.json", "cfg");
  auto with = [&](const char* key, const json& value) {
    json j = good;
    j[key] = value;
    write_file_atomic(dir / "sae/cfg.json", j.dump());
  };
  with("d_in", 4.5);
  EXPECT_THROWS_WITH(load_sae(dir / "sae"), "cfg.json: key 'd_in' must be an integer (got 4.5)");
  {
    json j = good;
    j["architecture"] = "standard";
    j["activation_fn_str"] = "topk";
    j["activation_fn_kwargs"] = json::array({8});
    write_file_atomic(dir / "sae/cfg.json", j.dump());
  }
  EXPECT_THROWS_WITH(load_sae(dir / "sae"), "key 'activation_fn_kwargs' must be an object (got array)");
  write_file_atomic(dir / "sae/cfg.json", good.dump());
  SafetensorsFile w = load_safetensors(dir / "sae/sae_weights.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, t] : w.tensors) tensors.emplace_back(name, name == "W_enc" ? t.to(torch::kInt32) : t);
  save_safetensors(dir / "sae/sae_weights.safetensors", tensors);
  EXPECT_THROWS_WITH(load_sae(dir / "sae"), "tensor 'W_enc' has dtype int", "must be floating point");
}

TEST(Hardening, AJsonlCorpusFieldOfTheWrongTypeIsNamed) {
  test::TempDir dir;
  test::write_text(dir / "c.jsonl", "{\"text\": \"a b c\", \"genre\": \"news\"}\n{\"text\": \"d e\", \"genre\": 7}\n");
  const auto r = test::run_command(saelab("train-tokenizer --corpus jsonl:" + (dir / "c.jsonl") + " --out " + (dir / "t.model")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(test::last_line(r.output).find(dir / "c.jsonl:2: field 'genre' must be a string (got number)"), std::string::npos)
      << r.output;
}

// ---- locks: one run per output folder or database ----

TEST(Hardening, ASecondLockOnAFolderFailsNamingTheHolder) {
  test::TempDir dir;
  {
    const RunLock first = RunLock::folder(dir / "out", "training folder");
    EXPECT_THROWS_WITH(RunLock::folder(dir / "out", "training folder"),
                       "training folder '" + (dir / "out") + "' is in use by another saelab run (pid " +
                           std::to_string(getpid()) + ", since ");
    const RunLock db = RunLock::file(dir / "out/features.sqlite", "feature database");
    EXPECT_THROWS_WITH(RunLock::file(dir / "out/features.sqlite", "feature database"),
                       "feature database '" + (dir / "out/features.sqlite") + "' is in use by another saelab run");
  }
  EXPECT_NO_THROW(RunLock::folder(dir / "out", "training folder"));  // released with its owner
}

// A finished run leaves no lock file; removing it on release must not let two holders in (one that
// opened the old file and one that created the new): eight threads, each its own open file
// description, take and release one lock many times, and never two hold it at once.
TEST(Hardening, ALockFileIsRemovedOnReleaseAndTheLockIsNeverHeldTwice) {
  test::TempDir dir;
  {
    const RunLock lock = RunLock::file(dir / "features.sqlite", "feature database");
    EXPECT_TRUE(fs::exists(dir / "features.sqlite.lock"));
  }
  EXPECT_FALSE(fs::exists(dir / "features.sqlite.lock"));
  std::atomic<int> inside{0}, most{0}, taken{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      int mine = 0;
      for (int attempt = 0; attempt < 200000 && mine < 25; ++attempt) {
        try {
          const RunLock lock = RunLock::file(dir / "features.sqlite", "feature database");
          const int now = ++inside;
          most = std::max(most.load(), now);
          ++mine;
          std::this_thread::yield();
          --inside;
        } catch (const c10::Error&) {
          // held by another thread: try again
        }
      }
      taken += mine;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(most.load(), 1);
  EXPECT_EQ(taken.load(), 8 * 25) << "every thread took the lock 25 times";
  EXPECT_FALSE(fs::exists(dir / "features.sqlite.lock"));
}

TEST(Hardening, TakingAFolderLockRemovesWhatAKilledRunLeftBehind) {
  test::TempDir dir;
  write_file_atomic(dir / "out/a/checkpoint.pt.tmp.4242.17", "partial");
  write_file_atomic(dir / "out/features.sqlite.tmp", "partial");
  write_file_atomic(dir / "out/keep.json", "{}");
  write_file_atomic(dir / "out/notes.tmp.txt", "a user's file");
  { const RunLock lock = RunLock::folder(dir / "out", "output folder"); }
  EXPECT_FALSE(fs::exists(dir / "out/a/checkpoint.pt.tmp.4242.17"));
  EXPECT_FALSE(fs::exists(dir / "out/features.sqlite.tmp"));
  EXPECT_TRUE(fs::exists(dir / "out/keep.json"));
  EXPECT_TRUE(fs::exists(dir / "out/notes.tmp.txt"));
}

// Activations with sparse structure: 3000 rows of 32 dims.
torch::Tensor acts(uint64_t seed) {
  torch::Generator gen = at::detail::createCPUGenerator(seed);
  const torch::Tensor dirs = torch::randn({48, 32}, gen);
  const torch::Tensor active = (torch::rand({3000, 48}, gen) < 0.1).to(torch::kFloat32);
  return torch::matmul(active * (torch::rand({3000, 48}, gen) + 0.5), dirs);
}

std::string train_config(const std::string& dir, int64_t steps, int64_t expansion = 8) {
  const std::string path = dir + "/train-" + std::to_string(steps) + ".json";
  test::write_text(path, json{{"store", dir + "/acts"},
                              {"architectures", {"topk"}},
                              {"k", {4}},
                              {"expansion", expansion},
                              {"steps", steps},
                              {"batch_size", 64},
                              {"init_rows", 256},
                              {"buffer_shards", 2},
                              {"checkpoint_every", 10}}
                             .dump());
  return path;
}

// A store folder replaced by another hook's capture of the same shape: refused by its manifest's
// hook; with the manifest made to match, the resume is refused naming the activations that changed.
TEST(Hardening, AStoreFolderReplacedByAnotherHooksCaptureIsRefusedOnResume) {
  test::TempDir dir;
  test::write_activation_store(dir / "acts/blocks.0.input", acts(1), "blocks.0.input", 500);
  test::write_activation_store(dir / "acts/blocks.1.input", acts(2), "blocks.1.input", 500);
  const std::string train = saelab("train --config " + train_config(dir.path().string(), 30) + " --hooks blocks.0.input --out " +
                                   (dir / "out"));
  const auto first = test::run_command(train + " --stop-after 10");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  fs::remove_all(dir / "acts/blocks.0.input");
  fs::copy(dir / "acts/blocks.1.input", dir / "acts/blocks.0.input", fs::copy_options::recursive);
  const auto moved = test::run_command(train);
  EXPECT_EQ(moved.exit_code, 1) << moved.output;
  EXPECT_NE(test::last_line(moved.output).find("the store folder '" + (dir / "acts/blocks.0.input") +
                                               "' holds activations of hook 'blocks.1.input'"), std::string::npos)
      << moved.output;
  json manifest = load_json_file(dir / "acts/blocks.0.input/manifest.json", "manifest");
  manifest["hook"] = "blocks.0.input";
  test::write_text(dir / "acts/blocks.0.input/manifest.json", manifest.dump());
  const auto renamed = test::run_command(train);
  EXPECT_EQ(renamed.exit_code, 1) << renamed.output;
  EXPECT_NE(test::last_line(renamed.output).find("holds a training run with different options or activations (the "
                                                 "activations of hook 'blocks.0.input')"), std::string::npos)
      << renamed.output;
  // A checkpoint replaced by another torch archive (a TorchScript model) is named.
  fs::copy_file(SAELAB_SOURCE_DIR "/assets/brown-gpt/model.pt", dir / "out/checkpoint.pt", fs::copy_options::overwrite_existing);
  const auto other = test::run_command(train);
  EXPECT_EQ(other.exit_code, 1) << other.output;
  EXPECT_NE(test::last_line(other.output).find("checkpoint '" + (dir / "out/checkpoint.pt") +
                                               "' is not a saelab training checkpoint"), std::string::npos)
      << other.output;
}

// A NaN in the rows that initialise the coders is named by hook, shard and row (the capture refuses
// to write one; a shard damaged afterwards holds one).
TEST(Hardening, ANaNAmongTheInitialisationRowsIsNamedByHookShardAndRow) {
  test::TempDir dir;
  test::write_activation_store(dir / "acts/blocks.0.input", acts(1), "blocks.0.input", 500);
  const std::string shard = dir / "acts/blocks.0.input/shard-00001.safetensors";
  SafetensorsFile f = load_safetensors(shard);
  std::vector<std::pair<std::string, torch::Tensor>> tensors(f.tensors.begin(), f.tensors.end());
  for (auto& [name, t] : tensors) {
    if (name == "acts") t[7][3] = std::numeric_limits<float>::quiet_NaN();
  }
  save_safetensors(shard, tensors, f.metadata);
  const auto r = test::run_command(saelab("train --config " + train_config(dir.path().string(), 30) + " --init-rows 600 --out " +
                                          (dir / "out")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(test::last_line(r.output).find("the activations of hook 'blocks.0.input' in '" + (dir / "acts") +
                                           "' hold NaN or Inf: row 507 of the store (row 7 of shard 'shard-00001.safetensors')"),
            std::string::npos)
      << r.output;
}

TEST(Hardening, TwoTrainingRunsOnOneFolderCannotBothWriteIt) {
  test::TempDir dir;
  test::write_activation_store(dir / "acts/blocks.0.input", acts(1), "blocks.0.input", 500);
  // The first run holds the folder for its whole (long) run; the second is refused at once.
  const std::string first = saelab("train --config " + train_config(dir.path().string(), 1000000) + " --out " + (dir / "out") +
                                   " > " + (dir / "first.log") + " 2>&1 & echo $!");
  const auto started = test::run_command(first);
  const std::string pid = test::last_line(started.output);
  std::string holder;
  for (int i = 0; i < 600 && holder.find("pid") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream in(dir / "out/.saelab.lock");
    std::getline(in, holder);
  }
  ASSERT_NE(holder.find("pid " + pid), std::string::npos) << holder;
  const auto second = test::run_command(saelab("train --config " + train_config(dir.path().string(), 20) + " --out " + (dir / "out")));
  test::run_command("kill -9 " + pid);
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(test::last_line(second.output).find("training folder '" + (dir / "out") + "' is in use by another saelab run (pid " + pid),
            std::string::npos)
      << second.output;
  EXPECT_NE(test::last_line(second.output).find("saelab --threads 1 train --config"), std::string::npos) << second.output;
}

// ---- a full disk: the write fails with one line, nothing looks complete, a rerun finishes ----

TEST(Hardening, AFullDiskWhileTrainingWritesACheckpointIsOneLineAndARerunMatchesAnUninterruptedRun) {
  test::TempDir dir;
  test::write_activation_store(dir / "acts/blocks.0.input", acts(2), "blocks.0.input", 500);
  const std::string config = train_config(dir.path().string(), 30, 16);
  // The checkpoint (weights and Adam moments: ~400 KB) is the largest file the run writes; a
  // file-size limit of 200 KB makes its write fail as a full disk would (SIGXFSZ ignored: EFBIG).
  const auto limited = test::run_command("bash -c 'ulimit -f 200; trap \"\" XFSZ; exec " +
                                         saelab("train --config " + config + " --out " + (dir / "out")) + "'");
  EXPECT_EQ(limited.exit_code, 1) << limited.output;
  EXPECT_EQ(test::last_line(limited.output), "saelab: error: cannot write '" + (dir / "out/checkpoint.pt") + "': File too large");
  EXPECT_EQ(limited.output.find("terminate called"), std::string::npos) << limited.output;
  EXPECT_FALSE(fs::exists(dir / "out/checkpoint.pt"));
  for (const auto& e : fs::recursive_directory_iterator(dir / "out")) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
  const auto rerun = test::run_command(saelab("train --config " + config + " --out " + (dir / "out")));
  ASSERT_EQ(rerun.exit_code, 0) << rerun.output;
  const auto clean = test::run_command(saelab("train --config " + config + " --out " + (dir / "clean")));
  ASSERT_EQ(clean.exit_code, 0) << clean.output;
  EXPECT_EQ(read_file(dir / "out/blocks.0.input/topk-k4/sae_weights.safetensors", "weights"),
            read_file(dir / "clean/blocks.0.input/topk-k4/sae_weights.safetensors", "weights"));
}

TEST(Hardening, ResourcesThatCannotBeMeantAreRefusedBeforeStarting) {
  test::TempDir dir;
  test::write_activation_store(dir / "acts/blocks.0.input", acts(3), "blocks.0.input", 500);
  // d_sae = 2^26 x 32 dims: petabytes of weights
  const auto r = test::run_command(saelab("train --config " + train_config(dir.path().string(), 10, int64_t{1} << 26) + " --out " + (dir / "out")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(test::last_line(r.output).find("training 1 coder (GB: weights "), std::string::npos) << r.output;
  EXPECT_NE(test::last_line(r.output).find("lower the expansion, the batch_size or buffer_gb") , std::string::npos) << r.output;
  EXPECT_NE(test::last_line(r.output).find("of memory but"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out/run.json")) << "the refused run started";
  // A budget of one's own (SAELAB_MEMORY_LIMIT) refuses a run that fits the machine but not the budget.
  const std::string fits = "train --config " + train_config(dir.path().string(), 10, 64) + " --out " + (dir / "out2");
  const auto capped = test::run_command("SAELAB_MEMORY_LIMIT=0.3G " + saelab(fits));
  EXPECT_EQ(capped.exit_code, 1) << capped.output;
  EXPECT_NE(test::last_line(capped.output).find("of memory but 300.0 MB is available"), std::string::npos)
      << capped.output;
  EXPECT_FALSE(fs::exists(dir / "out2/run.json")) << "the refused run started";
  const auto bad = test::run_command("SAELAB_MEMORY_LIMIT=lots " + saelab(fits));
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_EQ(test::last_line(bad.output),
            "saelab: error: SAELAB_MEMORY_LIMIT='lots' must be a positive size in bytes, or with K, M, G or T (10^3 … 10^12), e.g. 20G");
  EXPECT_THROWS_WITH(require_disk(dir.path().string(), 1e18, "--tokens 9223372036854775807"),
                     "--tokens 9223372036854775807 needs about 1000000000.0 GB of disk in '" + dir.path().string() + "'");
}

}  // namespace
}  // namespace saelab

namespace saelab {
namespace {

// Runs `write` in a forked child whose files may not grow past `limit` bytes (RLIMIT_FSIZE, with
// SIGXFSZ ignored, so a write fails with EFBIG as on a full disk). Returns the child's error
// message, or "" when `write` returned normally.
std::string with_file_size_limit(rlim_t limit, const std::function<void()>& write) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    signal(SIGXFSZ, SIG_IGN);
    const rlimit r{limit, limit};
    setrlimit(RLIMIT_FSIZE, &r);
    std::string message;
    try {
      write();
    } catch (const std::exception& e) {
      message = test::exception_message(e);
      if (message.empty()) message = "(empty message)";
    }
    const ssize_t n = ::write(fds[1], message.data(), message.size());
    (void)n;
    _exit(0);
  }
  close(fds[1]);
  std::string message;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) message.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) return "the child died (status " + std::to_string(status) + ")";
  return message;
}

bool has_temporaries(const std::string& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.path().filename().string().find(".tmp") != std::string::npos) return true;
  }
  return false;
}

TEST(Hardening, AFullDiskDuringEachKindOfWriteIsOneLineAndLeavesThePreviousFileIntact) {
  test::TempDir dir;
  const std::string big(300000, 'x');
  const torch::Tensor weights = torch::randn({300, 300});
  const struct {
    const char* kind;
    const char* file;
    std::function<void(const std::string&)> write;
  } kinds[] = {
      {"JSON and text (write_file_atomic)", "run.json", [&](const std::string& p) { write_file_atomic(p, big); }},
      {"safetensors (SAE weights, activation shards)", "w.safetensors",
       [&](const std::string& p) { save_safetensors(p, {{"W", weights}}); }},
      {"torch archives (checkpoints, model.pt)", "checkpoint.pt",
       [&](const std::string& p) {
         torch::serialize::OutputArchive archive;
         archive.write("W", weights);
         write_atomic_stream(p, [&](const ByteSink& sink) { archive.save_to(sink); });
       }},
      {"the feature database (SQLite)", "features.sqlite",
       [&](const std::string& p) {
         FeatureDb db = FeatureDb::create(p);
         db.transaction([&] {
           auto insert = db.prepare("INSERT INTO token_features VALUES (?, ?, ?, ?, ?, ?)");
           for (int i = 0; i < 20000; ++i) {
             insert.bind(1, std::string("sae")).bind(2, int64_t{i}).bind(3, std::string(20, static_cast<char>('a' + i % 26))).bind(4, int64_t{i}).bind(5, int64_t{i}).bind(6, 0.5);
             insert.run();
           }
         });
         db.commit();
       }},
  };
  for (const auto& k : kinds) {
    const std::string path = dir / k.file;
    write_file_atomic(path, "previous");
    const std::string message = with_file_size_limit(100000, [&] { k.write(path); });
    EXPECT_FALSE(message.empty()) << k.kind << ": the write did not fail";
    EXPECT_EQ(message.find('\n'), std::string::npos) << k.kind << ": " << message;
    EXPECT_NE(message.find(path), std::string::npos) << k.kind << ": the message does not name the file: " << message;
    EXPECT_EQ(read_file(path, "file"), "previous") << k.kind;
    EXPECT_FALSE(has_temporaries(dir.path().string())) << k.kind;
    // Without the limit the same write succeeds.
    EXPECT_EQ(with_file_size_limit(RLIM_INFINITY, [&] { k.write(path); }), "") << k.kind;
  }
}

}  // namespace
}  // namespace saelab
