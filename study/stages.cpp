#include "study/stages.h"

#include "analysis/feature_db.h"
#include "core/files.h"

namespace saelab {

std::vector<TradeoffPoint> tradeoff_points(const EvalReport& report) {
  std::vector<TradeoffPoint> points;
  for (const auto& e : report.saes) points.push_back({e.hook, e.architecture, e.name, e.l0, e.loss_recovered_zero});
  return points;
}

EvalReport run_eval_stage(ModelSession& s, const EvalSet& set, const EvalOptions& options,
                          const std::string& json_path, const std::string& svg_path) {
  EvalReport report = evaluate_saes(s.lm, *s.hooked, s.saes, set, options);
  if (!svg_path.empty()) {
    write_file_atomic(svg_path, tradeoff_svg(tradeoff_points(report), "L0 against loss recovered — " + s.lm.info().name));
  }
  if (!json_path.empty()) write_file_atomic(json_path, report.to_json().dump(1) + "\n");
  return report;
}

std::vector<SaeInterpretation> run_top_stage(ModelSession& s, const EvalSet& set, const TopStageOptions& options,
                                             const std::string& cache_dir, const std::string& db_path) {
  // The logit lens (unembedding, final norm) is found before the pass over the texts, not after it.
  const Unembedding unembedding = find_unembedding(s.lm);
  FeatureDb db = FeatureDb::create(db_path);
  // The examples are written, then released before the next steps (they are most of top's memory).
  write_top_activations(db, s.saes, find_top_activations(*s.hooked, s.saes, set, options.top), set, s.lm.tokenizer());
  write_logit_effects_of(db, s.saes, s.lm, unembedding, options.logit_tokens, cache_dir);
  std::vector<SaeInterpretation> interpretations;
  if (options.explain) {
    InterpretOptions interpret = options.interpret;
    interpret.batch_size = options.top.batch_size;
    interpretations = interpret_saes(*s.hooked, s.saes, set, s.lm.tokenizer(), interpret);
    write_explanations(db, interpretations);
  }
  db.commit();
  return interpretations;
}

}  // namespace saelab
