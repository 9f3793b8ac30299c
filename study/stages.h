// The analysis stages a study runs, written once: `saelab eval` and `saelab top` run the same
// functions alone that `saelab demo` runs as its cached stages (study/pipeline.cpp).
#pragma once
#include <string>
#include <vector>

#include "analysis/eval_set.h"
#include "analysis/evaluate.h"
#include "analysis/interpret.h"
#include "analysis/logit_effects.h"
#include "analysis/session.h"
#include "analysis/top_activations.h"
#include "study/tradeoff.h"

namespace saelab {

/// L0 against loss recovered (vs zero ablation), one point per coder of the report.
std::vector<TradeoffPoint> tradeoff_points(const EvalReport& report);

/// Evaluates the session's coders on `set`; writes the report's JSON to `json_path` and the
/// trade-off plot to `svg_path` (each skipped when empty), atomically.
EvalReport run_eval_stage(ModelSession& s, const EvalSet& set, const EvalOptions& options,
                          const std::string& json_path, const std::string& svg_path);

struct TopStageOptions {
  TopOptions top;
  int64_t logit_tokens = LogitEffectOptions{}.tokens;
  bool explain = true;
  InterpretOptions interpret;  ///< its batch_size is replaced by top's: one batch size for every pass
};

/// The feature database at `db_path`, written whole or not at all: top activations and quantile
/// samples, logit effects (tokens the model never saw left out) and, with `explain`, the rule-based
/// explanations. Returns the interpretations (none without `explain`).
std::vector<SaeInterpretation> run_top_stage(ModelSession& s, const EvalSet& set, const TopStageOptions& options,
                                             const std::string& cache_dir, const std::string& db_path);

}  // namespace saelab
