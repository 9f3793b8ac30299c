// Tests of auto-interpretation of SAEs (analysis/interpret.h).
#include "tests/analysis_fixture.h"

namespace saelab {
namespace {

TEST(Interpret, ExplainsASampleOfLiveFeaturesWithScoresInRange) {
  Fixture& f = fixture();
  const AttachedSae a = f.attach("interp", Sae(config("topk", f.d(), 64, 8), 8));
  InterpretOptions o;
  o.features = 5;
  o.min_fires = 2;
  const auto r = interpret_saes(f.hooked, {a}, f.eval_set, f.lm.tokenizer(), o);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].features.size(), 5u);
  for (const auto& e : r[0].explanations) {
    EXPECT_GE(e.score, -1.0);
    EXPECT_LE(e.score, 1.0);
    EXPECT_FALSE(e.text.empty());
  }
}

// Explanations show tokens as the page does (leading space kept) and BOS, which decodes to
// nothing, as <BOS>: "previous token ∈ {"<BOS>"}" rather than {""}.
TEST(Interpret, TokenTextsInExplanationsNameBosAndKeepTheLeadingSpace) {
  Fixture& f = fixture();
  const TokenPool pool = token_pool(f.eval_set, f.lm.tokenizer());
  const Tokenizer& tok = f.lm.tokenizer();
  EXPECT_EQ(pool.token_text(tok.bos_id()), "<BOS>");
  const std::vector<int64_t> ids = tok.encode_ids("The jury said the");  // " the" in running text
  EXPECT_EQ(pool.token_text(ids.back()), " the");
}

}  // namespace
}  // namespace saelab
