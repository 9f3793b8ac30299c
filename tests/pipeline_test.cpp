// The main job end to end (`saelab demo --quick`), its stage cache, and its report in a real browser.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "analysis/feature_db.h"
#include "analysis/logit_effects.h"
#include "models/hooked_model.h"
#include "study/report.h"
#include "core/files.h"
#include "core/json_options.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

std::string saelab_cmd(const std::string& args) { return test::saelab_binary() + " " + args; }


// Headless Chromium (Debian's package, installed by scripts/setup): the DOM after scripts ran.
std::string chromium_dom(const std::string& url) {
  const char* bin = "/usr/bin/chromium";
  EXPECT_TRUE(fs::exists(bin)) << "chromium is not installed (scripts/setup installs it)";
  const auto r = test::run_command(std::string(bin) +
                                   " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run"
                                   " --virtual-time-budget=10000 --dump-dom '" + url + "' 2>/dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.output;
}

void chromium_screenshot(const std::string& url, const std::string& png) {
  const auto r = test::run_command("/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage"
                                   " --no-first-run --hide-scrollbars --window-size=1280,2000 --virtual-time-budget=10000"
                                   " --screenshot='" + png + "' '" + url + "' 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(png)) << r.output;
}

// The opening <body ...> tag of a DOM dump: the page records script errors (and a hostile
// payload would record itself) as attributes there.
std::string body_tag(const std::string& dom) {
  const size_t b = dom.find("<body");
  return b == std::string::npos ? std::string() : dom.substr(b, dom.find('>', b) - b + 1);
}

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

TEST(Pipeline, QuickDemoRunsEndToEndCachesItsStagesAndRendersInABrowser) {
  test::TempDir dir;
  const std::string out = dir / "demo";
  const auto first = test::run_command(saelab_cmd("demo --quick --out " + out));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  for (const char* stage : {"capture", "train", "eval", "top", "graph", "steer", "report"}) {
    EXPECT_NE(first.output.find(std::string("[") + stage + "] done"), std::string::npos) << stage;
  }
  EXPECT_NE(first.output.find("report: " + out + "/report/index.html"), std::string::npos) << first.output;
  // 4 hooks x 6 SAEs, every one evaluated.
  const json eval = load_json_file(out + "/eval.json", "eval");
  EXPECT_EQ(eval.at("saes").size(), 24u);
  for (const auto& e : eval.at("saes")) {
    EXPECT_TRUE(std::isfinite(e.at("loss_recovered_vs_zero").get<double>())) << e.at("name");
    EXPECT_GT(e.at("l0").get<double>(), 0.0) << e.at("name");
  }

  // Rerun: every stage is cached.
  const auto again = test::run_command(saelab_cmd("demo --quick --out " + out));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(count(again.output, "] cached"), 7) << again.output;

  // A changed steering option reruns steering and the report only.
  json cfg = load_json_file(SAELAB_SOURCE_DIR "/configs/demo.json", "demo config");
  cfg["quick"]["steer"]["alphas"] = json::array({0, 24});
  test::write_text(dir / "changed.json", cfg.dump());
  const auto changed = test::run_command(saelab_cmd("demo --quick --config " + (dir / "changed.json") + " --out " + out));
  ASSERT_EQ(changed.exit_code, 0) << changed.output;
  EXPECT_EQ(count(changed.output, "] cached"), 5) << changed.output;
  EXPECT_NE(changed.output.find("[steer] done"), std::string::npos);
  EXPECT_NE(changed.output.find("[report] done"), std::string::npos);

  // The report in a real browser: overview, plot and a feature page render, with no script errors.
  const std::string page = "file://" + out + "/report/index.html";
  const std::string dom = chromium_dom(page);
  EXPECT_NE(body_tag(dom).find("data-rendered=\"yes\""), std::string::npos) << body_tag(dom);
  EXPECT_EQ(body_tag(dom).find("data-errors"), std::string::npos) << body_tag(dom);
  EXPECT_EQ(count(dom, "class=\"sae-row\""), 24);
  EXPECT_NE(dom.find("<polyline"), std::string::npos);
  EXPECT_NE(dom.find("id=\"feature-title\""), std::string::npos);
  FeatureDb db = FeatureDb::open(out + "/features.sqlite");
  const json f = db.query("SELECT sae, feature FROM explanations ORDER BY score DESC LIMIT 1").at(0);
  const std::string sae = f.at("sae").get<std::string>();
  const int64_t feature = f.at("feature").get<int64_t>();
  std::string encoded;
  for (char c : sae) encoded += c == '/' ? std::string("%2F") : std::string(1, c);
  const std::string feature_dom = chromium_dom(page + "#f=" + encoded + ":" + std::to_string(feature));
  EXPECT_NE(feature_dom.find(">" + sae + " — feature " + std::to_string(feature) + "<"), std::string::npos)
      << feature_dom.substr(0, 3000);
  EXPECT_NE(feature_dom.find("id=\"explanation\""), std::string::npos);
  EXPECT_EQ(body_tag(feature_dom).find("data-errors"), std::string::npos) << body_tag(feature_dom);
  chromium_screenshot(page, SAELAB_BINARY_DIR "/report-screenshot.png");
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

TEST(Report, HostileTokenTextIsShownAsTextAndNeverRunsInABrowser) {
  test::TempDir dir;
  const std::string hostile = "<script>document.body.setAttribute('data-pwned','1')</script>";
  const std::string hostile_img = "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">";
  // Minimal stage outputs: one SAE, one feature whose example and logit tokens are hostile.
  json eval = {{"saes", json::array({{{"name", "h/evil</script>"}, {"hook", "blocks.0.input"}, {"architecture", "topk"},
                                      {"l0", 3.0}, {"fvu", 0.2}, {"loss_recovered_vs_zero", 0.9}, {"kl", 0.1},
                                      {"dead_fraction", 0.0},
                                      {"density_histogram", {{"log10_edges", json::array({-1, -0.5, 0})},
                                                             {"counts", json::array({1, 2})}}}}})}};
  test::write_text(dir / "eval.json", eval.dump());
  {
    FeatureDb db = FeatureDb::create(dir / "f.sqlite");
    db.exec("BEGIN");
    db.prepare("INSERT INTO features(sae, feature, density, mean_activation, max_activation) VALUES (?, 0, 0.01, 1, 2)")
        .bind(1, std::string("h/evil</script>")).run();
    db.prepare("INSERT INTO examples(sae, feature, kind, rank, band, activation, context, position, doc) "
               "VALUES (?, 0, 'top', 0, -1, 2.0, 0, 1, 'ca01')")
        .bind(1, std::string("h/evil</script>")).run();
    auto tok = db.prepare("INSERT INTO example_tokens(example_id, offset, token_id, token, activation) VALUES (1, ?, 0, ?, ?)");
    tok.bind(1, int64_t{-1}).bind(2, hostile).bind(3, 0.5).run();
    tok.bind(1, int64_t{0}).bind(2, hostile_img).bind(3, 2.0).run();
    db.prepare("INSERT INTO logit_effects(sae, feature, direction, rank, token_id, token, effect) VALUES (?, 0, 'promoted', 0, 5, ?, 1.5)")
        .bind(1, std::string("h/evil</script>")).bind(2, hostile).run();
    db.prepare("INSERT INTO explanations(sae, feature, explainer, explanation, rule, explain_score, score, scored_tokens) "
               "VALUES (?, 0, 'rules', ?, '{}', 0.9, 0.8, 10)")
        .bind(1, std::string("h/evil</script>")).bind(2, "token ∈ {\"" + hostile + "\"}").run();
    db.exec("COMMIT");
    db.commit();
  }
  ReportInputs in;
  in.title = "report <b>bold</b>";
  in.eval_json = dir / "eval.json";
  in.features_db = dir / "f.sqlite";
  write_report(in, dir / "report");
  const std::string html = read_file(dir / "report/index.html", "report");
  EXPECT_EQ(html.find(hostile), std::string::npos) << "raw hostile text in the page source";
  EXPECT_EQ(html.find("evil</script>"), std::string::npos);
  const std::string dom = chromium_dom("file://" + (dir / "report/index.html") + "#f=h%2Fevil%3C%2Fscript%3E:0");
  EXPECT_NE(body_tag(dom).find("data-rendered=\"yes\""), std::string::npos) << body_tag(dom);
  EXPECT_EQ(body_tag(dom).find("data-pwned"), std::string::npos) << "hostile text ran as code";
  EXPECT_EQ(body_tag(dom).find("data-errors"), std::string::npos) << body_tag(dom);
  EXPECT_NE(dom.find("&lt;script&gt;document.body.setAttribute"), std::string::npos) << "hostile text not shown as text";
  EXPECT_NE(dom.find("&lt;img src=x onerror="), std::string::npos);
  EXPECT_EQ(dom.find("<img"), std::string::npos);
}

torch::Tensor read_bin(const std::string& path, torch::Dtype dtype, std::vector<int64_t> shape) {
  const std::string bytes = read_file(path, "reference tensor");
  return torch::from_blob(const_cast<char*>(bytes.data()), shape, dtype).clone();
}

TEST(ExportHf, WritesATracedModelAndModelJsonThatSaelabOpensHooksAndReadsLogitsFrom) {
  test::TempDir dir;
  const auto made = test::run_command("/usr/bin/python3 " SAELAB_SOURCE_DIR "/tests/python/export_tiny.py " +
                                      (dir / "m") + " " + test::gpt2_dir());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  LanguageModel lm = LanguageModel::open(dir / "m");
  EXPECT_EQ(lm.info().n_layers, 3);
  EXPECT_EQ(lm.tokenizer().encode_ids("Hello world"), (std::vector<int64_t>{15496, 995}));
  // Traced at length 8, run at 12: logits equal the eager PyTorch model's.
  const torch::Tensor tokens = read_bin(dir / "m/tokens.bin", torch::kInt64, {2, 12});
  const torch::Tensor expected = read_bin(dir / "m/logits.bin", torch::kFloat32, {2, 12, 50257});
  torch::NoGradGuard g;
  EXPECT_TRUE(test::all_close(lm.logits(tokens), expected, 1e-5, 0));
  HookedModel hooked(lm.module(), lm.info().hook_aliases);
  EXPECT_EQ(hooked.resolve("blocks.1.hook_resid_pre"), "transformer.h.1.input");
  const Unembedding u = find_unembedding(lm);
  EXPECT_EQ(u.unembed_name, "lm_head.weight");
  EXPECT_EQ(u.ln_name, "transformer.ln_f.weight");
  EXPECT_EQ(u.W_U.sizes(), (std::vector<int64_t>{64, 50257}));
}

TEST(Report, ScriptSafeJsonEscapesEveryLessThanSign) {
  EXPECT_EQ(script_safe_json(R"({"a":"</script><b>"})"), R"({"a":"\u003c/script>\u003cb>"})");
  EXPECT_EQ(json::parse(script_safe_json(R"({"a":"</script>"})")).at("a"), "</script>");
}

}  // namespace
}  // namespace saelab
