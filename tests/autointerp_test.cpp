// Rule explanations on a synthetic annotated pool: planted features (a POS tag, a conjunction, a
// token set) are recovered and score near 1 on held-out contexts, a feature unrelated to the
// annotations scores near 0, and correlation() and simulate() match hand-computed examples.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "analysis/autointerp.h"

namespace saelab {
namespace {

constexpr int64_t kContexts = 400;
constexpr int64_t kLength = 30;
constexpr int64_t kVocab = 50;

std::string word(int64_t id) { return "w" + std::to_string(id); }

torch::Tensor bool_tensor(const std::vector<uint8_t>& values) {
  return torch::tensor(std::vector<int64_t>(values.begin(), values.end()), torch::kLong).to(torch::kBool);
}

// Random tokens, tags and word starts, one genre per context; prev_token follows the tokens, so
// the pool is consistent the way a real corpus is, but no annotation predicts another.
TokenPool synthetic_pool(uint32_t seed = 7) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> token_of(0, kVocab - 1);
  std::uniform_int_distribution<int32_t> tag_of(0, 5), genre_of(0, 2);
  std::bernoulli_distribution coin(0.5);
  std::vector<int64_t> token, prev_token, context;
  std::vector<int32_t> tag, genre;
  std::vector<uint8_t> word_start;
  for (int64_t c = 0; c < kContexts; ++c) {
    const int32_t g = genre_of(rng);
    int64_t before = -1;
    for (int64_t p = 0; p < kLength; ++p) {
      const int64_t t = token_of(rng);
      token.push_back(t);
      prev_token.push_back(before);
      before = t;
      tag.push_back(tag_of(rng));
      genre.push_back(g);
      word_start.push_back(coin(rng) ? 1 : 0);
      context.push_back(c);
    }
  }
  TokenPool pool;
  pool.token = torch::tensor(token, torch::kLong);
  pool.prev_token = torch::tensor(prev_token, torch::kLong);
  pool.tag = torch::tensor(tag, torch::kInt);
  pool.genre = torch::tensor(genre, torch::kInt);
  pool.word_start = bool_tensor(word_start);
  pool.context = torch::tensor(context, torch::kLong);
  pool.tag_names = {"at", "nn", "vb", "in", "jj", "rb"};
  pool.genre_names = {"a", "b", "c"};
  pool.token_text = word;
  return pool;
}

int64_t index_of(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) - names.begin();
}

std::vector<float> to_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

TEST(AutoInterp, APlantedPosTagIsFoundAndScoresNearOne) {
  const TokenPool pool = synthetic_pool();
  const int64_t nn = index_of(pool.tag_names, "nn");
  const torch::Tensor act = (pool.tag == nn).to(torch::kFloat) * 2.0;
  const Explanation e = explain_and_score(RuleExplainer(), pool, act);
  EXPECT_EQ(e.explainer, "rules");
  EXPECT_EQ(e.text, "POS = nn (singular or mass noun)");
  EXPECT_GT(e.explain_score, 0.95);
  EXPECT_GT(e.score, 0.95);
  // Nearly every context holds an "nn" token, so the 10 top and 10 random contexts are all there.
  EXPECT_EQ(e.scored_tokens, 20 * kLength);
  ASSERT_EQ(e.rule["atoms"].size(), 1u);
  EXPECT_EQ(e.rule["atoms"][0]["kind"], "tag");
  EXPECT_EQ(e.rule["atoms"][0]["values"], nlohmann::json::array({nn}));
  EXPECT_EQ(e.rule["atoms"][0]["name"], "nn");
}

TEST(AutoInterp, APlantedConjunctionOfATagAndWordStartIsFound) {
  const TokenPool pool = synthetic_pool();
  const int64_t vb = index_of(pool.tag_names, "vb");
  const torch::Tensor act = ((pool.tag == vb) & pool.word_start).to(torch::kFloat) * 1.5;
  const Explanation e = explain_and_score(RuleExplainer(), pool, act);
  ASSERT_EQ(e.rule["atoms"].size(), 2u) << e.text;
  std::set<std::string> kinds;
  for (const auto& atom : e.rule["atoms"]) {
    kinds.insert(atom["kind"].get<std::string>());
    if (atom["kind"] == "tag") {
      EXPECT_EQ(atom["values"], nlohmann::json::array({vb}));
    }
  }
  EXPECT_EQ(kinds, (std::set<std::string>{"tag", "word_start"})) << e.text;
  EXPECT_NE(e.text.find("POS = vb"), std::string::npos) << e.text;
  EXPECT_NE(e.text.find("word start"), std::string::npos) << e.text;
  EXPECT_GT(e.score, 0.95);
}

