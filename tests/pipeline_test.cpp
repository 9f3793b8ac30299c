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
  EXPECT_EQ(test::count(again.output, "] cached"), 7) << again.output;

  // A changed steering option reruns steering and the report only.
  json cfg = load_json_file(SAELAB_SOURCE_DIR "/configs/demo.json", "demo config");
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
  EXPECT_EQ(test::count(dom, "class=\"sae-row\""), 24);
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
