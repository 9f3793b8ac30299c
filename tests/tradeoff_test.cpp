// The L0 / loss-recovered trade-off (study/tradeoff.h): the text table and the SVG plot.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "study/tradeoff.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(Tradeoff, TableGroupsByHookThenArchitectureAndSortsByL0) {
  const std::vector<TradeoffPoint> points = {
      {"blocks.6", "topk", "t32", 32, 0.95},
      {"blocks.2", "standard", "s_b2", 50, 0.9},
      {"blocks.6", "standard", "s80", 80.04, 0.85},
      {"blocks.6", "topk", "t16", 16, 0.9},
      {"blocks.6", "standard", "s20", 20, 0.7},
      {"blocks.2", "topk", "t_b2", 8, 0.5},
  };
  const std::vector<std::string> lines = lines_of(tradeoff_table(points));
  ASSERT_EQ(lines.size(), points.size() + 1);
  EXPECT_EQ(lines[0].rfind("hook", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find("loss recovered"), std::string::npos);
  // Hooks and architectures in the order they first appear, L0 ascending inside each group.
  const std::vector<std::string> expected = {"t16", "t32", "s20", "s80", "t_b2", "s_b2"};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NE(lines[i + 1].find(" " + expected[i] + " "), std::string::npos) << i << ": " << lines[i + 1];
  }
  EXPECT_EQ(lines[2].rfind("blocks.6", 0), 0u);
  EXPECT_EQ(lines[5].rfind("blocks.2", 0), 0u);
  EXPECT_NE(lines[4].find("80.0"), std::string::npos) << lines[4];
  EXPECT_NE(lines[4].find("0.850"), std::string::npos) << lines[4];
  // Padded columns: every line has the same width.
  for (const std::string& line : lines) EXPECT_EQ(line.size(), lines[0].size()) << line;
}

TEST(Tradeoff, SvgDrawsOneLinePerArchitectureAndEscapesLabels) {
  const std::vector<TradeoffPoint> points = {
      {"blocks.6", "standard", "s1", 120, 0.80}, {"blocks.6", "standard", "s2", 40, 0.70},
      {"blocks.6", "standard", "s3", 10, 0.50},  {"blocks.6", "topk", "t1", 16, 0.85},
      {"blocks.6", "topk", "<script>alert(1)</script>", 64, 0.95},
  };
  const std::string svg = tradeoff_svg(points, "L0 vs loss & <fidelity>");
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg.find("viewBox="), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(static_cast<size_t>(test::count(svg, "<polyline")), 2u);
  EXPECT_EQ(static_cast<size_t>(test::count(svg, "<circle")), points.size());
  EXPECT_EQ(svg.find("<script"), std::string::npos);
  EXPECT_NE(svg.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(svg.find("L0 vs loss &amp; &lt;fidelity&gt;"), std::string::npos);
  EXPECT_NE(svg.find("s2: L0 40.0, loss recovered 0.700"), std::string::npos);
  EXPECT_NE(svg.find("blocks.6"), std::string::npos);
  EXPECT_EQ(svg.find("href"), std::string::npos);
  // 10 to 120 spans more than a factor of 4.
  EXPECT_NE(svg.find("log scale"), std::string::npos);
  // The loss-recovered axis spans the points (0.5 to 0.95), not 0 to 1: its lowest tick is 0.4.
  EXPECT_NE(svg.find(">0.4</text>"), std::string::npos) << svg;
  EXPECT_EQ(svg.find("text-anchor=\"end\">0</text>"), std::string::npos) << svg;
  EXPECT_EQ(svg.find("nan"), std::string::npos);

  // A second hook gets its own panel, an unknown architecture its own line.
  std::vector<TradeoffPoint> two_hooks = points;
  two_hooks.push_back({"blocks.2", "my_variant", "v1", 30, 0.6});
  two_hooks.push_back({"blocks.2", "my_variant", "v2", 60, 0.7});
  const std::string svg2 = tradeoff_svg(two_hooks, "two hooks");
  EXPECT_EQ(static_cast<size_t>(test::count(svg2, "<polyline")), 3u);
  EXPECT_EQ(static_cast<size_t>(test::count(svg2, "<circle")), two_hooks.size());
  EXPECT_NE(svg2.find("blocks.2"), std::string::npos);
  EXPECT_NE(svg2.find("my_variant"), std::string::npos);
}

TEST(Tradeoff, SvgHandlesOnePointAndEqualL0) {
  const std::string one = tradeoff_svg({{"blocks.0", "gated", "only", 25, 0.9}}, "one");
  EXPECT_NE(one.find("<svg"), std::string::npos);
  EXPECT_EQ(static_cast<size_t>(test::count(one, "<polyline")), 1u);
  EXPECT_EQ(static_cast<size_t>(test::count(one, "<circle")), 1u);
  EXPECT_EQ(one.find("nan"), std::string::npos);
  EXPECT_EQ(one.find("inf"), std::string::npos);

  const std::string same = tradeoff_svg(
      {{"blocks.0", "topk", "a", 32, 0.8}, {"blocks.0", "topk", "b", 32, 0.9}, {"blocks.0", "jumprelu", "c", 32, 1.1}},
      "equal L0");
  EXPECT_EQ(static_cast<size_t>(test::count(same, "<circle")), 3u);
  EXPECT_EQ(same.find("nan"), std::string::npos);
  EXPECT_EQ(same.find("inf"), std::string::npos);

  const std::string zero = tradeoff_svg({{"blocks.0", "standard", "z", 0, 0}}, "zero");
  EXPECT_EQ(static_cast<size_t>(test::count(zero, "<circle")), 1u);
  EXPECT_EQ(zero.find("nan"), std::string::npos);
  EXPECT_EQ(zero.find("inf"), std::string::npos);

  const std::string none = tradeoff_svg({}, "empty");
  EXPECT_NE(none.find("</svg>"), std::string::npos);
  EXPECT_EQ(static_cast<size_t>(test::count(none, "<circle")), 0u);
}

}  // namespace
}  // namespace saelab