TEST(AutoInterpRules, APlantedConjunctionIsReturnedAsTwoAtomsByTheExplainer) {
  const TokenPool pool = synthetic_pool();
  const int64_t vb = index_of(pool.tag_names, "vb");
  const torch::Tensor act = ((pool.tag == vb) & pool.word_start).to(torch::kFloat) * 1.5;
  const Rule rule = RuleExplainer().explain(pool, act, torch::ones_like(pool.word_start));
  ASSERT_EQ(rule.atoms.size(), 2u) << rule.describe(pool);
  std::set<RuleAtom::Kind> kinds;
  for (const RuleAtom& atom : rule.atoms) kinds.insert(atom.kind);
  EXPECT_EQ(kinds, (std::set<RuleAtom::Kind>{RuleAtom::Kind::kTag, RuleAtom::Kind::kWordStart}));
  EXPECT_TRUE(torch::equal(simulate(rule, pool), (act > 0).to(torch::kFloat)));
}

TEST(AutoInterp, APlantedTokenSetIsFoundWithExactlyItsTokens) {
  const TokenPool pool = synthetic_pool();
  // Magnitudes close enough that both tokens beat either one alone: a 0/1 simulation of the pair
  // correlates ≈ mean / rms = 1.75 / √((4 + 2.25) / 2) ≈ 0.99 over the firing tokens.
  const torch::Tensor act = (pool.token == 7).to(torch::kFloat) * 2.0 + (pool.token == 23).to(torch::kFloat) * 1.5;
  const Explanation e = explain_and_score(RuleExplainer(), pool, act);
  ASSERT_EQ(e.rule["atoms"].size(), 1u) << e.text;
  EXPECT_EQ(e.rule["atoms"][0]["kind"], "token");
  std::vector<int64_t> ids = e.rule["atoms"][0]["values"].get<std::vector<int64_t>>();
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int64_t>{7, 23})) << e.text;
  EXPECT_EQ(e.text.rfind("token ∈ {", 0), 0u) << e.text;
  EXPECT_NE(e.text.find("\"w7\""), std::string::npos) << e.text;
  EXPECT_NE(e.text.find("\"w23\""), std::string::npos) << e.text;
  EXPECT_GT(e.score, 0.9);
}

TEST(AutoInterp, AFeatureUnrelatedToTheAnnotationsScoresNearZero) {
  const TokenPool pool = synthetic_pool();
  std::mt19937 rng(11);
  std::bernoulli_distribution fires(0.05);
  std::exponential_distribution<float> size(1.0f);
  std::vector<float> values(static_cast<size_t>(pool.token.numel()), 0.0f);
  for (float& v : values) {
    if (fires(rng)) v = size(rng) + 0.01f;
  }
  const torch::Tensor act = torch::tensor(values, torch::kFloat);
  const Explanation e = explain_and_score(RuleExplainer(), pool, act);
  EXPECT_LT(std::abs(e.score), 0.2) << e.text;
  EXPECT_GT(e.scored_tokens, 0);
}

// The rule's precision and recall as a detector of firing, on the scored tokens: a feature firing
// on a random half of the "nn" tokens is found as POS = nn with recall 1 and precision about 1/2.
TEST(AutoInterp, ReportsTheRulesPrecisionAndRecallBesideTheScore) {
  const TokenPool pool = synthetic_pool();
  const int64_t nn = index_of(pool.tag_names, "nn");
  torch::Generator gen = at::detail::createCPUGenerator(5);
  const torch::Tensor keep = torch::rand({pool.token.numel()}, gen) < 0.5;
  const torch::Tensor act = ((pool.tag == nn) & keep).to(torch::kFloat);
  const Explanation e = explain_and_score(RuleExplainer(), pool, act);
  ASSERT_EQ(e.text, "POS = nn (singular or mass noun)");
  EXPECT_TRUE(e.scorable);
  EXPECT_DOUBLE_EQ(e.recall, 1.0);
  EXPECT_GT(e.precision, 0.35);
  EXPECT_LT(e.precision, 0.65);
  // A planted tag alone is detected exactly.
  const Explanation exact = explain_and_score(RuleExplainer(), pool, (pool.tag == nn).to(torch::kFloat));
  EXPECT_DOUBLE_EQ(exact.precision, 1.0);
  EXPECT_DOUBLE_EQ(exact.recall, 1.0);
}

