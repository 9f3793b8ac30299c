// saelab top: the feature database — top-activating texts, quantile samples, densities, logit
// effects and auto-interpretation scores, in SQLite.
#include <filesystem>

#include "analysis/feature_db.h"
#include "study/stages.h"
#include "apps/analysis_args.h"
#include "apps/commands.h"

namespace saelab {

void register_top(CLI::App& app) {
  static AnalysisArgs args(kTopContexts);
  static TopOptions options;
  static LogitEffectOptions logits;
  static InterpretOptions interpret;
  static std::string db_path = "runs/features.sqlite";
  static bool explain = true;
  CLI::App* cmd = app.add_subcommand("top", "top-activating texts, logit effects and explanations per feature (SQLite)");
  static OptionFlags<AnalysisArgs> arg_flags(cmd, &args);
  static OptionFlags<TopOptions> flags(cmd, &options);
  static OptionFlags<LogitEffectOptions> logit_flags(cmd, &logits);
  static OptionFlags<InterpretOptions> explain_flags(cmd, &interpret, "explain");
  static bool force = false;
  cmd->add_option("--db", db_path, "SQLite database to write (an existing one is refused unless --force), written "
                  "whole or not at all")->capture_default_str();
  cmd->add_flag("--force", force, "replace an existing --db (all of its SAEs) with this run's");
  cmd->add_flag("--explain,!--no-explain", explain, "auto-interpret a sample of features")->capture_default_str();
  cmd->callback([] {
    start_command(/*keep_freed_memory=*/false);  // varying tensor sizes: let glibc return big blocks
    arg_flags.apply();
    flags.apply();
    logit_flags.apply();
    explain_flags.apply();
    // Before any work: a database of earlier runs is not replaced unasked.
    std::error_code ec;
    TORCH_CHECK(force || !std::filesystem::exists(db_path, ec), "feature database '", db_path, "' exists (",
                feature_db_summary(db_path), "): --force replaces it, or give another --db");
    ModelSession s = ModelSession::open(args.model, args.sae_dirs(), args.allow_other_model);
    const EvalSet eval_set = build_eval_set(s.lm, args.eval_set, global_options().cache_dir);
    const TopStageOptions stage{options, logits.tokens, explain, interpret};
    for (const auto& r : run_top_stage(s, eval_set, stage, global_options().cache_dir, db_path)) {
      std::printf("%-40s annotation-alignment r %.3f, rule precision %.2f, recall %.2f over %lld scorable features "
                  "(%lld fired in one half only)\n", r.sae.c_str(), r.mean_score, r.mean_precision, r.mean_recall,
                  static_cast<long long>(r.scorable), static_cast<long long>(r.unscorable));
    }
    std::printf("wrote %s (%lld contexts, %zu SAEs)\n", db_path.c_str(), static_cast<long long>(eval_set.contexts()),
                s.saes.size());
  });
}

}  // namespace saelab
