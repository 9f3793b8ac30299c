// The saelab command line: bad input gives one clear line and a non-zero exit.
#include <gtest/gtest.h>

#include "core/files.h"
#include "core/json_options.h"
#include "models/gpt.h"
#include "models/model_bundle.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

std::string saelab(const std::string& args) { return test::saelab_binary() + " --threads 1 " + args; }

// The last line of the output, which is where the error goes.
std::string last_line(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

void make_model(const std::string& folder, int64_t context = 16) {
  GptConfig c;
  c.vocab_size = 50257;
  c.d_model = 16;
  c.n_layers = 1;
  c.n_heads = 2;
  c.context_length = context;
  auto m = build_gpt(c, 1);
  ModelInfo info;
  info.name = "cli-test";
  info.d_model = c.d_model;
  info.n_layers = c.n_layers;
  info.context_length = c.context_length;
  info.vocab_size = c.vocab_size;
  info.tokenizer = {{"kind", "gpt2"},
                    {"encoder", test::gpt2_dir() + "/encoder.json"},
                    {"merges", test::gpt2_dir() + "/vocab.bpe"}};
  save_model_folder(m, info, folder);
}

TEST(Cli, HelpListsTheSubcommands) {
  const auto r = test::run_command(saelab("--help"));
  EXPECT_EQ(r.exit_code, 0);
  for (const char* cmd : {"train-tokenizer", "train-lm", "generate", "eval-lm", "bench", "demo"}) {
    EXPECT_NE(r.output.find(cmd), std::string::npos) << cmd;
  }
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
  EXPECT_EQ(last_line(r.output), "saelab: error: model description '/nonexistent/model' does not exist");
  EXPECT_EQ(r.output.find("Exception raised from"), std::string::npos) << "no stack trace";
}

TEST(Cli, ACorruptModelFileIsNamed) {
  test::TempDir dir;
  make_model(dir.path().string());
  write_file_atomic(dir / "model.pt", "garbage");
  const auto r = test::run_command(saelab("generate --model " + dir.path().string()));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(last_line(r.output).rfind("saelab: error: model file '" + (dir / "model.pt") +
                                          "' is not a loadable TorchScript file",
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
  EXPECT_EQ(last_line(r.output).rfind("saelab: error: model description '" + (dir / "model.json") +
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
  EXPECT_EQ(last_line(r.output), "saelab: error: SentencePiece model '" + (dir / "nope.model") + "' does not exist");
}

TEST(Cli, APromptLongerThanTheContextIsRefused) {
  test::TempDir dir;
  make_model(dir.path().string(), 8);
  const auto r = test::run_command(
      saelab("generate --model " + dir.path().string() + " --prompt 'one two three four five six seven eight'"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(last_line(r.output), "saelab: error: prompt of 9 tokens is longer than the model's context length 8");
}

TEST(Cli, AConfigWithAnUnknownKeyIsRefused) {
  test::TempDir dir;
  test::write_text(dir / "cfg.json", R"({"model": {"d_model": 64}, "train": {"stepz": 3}})");
  test::write_text(dir / "tok.model", "x");
  const auto r =
      test::run_command(saelab("train-lm --config " + (dir / "cfg.json") + " --tokenizer " + (dir / "tok.model") +
                               " --out " + (dir / "run")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(last_line(r.output).find(": train: unknown key 'stepz'"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "run/model.pt"));
}

TEST(Cli, AnUnknownCorpusIsRefused) {
  test::TempDir dir;
  make_model(dir.path().string());
  const auto r = test::run_command(saelab("eval-lm --model " + dir.path().string() + " --corpus wiki"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(last_line(r.output),
            "saelab: error: corpus 'wiki' is not understood (use brown, brown:DIR, text:PATH or jsonl:PATH)");
}

}  // namespace
}  // namespace saelab
