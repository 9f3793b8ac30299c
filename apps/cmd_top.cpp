// saelab top: the feature database — top-activating texts, quantile samples, densities, logit
// effects and auto-interpretation scores, in SQLite.
#include "analysis/feature_db.h"
#include "analysis/interpret.h"
#include "analysis/logit_effects.h"
#include "analysis/top_activations.h"
#include "apps/analysis_args.h"
#include "apps/commands.h"

namespace saelab {

void register_top(CLI::App& app) {
  static AnalysisArgs args;
  static TopOptions options;
  static InterpretOptions interpret;
  static std::string db_path = "runs/features.sqlite";
  static int64_t logit_tokens = 10;
  static bool explain = true;
  CLI::App* cmd = app.add_subcommand("top", "top-activating texts, logit effects and explanations per feature (SQLite)");
  args.add_to(cmd, 256);
  static FlagBinder<TopOptions> flags(cmd, &options);
  flags.add("--top-k", &TopOptions::top_k, "top-activating examples per feature");
  flags.add("--quantile-bands", &TopOptions::quantile_bands, "quantile bands of the firing distribution");
  flags.add("--per-band", &TopOptions::per_band, "examples sampled per band");
  flags.add("--context-before", &TopOptions::context_before, "tokens shown before an example");
  flags.add("--context-after", &TopOptions::context_after, "tokens shown after an example");
  flags.add("--batch-size", &TopOptions::batch_size, "contexts per forward pass");
  cmd->add_option("--db", db_path, "SQLite database written (replaced when complete)")->capture_default_str();
  cmd->add_option("--logit-tokens", logit_tokens, "promoted / suppressed tokens per feature")->capture_default_str();
  cmd->add_flag("--explain,!--no-explain", explain, "auto-interpret a sample of features")->capture_default_str();
  cmd->add_option("--explain-features", interpret.features, "features explained per SAE")->capture_default_str();
  cmd->callback([] {
    start_command();
    flags.apply();
    AnalysisSession s = AnalysisSession::open(args, args.sae_dirs());
    const EvalSet eval_set = build_eval_set(s.lm, args.eval_set, global_options().cache_dir);
    const auto results = find_top_activations(*s.hooked, s.saes, eval_set, options);
    FeatureDb db = FeatureDb::create(db_path);
    write_top_activations(db, s.saes, results, eval_set, s.lm.tokenizer());
    const Unembedding unembedding = find_unembedding(s.lm);
    for (const auto& a : s.saes) {
      write_logit_effects(db, a.name, logit_effects(a.sae(), unembedding, logit_tokens), s.lm.tokenizer());
    }
    if (explain) {
      const auto interpretations = interpret_saes(*s.hooked, s.saes, eval_set, s.lm.tokenizer(), interpret);
      write_explanations(db, interpretations);
      for (const auto& r : interpretations) {
        std::printf("%-40s mean auto-interp score %.3f over %zu features\n", r.sae.c_str(), r.mean_score, r.features.size());
      }
    }
    db.commit();
    std::printf("wrote %s (%lld contexts, %zu SAEs)\n", db_path.c_str(), static_cast<long long>(eval_set.contexts()),
                s.saes.size());
  });
}

}  // namespace saelab