// A feature that fires only in the explanation half would score 0 by construction: it is marked
// unscorable, so that means over features leave it out instead of averaging a structural zero.
TEST(AutoInterp, AFeatureFiringInOneHalfOnlyIsNotScorable) {
  const TokenPool pool = synthetic_pool();
  const int64_t nn = index_of(pool.tag_names, "nn");
  const torch::Tensor even = pool.context.remainder(2) == 0;
  const Explanation only_explaining = explain_and_score(RuleExplainer(), pool, ((pool.tag == nn) & even).to(torch::kFloat));
  EXPECT_FALSE(only_explaining.scorable);
  EXPECT_EQ(only_explaining.score, 0.0);
  const Explanation only_scoring = explain_and_score(RuleExplainer(), pool, ((pool.tag == nn) & ~even).to(torch::kFloat));
  EXPECT_FALSE(only_scoring.scorable);
  EXPECT_TRUE(explain_and_score(RuleExplainer(), pool, (pool.tag == nn).to(torch::kFloat)).scorable);
}

TEST(AutoInterp, AFeatureThatNeverFiresGetsAnEmptyRuleThatNeverFires) {
  const TokenPool pool = synthetic_pool();
  const torch::Tensor act = torch::zeros({pool.token.numel()});
  const Rule rule = RuleExplainer().explain(pool, act, torch::ones_like(pool.word_start));
  EXPECT_TRUE(rule.atoms.empty());
  EXPECT_EQ(simulate(rule, pool).sum().item<float>(), 0.0f);
  const Explanation e = explain_and_score(RuleExplainer(), pool, act);
  EXPECT_EQ(e.score, 0.0);
  EXPECT_FALSE(e.scorable);
  EXPECT_EQ(e.rule["atoms"].size(), 0u);
}

TEST(AutoInterp, TheScoringSetIsReproducibleAndSizedByTheOptions) {
  const TokenPool pool = synthetic_pool();
  const torch::Tensor act = (pool.token == 3).to(torch::kFloat);
  AutoInterpOptions options;
  options.seed = 5;
  const Explanation a = explain_and_score(RuleExplainer(), pool, act, options);
  const Explanation b = explain_and_score(RuleExplainer(), pool, act, options);
  EXPECT_EQ(a.score, b.score);
  EXPECT_EQ(a.scored_tokens, b.scored_tokens);
  options.top_contexts = 0;
  options.random_contexts = 3;
  EXPECT_EQ(explain_and_score(RuleExplainer(), pool, act, options).scored_tokens, 3 * kLength);
}

TEST(AutoInterpCorrelation, MatchesAHandComputedExampleAndIsZeroForAConstant) {
  // a = (1, 2, 3, 4), b = (2, 4, 5, 9): means 2.5 and 5; deviations (−1.5, −0.5, 0.5, 1.5) and
  // (−3, −1, 0, 4); Σ da·db = 4.5 + 0.5 + 0 + 6 = 11, Σ da² = 5, Σ db² = 26 → r = 11 / √130.
  const torch::Tensor a = torch::tensor({1.f, 2.f, 3.f, 4.f});
  const torch::Tensor b = torch::tensor({2.f, 4.f, 5.f, 9.f});
  EXPECT_NEAR(correlation(a, b), 11.0 / std::sqrt(130.0), 1e-9);
  EXPECT_NEAR(correlation(b, a), 11.0 / std::sqrt(130.0), 1e-9);
  EXPECT_NEAR(correlation(a, -a), -1.0, 1e-12);
  EXPECT_EQ(correlation(torch::full({4}, 0.1f), b), 0.0);
  EXPECT_EQ(correlation(a, torch::zeros({4})), 0.0);
  EXPECT_EQ(correlation(torch::tensor({1.f}), torch::tensor({2.f})), 0.0);
}

