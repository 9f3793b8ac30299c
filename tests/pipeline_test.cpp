// The main job end to end (`saelab demo --quick`), its stage cache, and its report in a real browser.
#include <gtest/gtest.h>

#include <filesystem>

#include "analysis/feature_db.h"
#include "core/files.h"
#include "core/json_options.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

std::string saelab_cmd(const std::string& args) { return test::saelab_binary() + " " + args; }

// The demo's config with a smaller --quick plan: two residual hooks with three SAEs each (the graph's
// topk-k32 among them) and two MLP transcoders, so that every stage, the replacement model and the
// report run their real code in about a minute. The user's --quick plan is the same code on more
// hooks, coders and steps.
json small_quick_config() {
  json cfg = load_json_file(SAELAB_SOURCE_DIR "/configs/demo.json", "demo config");
  json& q = cfg["quick"];
  q["capture"] = {{"tokens", 20000}, {"hooks", {"blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre"}}};
  q["train"]["steps"] = 40;
  q["train"]["saes"] = {{{"architecture", "topk"}, {"k", 32}},
                        {{"architecture", "batchtopk"}, {"k", 32}},
                        {{"architecture", "jumprelu"}, {"l1", 1.0}}};
  q["train"]["hooks"] = {"blocks.1.hook_resid_mid", "blocks.2.hook_resid_mid"};
  q["train"]["targets"] = {"blocks.1.hook_mlp_out", "blocks.2.hook_mlp_out"};
  q["steer"]["layer"] = 1;  // the second hook of the graph's chain
  q["top"]["contexts"] = 24;
  q["explain"]["features"] = 6;
  q["report"]["features_per_sae"] = 8;
  return cfg;
}

TEST(Pipeline, QuickDemoRunsEndToEndCachesItsStagesAndRendersInABrowser) {
  test::TempDir dir;
  const std::string out = dir / "demo";
  json cfg = small_quick_config();
  test::write_text(dir / "small.json", cfg.dump());
  const std::string demo = "demo --quick --config " + (dir / "small.json") + " --out " + out;
  const auto first = test::run_command(saelab_cmd(demo));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  for (const char* stage : {"capture", "train", "eval", "top", "graph", "steer", "report"}) {
    EXPECT_NE(first.output.find(std::string("[") + stage + "] done"), std::string::npos) << stage;
  }
  EXPECT_NE(first.output.find("report: " + out + "/report/index.html"), std::string::npos) << first.output;
  // 2 hooks x 3 SAEs and 2 MLP transcoders, every one evaluated, under both conventions, SAEs with
  // absorption, and dead / dense from the training densities; the 2 transcoders also at once.
  const json eval = load_json_file(out + "/eval.json", "eval");
  EXPECT_EQ(eval.at("saes").size(), 8u);
  ASSERT_EQ(eval.at("replacements").size(), 1u);
  EXPECT_EQ(eval.at("replacements")[0].at("name"), "tc-topk-k32");
  EXPECT_EQ(eval.at("replacements")[0].at("coders").size(), 2u);
  EXPECT_GT(eval.at("replacements")[0].at("ce_replaced").get<double>(), eval.at("replacements")[0].at("ce_clean").get<double>());
  int transcoders = 0;
  for (const auto& e : eval.at("saes")) {
    if (e.contains("hook_out")) {
      ++transcoders;
      EXPECT_EQ(e.at("name").get<std::string>().find("__"), e.at("hook").get<std::string>().size()) << e.at("name");
      EXPECT_LT(e.at("fvu").get<double>(), 1.0) << e.at("name");
      continue;
    }
    EXPECT_TRUE(std::isfinite(e.at("loss_recovered_vs_zero").get<double>())) << e.at("name");
    EXPECT_GT(e.at("l0").get<double>(), 0.0) << e.at("name");
    EXPECT_TRUE(std::isfinite(e.at("kl_div_score").get<double>())) << e.at("name");
    EXPECT_TRUE(std::isfinite(e.at("saelens_convention").at("loss_recovered_vs_zero").get<double>())) << e.at("name");
    EXPECT_GT(e.at("absorption").at("letters").get<int64_t>(), 0) << e.at("name");
    EXPECT_EQ(e.at("density_source"), "training") << e.at("name");
  }
  EXPECT_EQ(transcoders, 2);

  // Rerun: every stage is cached.
  const auto again = test::run_command(saelab_cmd(demo));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(test::count(again.output, "] cached"), 7) << again.output;

  // A changed steering option reruns steering and the report only.
  cfg["quick"]["steer"]["alphas"] = json::array({0, 24});
  test::write_text(dir / "changed.json", cfg.dump());
  const auto changed = test::run_command(saelab_cmd("demo --quick --config " + (dir / "changed.json") + " --out " + out));
  ASSERT_EQ(changed.exit_code, 0) << changed.output;
  EXPECT_EQ(test::count(changed.output, "] cached"), 5) << changed.output;
  EXPECT_NE(changed.output.find("[steer] done"), std::string::npos);
  EXPECT_NE(changed.output.find("[report] done"), std::string::npos);

  // The report in a real browser: overview, plot and a feature page render, with no script errors.
  const std::string page = "file://" + out + "/report/index.html";
  const std::string dom = test::chromium_dom(page);
  EXPECT_NE(test::body_tag(dom).find("data-rendered=\"yes\""), std::string::npos) << test::body_tag(dom);
  EXPECT_EQ(test::body_tag(dom).find("data-errors"), std::string::npos) << test::body_tag(dom);
  EXPECT_EQ(test::count(dom, "class=\"sae-row\""), 8);
  EXPECT_NE(dom.find("saelens: hook replaced at every position"), std::string::npos);
  EXPECT_NE(dom.find("<polyline"), std::string::npos);
  EXPECT_NE(dom.find("id=\"feature-title\""), std::string::npos);
  FeatureDb db = FeatureDb::open(out + "/features.sqlite");
  const json f = db.query("SELECT sae, feature FROM explanations ORDER BY score DESC LIMIT 1").at(0);
  const std::string sae = f.at("sae").get<std::string>();
  const int64_t feature = f.at("feature").get<int64_t>();
  std::string encoded;
  for (char c : sae) encoded += c == '/' ? std::string("%2F") : std::string(1, c);
  const std::string feature_dom = test::chromium_dom(page + "#f=" + encoded + ":" + std::to_string(feature));
  EXPECT_NE(feature_dom.find(">" + sae + " — feature " + std::to_string(feature) + "<"), std::string::npos)
      << feature_dom.substr(0, 3000);
  EXPECT_NE(feature_dom.find("id=\"explanation\""), std::string::npos);
  EXPECT_EQ(test::body_tag(feature_dom).find("data-errors"), std::string::npos) << test::body_tag(feature_dom);
  test::chromium_screenshot(page, SAELAB_BINARY_DIR "/report-screenshot.png");

  // The features exported for Neuronpedia, read back as its import path reads them and checked
  // against the database by an independent reader (tests/python/neuronpedia_check.py).
  const auto np = test::run_command(saelab_cmd("export-neuronpedia " + out + "/features.sqlite " + (dir / "np") + " 2>&1"));
  ASSERT_EQ(np.exit_code, 0) << np.output;
  const auto check = test::run_command(SAELAB_TEST_PYTHON " " SAELAB_SOURCE_DIR "/tests/python/neuronpedia_check.py " +
                                       (dir / "np") + " " + out + "/features.sqlite 2>&1");
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_EQ(check.output.rfind("ok ", 0), 0u) << check.output;
}

