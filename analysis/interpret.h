// Auto-interpretation of SAEs on the evaluation set: a sample of each SAE's live features is
// explained and scored (analysis/autointerp.h); the mean score lets architectures be compared on
// interpretability as well as on L0 and loss recovered.
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
  int64_t batch_size = 8;
  AutoInterpOptions scoring;
  RuleExplainerOptions rules;

  template <class V>
  void fields(V& v) {
    v("features", features, "features explained per SAE: a seeded uniform sample of those firing at least min_fires times", at_least(0));
    v("min_fires", min_fires, "firings on the evaluation set a feature needs to be sampled", at_least(1));
    v("batch_size", batch_size, "contexts per forward pass", at_least(1));
    scoring.fields(v);
    rules.fields(v);
  }
  void validate() const;
};

struct SaeInterpretation {
  std::string sae;
  std::vector<int64_t> features;
  std::vector<Explanation> explanations;  ///< one per feature
  double mean_score = 0;
};

/// Every non-BOS token of the evaluation set with its annotations.
TokenPool token_pool(const EvalSet& eval_set, const Tokenizer& tokenizer);

std::vector<SaeInterpretation> interpret_saes(HookedModel& hooked, const std::vector<AttachedSae>& saes,
                                              const EvalSet& eval_set, const Tokenizer& tokenizer,
                                              const InterpretOptions& options);

/// Writes explanations rows.
void write_explanations(FeatureDb& db, const std::vector<SaeInterpretation>& results);

}  // namespace saelab