// Two contexts of three tokens:   position  0   1   2 | 3   4   5
TokenPool tiny_pool() {
  TokenPool pool;
  pool.token = torch::tensor({3, 5, 3, 4, 5, 3}, torch::kLong);
  pool.prev_token = torch::tensor({-1, 3, 5, -1, 4, 5}, torch::kLong);
  pool.tag = torch::tensor({0, 1, 0, 1, 0, -1}, torch::kInt);
  pool.genre = torch::tensor({0, 0, 0, 1, 1, 1}, torch::kInt);
  pool.word_start = bool_tensor({1, 1, 0, 1, 0, 1});
  pool.context = torch::tensor({0, 0, 0, 1, 1, 1}, torch::kLong);
  pool.tag_names = {"nn", "vb"};
  pool.genre_names = {"news", "fiction"};
  pool.token_text = word;
  return pool;
}

TEST(AutoInterpSimulate, ATwoAtomRuleHoldsExactlyWhereBothAtomsHold) {
  const TokenPool pool = tiny_pool();
  using Kind = RuleAtom::Kind;
  // token ∈ {3, 5}: 1 1 1 0 1 1; word start: 1 1 0 1 0 1 → 1 1 0 0 0 1.
  const Rule tokens{{RuleAtom{Kind::kToken, {3, 5}}, RuleAtom{Kind::kWordStart, {}}}};
  EXPECT_EQ(to_vector(simulate(tokens, pool)), (std::vector<float>{1, 1, 0, 0, 0, 1}));
  // previous token ∈ {5}: 0 0 1 0 0 1; POS = nn: 1 0 1 0 1 0 → 0 0 1 0 0 0.
  const Rule prev{{RuleAtom{Kind::kPrevToken, {5}}, RuleAtom{Kind::kTag, {0}}}};
  EXPECT_EQ(to_vector(simulate(prev, pool)), (std::vector<float>{0, 0, 1, 0, 0, 0}));
  // continuation: 0 0 1 0 1 0; genre = fiction: 0 0 0 1 1 1 → 0 0 0 0 1 0.
  const Rule genre{{RuleAtom{Kind::kContinuation, {}}, RuleAtom{Kind::kGenre, {1}}}};
  EXPECT_EQ(to_vector(simulate(genre, pool)), (std::vector<float>{0, 0, 0, 0, 1, 0}));
  EXPECT_EQ(simulate(genre, pool).scalar_type(), torch::kFloat);
  EXPECT_EQ(to_vector(simulate(Rule{}, pool)), (std::vector<float>(6, 0.0f)));
}

TEST(AutoInterpRules, DescribeAndToJsonNameEveryAtom) {
  TokenPool pool = tiny_pool();
  using Kind = RuleAtom::Kind;
  const Rule tokens{{RuleAtom{Kind::kToken, {3, 5}}, RuleAtom{Kind::kWordStart, {}}}};
  EXPECT_EQ(tokens.describe(pool), "token ∈ {\"w3\", \"w5\"} ∧ word start");
  const Rule others{{RuleAtom{Kind::kPrevToken, {4}}, RuleAtom{Kind::kTag, {1}}, RuleAtom{Kind::kGenre, {0}},
                     RuleAtom{Kind::kContinuation, {}}}};
  EXPECT_EQ(others.describe(pool), "previous token ∈ {\"w4\"} ∧ POS = vb (verb, base form) ∧ genre = news ∧ word continuation");
  pool.token_text = nullptr;
  EXPECT_EQ(tokens.describe(pool), "token ∈ {3, 5} ∧ word start");

  const nlohmann::json j = others.to_json();
  ASSERT_EQ(j["atoms"].size(), 4u);
  EXPECT_EQ(j["atoms"][0]["kind"], "prev_token");
  EXPECT_EQ(j["atoms"][0]["values"], nlohmann::json::array({4}));
  EXPECT_EQ(j["atoms"][1]["kind"], "tag");
  EXPECT_EQ(j["atoms"][2]["kind"], "genre");
  EXPECT_EQ(j["atoms"][3]["kind"], "continuation");
  EXPECT_EQ(tokens.to_json()["atoms"][0]["kind"], "token");
  EXPECT_EQ(tokens.to_json()["atoms"][1]["kind"], "word_start");
}

}  // namespace
}  // namespace saelab
