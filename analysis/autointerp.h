// Explaining features without a language model, in the spirit of OpenAI's explain-and-simulate
// protocol (Bills et al. 2023): propose an explanation from the contexts where a feature fires,
// simulate the feature from the explanation alone, and score the explanation by the correlation
// between simulated and real activations on held-out contexts (top-activating and random ones).
//
// The Brown corpus carries ground truth for every token (POS tag, word start, genre, the token
// before it), so explanations are rules over those annotations: a set of tokens, a POS tag, a
// genre, word start vs continuation, a set of preceding tokens, and conjunctions of two of these.
// The explainer sits behind an interface so an LLM explainer can be added later.
//
// What the score is: an annotation-alignment score — the correlation between the best rule over
// the corpus annotations and the feature's activations on held-out contexts. It is not an LLM
// auto-interp score (no language model writes or simulates the explanation), and it can only
// credit features that align with the annotations. Next to it: the rule's precision and recall
// as a detector of the feature's firing on the scored tokens. A feature that does not fire in
// both halves cannot be scored (its score would be 0 by construction) and is reported apart.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include "core/options.h"

namespace saelab {

/// Annotated tokens that explanations are proposed and scored on. All tensors are [N], one entry
/// per token position (BOS positions left out by the caller).
struct TokenPool {
  torch::Tensor token;       // [N] int64
  torch::Tensor prev_token;  // [N] int64, −1 when none
  torch::Tensor tag;         // [N] int32 index into tag_names, −1 when none
  torch::Tensor genre;       // [N] int32 index into genre_names, −1 when none
  torch::Tensor word_start;  // [N] bool
  torch::Tensor context;     // [N] int64 context (row) the token came from
  std::vector<std::string> tag_names, genre_names;
  /// Display text of a token id (for explanation texts).
  std::function<std::string(int64_t)> token_text;
};

/// One condition on a token.
struct RuleAtom {
  enum class Kind { kToken, kPrevToken, kTag, kGenre, kWordStart, kContinuation };
  Kind kind = Kind::kToken;
  std::vector<int64_t> values;  ///< token ids (kToken, kPrevToken), one tag / genre index; empty otherwise
};

/// A conjunction of atoms; a token satisfies it when it satisfies every atom.
struct Rule {
  std::vector<RuleAtom> atoms;
  /// "token ∈ {the, The}", "POS = nn ∧ word start", "genre = news".
  std::string describe(const TokenPool& pool) const;
  nlohmann::json to_json() const;
};

/// The simulated activation [N] float32: 1 where the rule holds, 0 elsewhere.
torch::Tensor simulate(const Rule& rule, const TokenPool& pool);

/// Pearson correlation of two [n] tensors; 0 when either is constant.
double correlation(const torch::Tensor& a, const torch::Tensor& b);

class Explainer {
 public:
  virtual ~Explainer() = default;
  virtual std::string name() const = 0;
  /// Proposes a rule for a feature from its activations [N] on the tokens selected by `mask` [N] bool.
  virtual Rule explain(const TokenPool& pool, const torch::Tensor& activations, const torch::Tensor& mask) const = 0;
};

struct RuleExplainerOptions {
  int64_t max_tokens = 5;
  int64_t conjunction_beam = 8;

  template <class V>
  void fields(V& v) {
    v("max_tokens", max_tokens, "candidate token sets are the feature's top tokens by total activation: sizes 1 … max_tokens", at_least(1));
    v("conjunction_beam", conjunction_beam, "single-atom candidates kept for pairwise conjunctions", at_least(1));
  }
};

/// Enumerates the candidate rules and keeps the one whose simulation correlates best with the
/// activations on the masked tokens.
class RuleExplainer : public Explainer {
 public:
  explicit RuleExplainer(RuleExplainerOptions options = {}) : options_(options) {}
  std::string name() const override { return "rules"; }
  Rule explain(const TokenPool& pool, const torch::Tensor& activations, const torch::Tensor& mask) const override;

 private:
  RuleExplainerOptions options_;
};

struct AutoInterpOptions {
  int64_t top_contexts = 10;
  int64_t random_contexts = 10;
  int64_t seed = 0;

  template <class V>
  void fields(V& v) {
    v("top_contexts", top_contexts, "held-out scoring set: this many top-activating contexts (by the feature's maximum) …", at_least(1));
    v("random_contexts", random_contexts, "… and this many random contexts, both from the scoring half", at_least(1));
    v("seed", seed, "seed of the random scoring contexts", at_least(0));
  }
};

struct Explanation {
  std::string explainer;
  std::string text;
  nlohmann::json rule;
  double explain_score = 0;  ///< correlation on the explanation half
  double score = 0;          ///< annotation-alignment score: correlation on the held-out scoring set
  double precision = 0;      ///< on the scored tokens: P(fires | rule holds) (0 when the rule never holds)
  double recall = 0;         ///< on the scored tokens: P(rule holds | fires)
  int64_t scored_tokens = 0;
  /// The feature fires in both halves (explanation and scoring); otherwise score, precision and
  /// recall are 0 by construction and say nothing about the explanation.
  bool scorable = false;
};

/// Splits contexts in two (even contexts explain, odd ones score), explains the feature on the
/// first half, and scores the explanation on top-activating plus random contexts of the second
/// (when the feature fires in both halves: Explanation::scorable).
/// `activations` [N] float, aligned with the pool.
Explanation explain_and_score(const Explainer& explainer, const TokenPool& pool, const torch::Tensor& activations,
                              const AutoInterpOptions& options = {});

}  // namespace saelab
