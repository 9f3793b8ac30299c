// The study's HTML report (study/report.h): hostile corpus text stays text in a real browser.
#include <gtest/gtest.h>

#include <filesystem>

#include "analysis/feature_db.h"
#include "core/files.h"
#include "core/json_options.h"
#include "study/report.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

namespace fs = std::filesystem;

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
  const std::string dom = test::chromium_dom("file://" + (dir / "report/index.html") + "#f=h%2Fevil%3C%2Fscript%3E:0");
  EXPECT_NE(test::body_tag(dom).find("data-rendered=\"yes\""), std::string::npos) << test::body_tag(dom);
  EXPECT_EQ(test::body_tag(dom).find("data-pwned"), std::string::npos) << "hostile text ran as code";
  EXPECT_EQ(test::body_tag(dom).find("data-errors"), std::string::npos) << test::body_tag(dom);
  EXPECT_NE(dom.find("&lt;script&gt;document.body.setAttribute"), std::string::npos) << "hostile text not shown as text";
  EXPECT_NE(dom.find("&lt;img src=x onerror="), std::string::npos);
  EXPECT_EQ(dom.find("<img"), std::string::npos);
  // The sort menu names the score the report shows (a rule's alignment, not an LLM auto-interp).
  EXPECT_NE(dom.find("<option value=\"score\">annotation-alignment r</option>"), std::string::npos);
  EXPECT_EQ(dom.find(">auto-interp score</option>"), std::string::npos);
}


TEST(Report, ScriptSafeJsonEscapesEveryLessThanSign) {
  EXPECT_EQ(script_safe_json(R"({"a":"</script><b>"})"), R"({"a":"\u003c/script>\u003cb>"})");
  EXPECT_EQ(json::parse(script_safe_json(R"({"a":"</script>"})")).at("a"), "</script>");
}

}  // namespace
}  // namespace saelab