TEST(Pipeline, AConfigWithAnUnknownKeyOrWrongTypeIsOneClearLine) {
  test::TempDir dir;
  json cfg = load_json_file(SAELAB_SOURCE_DIR "/configs/demo.json", "demo config");
  cfg["capture"]["tokenz"] = 5;
  test::write_text(dir / "bad.json", cfg.dump());
  const auto r = test::run_command(saelab_cmd("demo --check --config " + (dir / "bad.json")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(test::last_line(r.output).rfind("saelab: error: " + (dir / "bad.json") + ": capture: unknown key 'tokenz'", 0), 0u)
      << r.output;
  cfg = load_json_file(SAELAB_SOURCE_DIR "/configs/demo.json", "demo config");
  cfg["train"]["steps"] = "many";
  test::write_text(dir / "bad2.json", cfg.dump());
  const auto r2 = test::run_command(saelab_cmd("demo --check --config " + (dir / "bad2.json")));
  EXPECT_EQ(r2.exit_code, 1);
  EXPECT_NE(test::last_line(r2.output).find(": train: key 'steps' must be"), std::string::npos) << r2.output;
  const auto ok = test::run_command(saelab_cmd("demo --check"));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

}  // namespace
}  // namespace saelab

namespace saelab {
namespace {

// A study small enough to run many times: one hook pair, two SAEs, a few hundred steps' worth of
// nothing. Each stage still runs its real code.
std::string tiny_study(const test::TempDir& dir) {
  json cfg = load_json_file(SAELAB_SOURCE_DIR "/configs/demo.json", "demo config");
  cfg.erase("quick");
  cfg["capture"] = {{"hooks", {"blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"}}, {"tokens", 4096}, {"batch_size", 16}};
  cfg["train"] = {{"steps", 12}, {"batch_size", 256}, {"checkpoint_every", 5}, {"expansion", 1},
                  {"saes", {{{"architecture", "topk"}, {"k", 8}}, {{"architecture", "standard"}, {"l1", 3.0}}}}};
  cfg["eval"] = {{"contexts", 4}, {"context_length", 32}};
  cfg["top"] = {{"contexts", 8}, {"context_length", 32}, {"top_k", 4}, {"logit_tokens", 4}};
  cfg["explain"] = {{"features", 4}};
  cfg["graph"] = {{"name", "topk-k8"}, {"ablated_features", 2}, {"ablation_contexts", 2}};
  cfg["steer"] = {{"features", 1}, {"layer", 1}, {"alphas", {0, 8}}, {"max_new_tokens", 4}, {"temperature", 0}};
  cfg["report"] = {{"features_per_sae", 4}};
  test::write_text(dir / "tiny.json", cfg.dump());
  return dir / "tiny.json";
}

TEST(Pipeline, AKillAtEveryStageResumesToTheUninterruptedResult) {
  test::TempDir dir;
  const std::string config = tiny_study(dir);
  const auto clean = test::run_command(saelab_cmd("--threads 1 demo --config " + config + " --out " + (dir / "clean")));
  ASSERT_EQ(clean.exit_code, 0) << clean.output;
  // SIGKILL as each stage finishes its work but before it is stamped done (and, for the first
  // stages, as they start); every rerun resumes, and the last one completes.
  const std::string out = dir / "killed";
  const std::vector<std::string> faults = {"stage_started:1", "stage_finishing:1", "stage_started:2", "stage_finishing:2",
                                           "stage_finishing:3", "stage_finishing:4", "stage_finishing:5",
                                           "stage_finishing:6", "stage_finishing:7"};
  for (const auto& fault : faults) {
    const auto r = test::run_command("SAELAB_FAULT=" + fault + " " +
                                     saelab_cmd("--threads 1 demo --config " + config + " --out " + out));
    EXPECT_NE(r.exit_code, 0) << fault << ": the fault point was not reached\n" << r.output;
  }
  const auto last = test::run_command(saelab_cmd("--threads 1 demo --config " + config + " --out " + out));
  ASSERT_EQ(last.exit_code, 0) << last.output;
  // Results compare equal but for the folder they name.
  auto same = [&](const std::string& file) {
    std::string a = read_file(out + "/" + file, file), b = read_file(dir / ("clean/" + file), file);
    for (std::string* s : {&a, &b}) {
      for (const std::string& folder : {out, dir / "clean"}) {
        for (size_t at = s->find(folder); at != std::string::npos; at = s->find(folder)) s->replace(at, folder.size(), "OUT");
      }
    }
    return a == b;
  };
  for (const char* file : {"eval.json", "graph.json", "steering.json", "interp.json", "tradeoff.svg",
                           "acts/blocks.0.hook_resid_pre/manifest.json", "acts/blocks.1.hook_resid_pre/shard-00000.safetensors",
                           "saes/blocks.1.hook_resid_pre/topk-k8/sae_weights.safetensors", "saes/run.json"}) {
    EXPECT_TRUE(same(file)) << file;
  }
  FeatureDb a = FeatureDb::open(out + "/features.sqlite"), b = FeatureDb::open(dir / "clean/features.sqlite");
  const char* q = "SELECT sae, feature, kind, rank, band, activation, context, position FROM examples ORDER BY id";
  EXPECT_EQ(a.query(q), b.query(q));
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
}

TEST(Pipeline, ChangingOnlyGraphNameRerunsTheSteeringOnTheNewChain) {
  test::TempDir dir;
  const std::string config = tiny_study(dir);
  const auto first = test::run_command(saelab_cmd("--threads 1 demo --config " + config + " --out " + (dir / "out")));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(load_json_file(dir / "out/steering.json", "steering")["sae"], "blocks.1.hook_resid_pre/topk-k8");
  json cfg = load_json_file(config, "tiny study");
  cfg["graph"]["name"] = "standard-l1_3";
  test::write_text(dir / "other.json", cfg.dump());
  const auto second = test::run_command(saelab_cmd("--threads 1 demo --config " + (dir / "other.json") + " --out " + (dir / "out")));
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(load_json_file(dir / "out/steering.json", "steering")["sae"], "blocks.1.hook_resid_pre/standard-l1_3");
}

TEST(Pipeline, TrainSourceModelStreamsTheCapturePlanIntoTrainingWithoutAStore) {
  test::TempDir dir;
  json cfg = load_json_file(tiny_study(dir), "tiny");
  cfg["train"]["source"] = "model";
  cfg["train"]["buffer_rows"] = 1024;
  test::write_text(dir / "stream.json", cfg.dump());
  const auto r = test::run_command(saelab_cmd("--threads 1 demo --config " + (dir / "stream.json") + " --out " + (dir / "out")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out/acts"));
  EXPECT_EQ(r.output.find("[capture] running"), std::string::npos) << r.output;
  const json run = json::parse(read_file(dir / "out/saes/run.json", "run"));
  EXPECT_EQ(run.at("stream").at("tokens"), 4096);
  EXPECT_EQ(run.at("stream").at("buffer_rows"), 1024);
  EXPECT_TRUE(fs::exists(dir / "out/saes/blocks.1.hook_resid_pre/topk-k8/sae_weights.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "out/eval.json"));
  EXPECT_TRUE(fs::exists(dir / "out/report/index.html"));

  cfg["train"]["source"] = "disk";
  test::write_text(dir / "bad.json", cfg.dump());
  const auto bad = test::run_command(saelab_cmd("demo --check --config " + (dir / "bad.json")));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(test::last_line(bad.output).find(": train.source must be \"store\" (capture to disk, then train) or \"model\""),
            std::string::npos)
      << bad.output;
}

TEST(Pipeline, CheckOpensTheModelAndFindsWhatWouldFailLater) {
  test::TempDir dir;
  const json base = load_json_file(tiny_study(dir), "tiny");
  const struct {
    const char* section;
    const char* key;
    json value;
    const char* message;
  } cases[] = {
      {"capture", "hooks", json::array({"blocks.0.hook_resid_pre", "blocks.9.hook_resid_pre"}), "capture.hooks: unknown hook point"},
      {"steer", "layer", 99, "steer.layer: 99 is past the chain of 2 hooks"},
      {"graph", "name", "nope", "graph.name: 'nope' is none of the SAEs trained (topk-k8, standard-l1_3)"},
      {"explain", "features", -1, "explain: key 'features' must be at least 1 (got -1)"},
      {"eval", "context_length", 4096, "eval.context_length: 4096 is longer than the model's context_length 128"},
      {"capture", "tokens", 4000000000000000LL, "capture.tokens 4000000000000000 needs about"},
  };
  for (const auto& c : cases) {
    json cfg = base;
    cfg[c.section][c.key] = c.value;
    test::write_text(dir / "bad.json", cfg.dump());
    const auto r = test::run_command(saelab_cmd("demo --check --config " + (dir / "bad.json")));
    EXPECT_EQ(r.exit_code, 1) << c.section << "." << c.key << ": " << r.output;
    EXPECT_NE(test::last_line(r.output).find(c.message), std::string::npos) << r.output;
  }
  json cfg = base;
  cfg["train"]["saes"][0]["k"] = 1000;  // d_sae = 1 x 256
  test::write_text(dir / "bad.json", cfg.dump());
  auto r = test::run_command(saelab_cmd("demo --check --config " + (dir / "bad.json")));
  EXPECT_NE(test::last_line(r.output).find("train: SAE 'topk-k1000': k 1000 exceeds its d_sae 256"), std::string::npos)
      << r.output;
  cfg = base;
  cfg["model"] = "/nonexistent/model";
  test::write_text(dir / "bad.json", cfg.dump());
  r = test::run_command(saelab_cmd("demo --check --config " + (dir / "bad.json")));
  EXPECT_NE(test::last_line(r.output).find("model description '/nonexistent/model' does not exist"), std::string::npos) << r.output;
  // A model whose logit lens cannot be found: said before any stage runs, not at the top stage.
  fs::create_directories(dir / "m");
  for (const char* f : {"model.pt", "tokenizer.model"}) fs::copy_file(std::string(SAELAB_SOURCE_DIR "/assets/brown-gpt/") + f, fs::path(dir / "m") / f);
  json mj = load_json_file(SAELAB_SOURCE_DIR "/assets/brown-gpt/model.json", "model");
  mj["logit_lens"] = {{"final_norm", "nope.weight"}};
  test::write_text(dir / "m/model.json", mj.dump());
  cfg = base;
  cfg["model"] = dir / "m";
  test::write_text(dir / "bad.json", cfg.dump());
  r = test::run_command(saelab_cmd("demo --check --config " + (dir / "bad.json")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(test::last_line(r.output).find(": model: model.json logit_lens.final_norm names 'nope.weight'"),
            std::string::npos) << r.output;
  cfg = base;
  cfg["train"]["saes"][0]["name"] = "../../victim";
  test::write_text(dir / "bad.json", cfg.dump());
  r = test::run_command(saelab_cmd("demo --check --config " + (dir / "bad.json")));
  EXPECT_NE(test::last_line(r.output).find("train: saes[0]: key 'name' must be a plain file name"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace saelab
