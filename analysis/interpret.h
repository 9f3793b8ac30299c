// Rule-based interpretation of SAEs on the evaluation set: a sample of each SAE's live features is
// explained and scored (analysis/autointerp.h). The mean annotation-alignment score over the
// scorable features (those firing in both halves), with the rules' mean precision and recall,
// lets architectures be compared on alignment with the corpus annotations as well as on L0 and
// loss recovered; features that cannot be scored are counted apart.
#pragma once
#include <string>
#include <vector>

#include "analysis/attached_sae.h"
#include "analysis/autointerp.h"
#include "analysis/eval_set.h"

namespace saelab {

class FeatureDb;

struct InterpretOptions {
  int64_t features = 64;
  int64_t min_fires = 5;
  /// Contexts per forward pass: not an option of its own, the caller's (top's --batch-size), so
  /// that one flag bounds the memory of the whole command.
  int64_t batch_size = 8;
  AutoInterpOptions scoring;
  RuleExplainerOptions rules;

  template <class V>
  void fields(V& v) {
    v("features", features, "features explained per SAE: a seeded uniform sample of those firing at least min_fires times", at_least(1));
    v("min_fires", min_fires, "firings on the evaluation set a feature needs to be sampled", at_least(1));
    scoring.fields(v);
    rules.fields(v);
  }
  void validate() const;
};

struct SaeInterpretation {
  std::string sae;
  std::vector<int64_t> features;
  std::vector<Explanation> explanations;  ///< one per feature
  /// Means over the scorable explanations (0 when none is).
  double mean_score = 0, mean_precision = 0, mean_recall = 0;
  int64_t scorable = 0, unscorable = 0;
  nlohmann::json to_json() const;  ///< the summary: means, counts and what the score is
};

/// What the interpretation score is, for every place it is shown.
inline constexpr const char* kAlignmentScoreName =
    "annotation-alignment score: correlation of the best rule over the corpus annotations with the feature on held-out "
    "contexts (rule-based, not an LLM auto-interp score); mean over features firing in both halves";

/// Every non-BOS token of the evaluation set with its annotations.
TokenPool token_pool(const EvalSet& eval_set, const Tokenizer& tokenizer);

std::vector<SaeInterpretation> interpret_saes(HookedModel& hooked, const std::vector<AttachedSae>& saes,
                                              const EvalSet& eval_set, const Tokenizer& tokenizer,
                                              const InterpretOptions& options);

/// Writes explanations rows.
void write_explanations(FeatureDb& db, const std::vector<SaeInterpretation>& results);

}  // namespace saelab
