// The saelab command line: bad input gives one clear line and a non-zero exit.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/files.h"
#include "core/json_options.h"
#include "models/gpt.h"
#include "models/model_bundle.h"
#include "sae/sae_io.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

std::string saelab(const std::string& args) { return test::saelab_binary() + " --threads 1 " + args; }


void make_model(const std::string& folder, int64_t context = 16) {
  GptConfig c;
  c.vocab_size = 50257;
  c.d_model = 16;
  c.n_layers = 1;
  c.n_heads = 2;
  c.context_length = context;
  auto m = build_gpt(c, 1);
  test::write_model_folder(m, c, folder);
}

TEST(Cli, HelpListsTheSubcommands) {
  const auto r = test::run_command(saelab("--help"));
  EXPECT_EQ(r.exit_code, 0);
  for (const char* cmd : {"train-tokenizer", "train-lm", "generate", "eval-lm", "bench", "demo"}) {
    EXPECT_NE(r.output.find(cmd), std::string::npos) << cmd;
  }
}

// --help shows flags as a user types them: no CLI11 "{false}" notation, and no default beside a
// required option.
TEST(Cli, HelpShowsFlagsWithoutNotationNoiseAndRequiredOptionsWithoutDefaults) {
  const auto top = test::run_command(saelab("top --help"));
  EXPECT_EQ(top.exit_code, 0) << top.output;
  EXPECT_EQ(top.output.find("{false}"), std::string::npos) << top.output;
  EXPECT_NE(top.output.find("--explain, --no-explain"), std::string::npos) << top.output;
  const auto steer = test::run_command(saelab("steer --help"));
  EXPECT_EQ(steer.exit_code, 0) << steer.output;
  const size_t at = steer.output.find("--feature INT");
  ASSERT_NE(at, std::string::npos) << steer.output;
  const std::string line = steer.output.substr(at, steer.output.find('\n', at) - at);
  EXPECT_NE(line.find("REQUIRED"), std::string::npos) << line;
  EXPECT_EQ(line.find('='), std::string::npos) << line;
}

