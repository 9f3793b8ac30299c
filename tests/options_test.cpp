// One declaration per option (core/options.h): JSON configs, records, command-line flags and the
// study config all derive from a struct's field list.
#include <gtest/gtest.h>

#include <set>

#include "apps/option_flags.h"
#include "core/options.h"
#include "models/capture.h"
#include "models/gpt.h"
#include "analysis/feature_graph.h"
#include "analysis/interpret.h"
#include "models/lm_train.h"
#include "sae/train_run.h"
#include "study/pipeline.h"
#include "study/report.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

// A made-up options struct, as a contributor would add one: members with defaults, one list.
struct Inner {
  double rate = 0.25;
  template <class V>
  void fields(V& v) {
    v("rate", rate, "a nested rate");
  }
};

struct Widget {
  int64_t count = 3;
  std::string label = "plain";
  bool shiny = false;
  std::vector<double> weights = {0.5, 2};
  Inner inner;
  int64_t stop_after = 0;
  template <class V>
  void fields(V& v) {
    v("count", count, "how many widgets");
    v("label", label, "what is written on them");
    v("shiny", shiny, "polish them");
    v("weights", weights, "one weight per widget");
    inner.fields(v);
    v("stop_after", stop_after, "for tests only", kOnCommandLine);
  }
};

struct WidgetBox {
  std::vector<Widget> widgets = {Widget{}};
  template <class V>
  void fields(V& v) {
    v("widgets", widgets, "the widgets", kInConfig | kInRecord);
  }
};

TEST(Options, AConfigSetsTheKeysItGivesAndKeepsEveryOtherDefault) {
  Widget w;
  read_options(json::parse(R"({"count": 7, "rate": 0.5, "weights": [1, 2, 3]})"), "w.json", w);
  EXPECT_EQ(w.count, 7);
  EXPECT_EQ(w.label, "plain");
  EXPECT_EQ(w.inner.rate, 0.5);
  EXPECT_EQ(w.weights, (std::vector<double>{1, 2, 3}));
}

TEST(Options, UnknownKeysWrongTypesAndFieldsOffTheConfigAreNamed) {
  Widget w;
  EXPECT_THROWS_WITH(read_options(json::parse(R"({"cuont": 7})"), "w.json", w), "w.json: unknown key 'cuont'",
                     "valid keys: count, label, rate, shiny, weights");
  EXPECT_THROWS_WITH(read_options(json::parse(R"({"count": "7"})"), "w.json", w),
                     "w.json: key 'count' must be an integer");
  // stop_after is a flag only: a config naming it is refused.
  EXPECT_THROWS_WITH(read_options(json::parse(R"({"stop_after": 1})"), "w.json", w), "unknown key 'stop_after'");
  WidgetBox box;
  EXPECT_THROWS_WITH(read_options(json::parse(R"({"widgets": [{"count": 1}, {"colour": 2}]})"), "box.json", box),
                     "box.json: widgets[1]: unknown key 'colour'");
}

TEST(Options, TheRecordHoldsTheRecordedFieldsFlattenedAndListsAsArrays) {
  Widget w;
  w.count = 4;
  const json j = options_json(w);
  EXPECT_EQ(j, json::parse(R"({"count": 4, "label": "plain", "shiny": false, "weights": [0.5, 2.0], "rate": 0.25})"));
  WidgetBox box;
  read_options(json::parse(R"({"widgets": [{"count": 1}, {"label": "b"}]})"), "box.json", box);
  ASSERT_EQ(box.widgets.size(), 2u);
  EXPECT_EQ(box.widgets[0].count, 1);
  EXPECT_EQ(box.widgets[1].label, "b");
  EXPECT_EQ(options_json(box)["widgets"][1]["label"], "b");
  // Written and read back: the same struct.
  WidgetBox again;
  read_options(options_json(box), "again", again);
  EXPECT_EQ(options_json(again), options_json(box));
}

TEST(Options, EveryFieldIsAFlagWithItsDocAndDefaultAndFlagsOverrideAConfig) {
  Widget w;
  CLI::App app{"test"};
  OptionFlags<Widget> flags(&app, &w);
  const std::string help = app.help();
  for (const char* text : {"--count INT=3", "how many widgets", "--label TEXT=plain", "--shiny,--no-shiny",
                           "--weights FLOAT=0.5,2", "--rate FLOAT=0.25", "--stop-after"}) {
    EXPECT_NE(help.find(text), std::string::npos) << text << " not in:\n" << help;
  }
  std::vector<std::string> args = {"--weights", "1,2,3", "--count", "5", "--shiny"};
  std::reverse(args.begin(), args.end());  // CLI11 takes argv back to front in this form
  app.parse(args);
  // A config read after parsing, then the flags given on the command line win.
  read_options(json::parse(R"({"count": 9, "label": "from config"})"), "w.json", w);
  flags.apply();
  EXPECT_EQ(w.count, 5);
  EXPECT_EQ(w.label, "from config");
  EXPECT_TRUE(w.shiny);
  EXPECT_EQ(w.weights, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(w.inner.rate, 0.25);
}

TEST(Options, APrefixNamesTheFlagsOfAStructWhoseKeysWouldCollide) {
  Widget a, b;
  CLI::App app{"test"};
  OptionFlags<Widget> fa(&app, &a);
  OptionFlags<Widget> fb(&app, &b, "other");
  app.parse(std::vector<std::string>{"2", "--other-count", "1", "--count"});
  fa.apply();
  fb.apply();
  EXPECT_EQ(a.count, 1);
  EXPECT_EQ(b.count, 2);
}

template <class S>
void expect_unique_keys(const char* name) {
  std::set<std::string> seen;
  for (const auto& key : option_keys<S>()) EXPECT_TRUE(seen.insert(key).second) << name << " names '" << key << "' twice";
}

TEST(Options, NoOptionsStructNamesAKeyTwice) {
  expect_unique_keys<CaptureOptions>("CaptureOptions");
  expect_unique_keys<SaeRunOptions>("SaeRunOptions");
  expect_unique_keys<SaeRunSpec>("SaeRunSpec");
  expect_unique_keys<GptConfig>("GptConfig");
  expect_unique_keys<LmTrainOptions>("LmTrainOptions");
  expect_unique_keys<StudyEvalOptions>("StudyEvalOptions");
  expect_unique_keys<StudyTopOptions>("StudyTopOptions");
  expect_unique_keys<InterpretOptions>("InterpretOptions");
  expect_unique_keys<GraphOptions>("GraphOptions");
  expect_unique_keys<StudySteerOptions>("StudySteerOptions");
  expect_unique_keys<ReportOptions>("ReportOptions");
}

TEST(Options, TheStudyConfigAcceptsEveryFieldOfAStageStruct) {
  // A key no stage reads before this change would be refused; a field of the struct is accepted.
  json cfg = load_json_file(SAELAB_SOURCE_DIR "/configs/demo.json", "demo config");
  cfg["top"]["features_per_token"] = 4;
  cfg["explain"]["conjunction_beam"] = 3;
  cfg["steer"]["promoted_tokens"] = 5;
  PipelineOptions o;
  o.config = cfg;
  o.config_path = "demo.json";
  EXPECT_NO_THROW(validate_pipeline_config(o));
  cfg["top"]["features_per_tokn"] = 4;
  o.config = cfg;
  EXPECT_THROWS_WITH(validate_pipeline_config(o), "demo.json: top: unknown key 'features_per_tokn'");
}

}  // namespace
}  // namespace saelab