TEST(Cli, GeneratesFromAModelFolder) {
  test::TempDir dir;
  make_model(dir.path().string());
  const auto r = test::run_command(saelab("generate --model " + dir.path().string() +
                                          " --prompt 'The jury' --max-new-tokens 5 --seed 2"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("The jury", 0), 0u) << r.output;
}

TEST(Cli, AMissingModelIsOneClearLine) {
  const auto r = test::run_command(saelab("generate --model /nonexistent/model"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(test::last_line(r.output), "saelab: error: model description '/nonexistent/model' does not exist");
  EXPECT_EQ(r.output.find("Exception raised from"), std::string::npos) << "no stack trace";
}

TEST(Cli, ADeviceOtherThanTheCpuIsRefusedInOneLine) {
  const auto bad = test::run_command(saelab("--device gpu7 generate --model /nonexistent/model"));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_EQ(test::last_line(bad.output), "saelab: error: --device 'gpu7' is not a device (cpu, cuda or cuda:N)");
  const auto cuda = test::run_command(saelab("--device cuda:1 generate --model /nonexistent/model"));
  EXPECT_EQ(cuda.exit_code, 1);
  const std::string expected = torch::cuda::is_available()
                                   ? "saelab: error: --device cuda:1: saelab runs on the CPU only so far (the GPU path is not built yet); use --device cpu"
                                   : "saelab: error: --device cuda:1: this LibTorch has no CUDA (Debian's libtorch is built for the CPU); use --device cpu";
  EXPECT_EQ(test::last_line(cuda.output), expected);
  // cpu is the default and passes through to the command's own check.
  const auto cpu = test::run_command(saelab("--device cpu generate --model /nonexistent/model"));
  EXPECT_EQ(test::last_line(cpu.output), "saelab: error: model description '/nonexistent/model' does not exist");
}

TEST(Cli, ACorruptModelFileIsNamed) {
  test::TempDir dir;
  make_model(dir.path().string());
  write_file_atomic(dir / "model.pt", "garbage");
  const auto r = test::run_command(saelab("generate --model " + dir.path().string()));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(test::last_line(r.output).rfind("saelab: error: model file '" + (dir / "model.pt") +
                                          "' is damaged: no zip end-of-central-directory record",
                                      0),
            0u)
      << r.output;
}

TEST(Cli, ACorruptModelJsonIsNamed) {
  test::TempDir dir;
  make_model(dir.path().string());
  write_file_atomic(dir / "model.json", "{\"format_version\": 1,");
  const auto r = test::run_command(saelab("generate --model " + dir.path().string()));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(test::last_line(r.output).rfind("saelab: error: model description '" + (dir / "model.json") +
                                          "' is not valid JSON",
                                      0),
            0u)
      << r.output;
}

TEST(Cli, AMissingTokenizerIsNamed) {
  test::TempDir dir;
  make_model(dir.path().string());
  json j = load_json_file(dir / "model.json", "model description");
  j["tokenizer"] = {{"kind", "sentencepiece"}, {"model", "nope.model"}};
  write_file_atomic(dir / "model.json", j.dump());
  const auto r = test::run_command(saelab("generate --model " + dir.path().string()));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(test::last_line(r.output), "saelab: error: SentencePiece model '" + (dir / "nope.model") + "' does not exist");
}

TEST(Cli, APromptLongerThanTheContextIsRefused) {
  test::TempDir dir;
  make_model(dir.path().string(), 8);
  const auto r = test::run_command(
      saelab("generate --model " + dir.path().string() + " --prompt 'one two three four five six seven eight'"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(test::last_line(r.output), "saelab: error: prompt of 9 tokens is longer than the model's context length 8");
}

TEST(Cli, AConfigWithAnUnknownKeyIsRefused) {
  test::TempDir dir;
  test::write_text(dir / "cfg.json", R"({"model": {"d_model": 64}, "train": {"stepz": 3}})");
  test::write_text(dir / "tok.model", "x");
  const auto r =
      test::run_command(saelab("train-lm --config " + (dir / "cfg.json") + " --tokenizer " + (dir / "tok.model") +
                               " --out " + (dir / "run")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(test::last_line(r.output).find(": train: unknown key 'stepz'"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "run/model.pt"));
}

TEST(Cli, AnUnknownCorpusIsRefused) {
  test::TempDir dir;
  make_model(dir.path().string());
  const auto r = test::run_command(saelab("eval-lm --model " + dir.path().string() + " --corpus wiki"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(test::last_line(r.output),
            "saelab: error: corpus 'wiki' is not understood (use brown, brown:DIR, text:PATH or jsonl:PATH)");
}

TEST(Cli, CapturesThenTrainsSaesIntoSaeLensDirectories) {
  test::TempDir dir;
  const auto made = test::run_command(SAELAB_TEST_PYTHON " " SAELAB_SOURCE_DIR "/tests/python/make_hf_gpt2.py " +
                                      (dir / "model") + " " + test::gpt2_dir());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const auto cap = test::run_command(saelab("capture --model " + (dir / "model") +
                                            " --hooks blocks.1.hook_resid_pre --tokens 3000 --context-length 32"
                                            " --shard-rows 1000 --out " + (dir / "acts")));
  ASSERT_EQ(cap.exit_code, 0) << cap.output;
  const auto train = test::run_command(saelab("train --store " + (dir / "acts") +
                                              " --architectures topk,standard --k 4,8 --l1 0.5 --expansion 2"
                                              " --steps 30 --batch-size 128 --init-rows 1000 --out " + (dir / "saes")));
  ASSERT_EQ(train.exit_code, 0) << train.output;
  for (const std::string name : {"topk-k4", "topk-k8", "standard-l1_0.5"}) {
    // The hook keeps the name it was captured under (not the point it resolves to).
    const LoadedSae s = load_sae(dir / ("saes/blocks.1.hook_resid_pre/" + name));
    EXPECT_EQ(s.sae.config().d_in, 64) << name;
    EXPECT_EQ(s.sae.config().d_sae, 128) << name;
    EXPECT_EQ(s.metadata.hook_name, "blocks.1.hook_resid_pre");
    EXPECT_EQ(s.metadata.model_name, "tiny-hf-gpt2");
    ASSERT_TRUE(s.log10_density.defined());
    EXPECT_TRUE((s.log10_density <= 0).all().item<bool>());
  }
  // 30 steps x 3 SAEs of metrics.
  const std::string metrics = read_file(dir / "saes/metrics.jsonl", "metrics");
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 90);
}

TEST(Cli, TrainingOnAMissingStoreIsOneClearLine) {
  const auto r = test::run_command(saelab("train --store /nonexistent/acts --hooks blocks.1.input"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(test::last_line(r.output),
            "saelab: error: hook 'blocks.1.input' has no activation store in '/nonexistent/acts' (expected "
            "/nonexistent/acts/blocks.1.input/manifest.json)");
}

}  // namespace
}  // namespace saelab

namespace saelab {
namespace {

TEST(Cli, TrainsFromAJsonConfigAndResumesAfterAStop) {
  test::TempDir dir;
  torch::manual_seed(0);
  test::write_activation_store(dir / "acts/blocks.0.input", torch::randn({1200, 16}), "blocks.0.input", 400);
  test::write_text(dir / "train.json", R"({"store": ")" + (dir / "acts") + R"(", "out": ")" + (dir / "saes") +
                                           R"(", "steps": 12, "batch_size": 64, "init_rows": 300,
      "saes": [{"architecture": "jumprelu", "l1": 1.0, "expansion": 2}, {"architecture": "topk", "k": 3, "expansion": 2}]})");
  const auto first = test::run_command(saelab("train --config " + (dir / "train.json") + " --stop-after 5"));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("stopped at step 5 of 12; rerun the same command to resume"), std::string::npos);
  const auto second = test::run_command(saelab("train --config " + (dir / "train.json")));
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("resuming from step 5"), std::string::npos) << second.output;
  EXPECT_EQ(load_sae(dir / "saes/blocks.0.input/jumprelu-l1_1").sae.config().d_sae, 32);
  EXPECT_EQ(load_sae(dir / "saes/blocks.0.input/topk-k3").sae.config().k, 3);
  // The plan: 12 x 64 rows of a 1,200-row store is less than one pass, so no warning.
  EXPECT_NE(first.output.find("plan: 2 coders on 1 hook(s); 12 steps x 64 rows = 768 rows a hook, from stores of 1200 "
                              "rows: 0.64 passes"), std::string::npos) << first.output;
  EXPECT_EQ(first.output.find("warning: each stored row"), std::string::npos) << first.output;
  // A finished run leaves no lock file, and a rerun says it is complete and rewrites nothing.
  EXPECT_FALSE(fs::exists(dir / "saes/.saelab.lock"));
  const std::string weights = sha256_file(dir / "saes/blocks.0.input/topk-k3/sae_weights.safetensors");
  const auto mtime = fs::last_write_time(dir / "saes/run.json");
  const auto third = test::run_command(saelab("train --config " + (dir / "train.json")));
  ASSERT_EQ(third.exit_code, 0) << third.output;
  EXPECT_NE(third.output.find("saes' is already complete (12 steps, 2 coders): nothing to do"), std::string::npos) << third.output;
  EXPECT_EQ(third.output.find("resuming"), std::string::npos) << third.output;
  EXPECT_EQ(sha256_file(dir / "saes/blocks.0.input/topk-k3/sae_weights.safetensors"), weights);
  EXPECT_EQ(fs::last_write_time(dir / "saes/run.json"), mtime);
  // More steps than the store holds: a warning with the passes; init_rows past the store: refused.
  const auto passes = test::run_command(saelab("train --config " + (dir / "train.json") + " --steps 40 --out " + (dir / "saes2")));
  ASSERT_EQ(passes.exit_code, 0) << passes.output;
  EXPECT_NE(passes.output.find("warning: each stored row is read about 2.1 times"), std::string::npos) << passes.output;
  EXPECT_NE(passes.output.find("saelab capture --tokens 2560"), std::string::npos) << passes.output;
  const auto init = test::run_command(saelab("train --config " + (dir / "train.json") + " --init-rows 5000 --out " + (dir / "saes3")));
  EXPECT_EQ(init.exit_code, 1) << init.output;
  EXPECT_NE(test::last_line(init.output).find("init_rows 5000 is more than the 1200 rows of the store at 'blocks.0.input'"),
            std::string::npos) << init.output;
  EXPECT_FALSE(fs::exists(dir / "saes3/run.json")) << "refused before anything is written";

  test::write_text(dir / "bad.json", R"({"steps": "many"})");
  const auto bad = test::run_command(saelab("train --config " + (dir / "bad.json")));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(test::last_line(bad.output).find("bad.json: key 'steps' must be"), std::string::npos) << bad.output;
}

// Global flags after the command's name; an option a typo away is named; list items trimmed.
TEST(Cli, GlobalFlagsAfterTheCommandNearMissesAndSpacedListsAreUnderstood) {
  const auto after = test::run_command(test::saelab_binary() + " hooks --threads 1 --length 4 2>&1");
  EXPECT_EQ(after.exit_code, 0) << after.output;
  EXPECT_NE(after.output.find("blocks.0.hook_resid_pre"), std::string::npos) << after.output;
  const auto typo = test::run_command(saelab("train --hook blocks.0.input 2>&1"));
  EXPECT_EQ(typo.exit_code, 2) << typo.output;
  EXPECT_EQ(test::last_line(typo.output), "saelab: error: unknown option '--hook' for 'train'; did you mean '--hooks'?");
  const auto far = test::run_command(saelab("top --zzzzzz 2>&1"));
  EXPECT_EQ(far.exit_code, 2) << far.output;
  EXPECT_EQ(test::last_line(far.output), "saelab: error: unknown option '--zzzzzz' for 'top'; see --help");
  const auto global = test::run_command(saelab("--thread 2 hooks 2>&1"));
  EXPECT_EQ(test::last_line(global.output), "saelab: error: unknown option '--thread' for 'hooks'; did you mean '--threads'?");

  test::TempDir dir;
  torch::manual_seed(0);
  test::write_activation_store(dir / "acts/blocks.0.input", torch::randn({600, 8}), "blocks.0.input", 300);
  const auto spaced = test::run_command(saelab("train --store " + (dir / "acts") + " --out " + (dir / "saes") +
                                               " --steps 2 --batch-size 32 --expansion 2 --architectures 'topk, standard' "
                                               "--k ' 4' --l1 '0.5 ' 2>&1"));
  ASSERT_EQ(spaced.exit_code, 0) << spaced.output;
  EXPECT_TRUE(fs::exists(dir / "saes/blocks.0.input/topk-k4/cfg.json")) << spaced.output;
  EXPECT_TRUE(fs::exists(dir / "saes/blocks.0.input/standard-l1_0.5/cfg.json")) << spaced.output;
}

TEST(Cli, BenchSaeReportsTheFourMeasurementsAsJson) {
  const auto r = test::run_command(saelab("bench-sae --d-in 32 --d-sae 512 --k 4 --batch 256 --repeats 1") + " 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = json::parse(r.output);
  for (const char* key : {"a_encoder_gemm", "b_topk_step_sparse", "c_topk_step_dense", "d_standard_step"}) {
    EXPECT_GT(j.at("median_seconds").at(key).get<double>(), 0.0) << key;
  }
  EXPECT_NEAR(j.at("ratios").at("b_over_a").get<double>(),
              j.at("median_seconds").at("b_topk_step_sparse").get<double>() /
                  j.at("median_seconds").at("a_encoder_gemm").get<double>(), 1e-9);
  EXPECT_EQ(j.at("shape").at("d_sae").get<int64_t>(), 512);
}

// The model file and its description are checked when the model is opened (issue 12).
TEST(Cli, ADamagedModelFileIsRefusedBeforeItRuns) {
  test::TempDir dir;
  make_model(dir / "m");
  std::string bytes = read_file(dir / "m/model.pt", "model");
  // Flip one byte of the largest stored tensor: torch's reader would load it and generate garbage.
  const size_t at = bytes.size() / 2;
  bytes[at] = static_cast<char>(bytes[at] ^ 0x5a);
  write_file_atomic(dir / "m/model.pt", bytes);
  auto r = test::run_command(saelab("generate --model " + (dir / "m") + " --max-new-tokens 2"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(test::last_line(r.output).find("model file '" + (dir / "m/model.pt") + "' is damaged: entry '"),
            std::string::npos)
      << r.output;
  write_file_atomic(dir / "m/model.pt", bytes.substr(0, bytes.size() - 100));
  r = test::run_command(saelab("generate --model " + (dir / "m") + " --max-new-tokens 2"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(test::last_line(r.output).find("is damaged: no zip end-of-central-directory record"), std::string::npos)
      << r.output;
}

// A storage record cut short with its CRC rewritten to match: LibTorch's loader would grow the
// storage with uninitialised memory and generate garbage; saelab compares every storage record with
// the size its pickle declares. A syntax error in the model's code is named with the file.
TEST(Cli, AModelWhoseStorageIsShorterThanDeclaredOrWhoseCodeDoesNotCompileIsRefusedNamingTheFile) {
  test::TempDir dir;
  make_model(dir / "m");
  const std::string model = dir / "m/model.pt", original = dir / "original.pt";
  std::filesystem::copy_file(model, original);
  auto rewrite = [&](const char* action) {
    const auto r = test::run_command(SAELAB_TEST_PYTHON " " SAELAB_SOURCE_DIR "/tests/python/rewrite_torch_archive.py " +
                                     original + " " + model + " " + action);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return test::last_line(r.output);
  };
  const std::string storage = rewrite("shorten-storage");
  auto r = test::run_command(saelab("generate --model " + (dir / "m") + " --max-new-tokens 2"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(test::last_line(r.output).find("model file '" + model + "' is damaged: storage '" + storage + "' holds "),
            std::string::npos)
      << r.output;
  EXPECT_NE(test::last_line(r.output).find("but data.pkl declares"), std::string::npos) << r.output;
  r = test::run_command(saelab("hooks " + model));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(test::last_line(r.output).find("is damaged: storage '" + storage + "'"), std::string::npos) << r.output;

  const std::string code = rewrite("break-code");
  r = test::run_command(saelab("generate --model " + (dir / "m") + " --max-new-tokens 2"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(test::last_line(r.output).find("model file '" + model + "' is not a loadable TorchScript file: "),
            std::string::npos)
      << r.output;
  EXPECT_NE(test::last_line(r.output).find("(at " + code + ":"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("Traceback"), std::string::npos) << r.output;

  // The same records rewritten by Python's zipfile load: the checks refuse damage only.
  rewrite("same");
  r = test::run_command(saelab("generate --model " + (dir / "m") + " --max-new-tokens 2"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(Cli, AModelDescriptionThatDoesNotMatchTheModelIsNamedAtOpen) {
  test::TempDir dir;
  make_model(dir / "m", 16);
  json j = load_json_file(dir / "m/model.json", "model");
  j["context_length"] = 64;  // the model has 16 positions
  write_file_atomic(dir / "m/model.json", j.dump());
  auto r = test::run_command(saelab("generate --model " + (dir / "m") + " --max-new-tokens 2"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(test::last_line(r.output).find("fails on 64 tokens (context_length in"), std::string::npos) << r.output;
  j["context_length"] = 16;
  j["vocab_size"] = 60000;  // more than the embedding has
  write_file_atomic(dir / "m/model.json", j.dump());
  r = test::run_command(saelab("generate --model " + (dir / "m") + " --max-new-tokens 2"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(test::last_line(r.output).find("with token id 59999 (vocab_size - 1)"), std::string::npos) << r.output;
  j["vocab_size"] = 50257;
  j["model_file"] = "../elsewhere.pt";
  write_file_atomic(dir / "m/model.json", j.dump());
  r = test::run_command(saelab("generate --model " + (dir / "m")));
  EXPECT_NE(test::last_line(r.output).find("model_file must be a plain file name"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace saelab

namespace saelab {
namespace {

// A model someone traced, as they hold it: a bare model.pt (Hugging Face module names, a tied
// unembedding) and GPT-2's tokenizer files. make_hf_gpt2.py also writes the model.json that
// describes it, the independent truth model-init is checked against.
TEST(ModelInit, ABareTracedModelGetsTheFolderThatDescribesIt) {
  test::TempDir dir;
  const auto made = test::run_command(SAELAB_TEST_PYTHON " " SAELAB_SOURCE_DIR "/tests/python/make_hf_gpt2.py " +
                                      (dir / "made") + " " + test::gpt2_dir() + " 2>&1");
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const std::string pt = dir / "made/model.pt";

  // Every command but hooks asks for a model folder and says how to make one.
  const auto eval = test::run_command(saelab("generate --model " + pt + " --prompt hello 2>&1"));
  EXPECT_EQ(eval.exit_code, 1);
  EXPECT_NE(test::last_line(eval.output).find("is a TorchScript file, but saelab needs a model folder"), std::string::npos)
      << eval.output;
  EXPECT_NE(test::last_line(eval.output).find("saelab model-init " + pt + " --tokenizer"), std::string::npos);

  // hooks runs on the bare file; the tied lm_head receives the final activation, not the weight.
  const auto hooks = test::run_command(saelab("hooks " + pt + " 2>&1"));
  ASSERT_EQ(hooks.exit_code, 0) << hooks.output;
  EXPECT_NE(hooks.output.find("lm_head.input                        [1, 8, 64]"), std::string::npos) << hooks.output;
  EXPECT_NE(hooks.output.find("transformer.h.1.input                [1, 8, 64]"), std::string::npos) << hooks.output;

  const auto init = test::run_command(saelab("model-init " + pt + " --tokenizer " + test::gpt2_dir() + " --out " +
                                             (dir / "folder") + " --name hf-gpt2 2>&1"));
  ASSERT_EQ(init.exit_code, 0) << init.output;
  EXPECT_NE(init.output.find("context_length 32: parameter transformer.wpe.weight [32, 64]"), std::string::npos)
      << init.output;
  // The logit lens is reported with the rest (GPT-2's final norm has a bias: a LayerNorm).
  EXPECT_NE(init.output.find("logit lens: unembedding "), std::string::npos) << init.output;
  EXPECT_NE(init.output.find("(layernorm)"), std::string::npos) << init.output;
  const nlohmann::json got = load_json_file(dir / "folder/model.json", "model-init");
  const nlohmann::json want = load_json_file(dir / "made/model.json", "make_hf_gpt2");
  for (const char* key : {"d_model", "n_layers", "context_length", "vocab_size", "logits"}) {
    EXPECT_EQ(got[key], want[key]) << key;
  }
  // The residual aliases, and TransformerLens' names of the blocks' parts from their submodules.
  for (auto it = want["hook_aliases"].begin(); it != want["hook_aliases"].end(); ++it) {
    EXPECT_EQ(got["hook_aliases"].value(it.key(), nlohmann::json()), it.value()) << it.key();
  }
  EXPECT_EQ(got["hook_aliases"]["blocks.1.hook_resid_mid"], "transformer.h.1.ln_2.input");
  EXPECT_EQ(got["hook_aliases"]["blocks.1.hook_attn_out"], "transformer.h.1.attn.output");
  EXPECT_EQ(got["hook_aliases"]["blocks.1.hook_mlp_out"], "transformer.h.1.mlp.output");
  // The folder works as a model: the same logits as the described one.
  LanguageModel a = LanguageModel::open(dir / "folder"), b = LanguageModel::open(dir / "made");
  const torch::Tensor tokens = torch::randint(0, 50257, {2, 12}, torch::kInt64);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(a.logits(tokens), b.logits(tokens)));
  // An existing folder is not written into.
  const auto again = test::run_command(saelab("model-init " + pt + " --tokenizer " + test::gpt2_dir() + " --out " +
                                              (dir / "folder") + " 2>&1"));
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(test::last_line(again.output).find("already exists"), std::string::npos) << again.output;
}

}  // namespace
}  // namespace saelab
