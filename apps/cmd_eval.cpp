// saelab eval: sparsity, reconstruction and loss recovered of SAEs spliced into the model.
#include "study/stages.h"
#include "apps/analysis_args.h"
#include "apps/commands.h"
#include "core/files.h"

namespace saelab {

void register_eval(CLI::App& app) {
  static AnalysisArgs args;
  static EvalOptions options;
  static std::string out = "runs/eval.json", plot = "runs/tradeoff.svg";
  CLI::App* cmd = app.add_subcommand("eval", "L0, FVU, loss recovered and KL of SAEs spliced into the model");
  static OptionFlags<AnalysisArgs> arg_flags(cmd, &args);
  static OptionFlags<EvalOptions> flags(cmd, &options);
  cmd->add_option("--out", out, "JSON results")->capture_default_str();
  cmd->add_option("--plot", plot, "SVG of L0 against loss recovered (empty: none)")->capture_default_str();
  cmd->callback([] {
    start_command(/*keep_freed_memory=*/false);  // varying tensor sizes: let glibc return big blocks
    arg_flags.apply();
    flags.apply();
    ModelSession s = ModelSession::open(args.model, args.sae_dirs(), args.allow_other_model);
    const EvalSet eval_set = build_eval_set(s.lm, args.eval_set, global_options().cache_dir);
    const EvalReport report = run_eval_stage(s, eval_set, options, out, plot);
    std::printf("%lld contexts, %lld tokens (BOS excluded)\n%s\nL0 against loss recovered (vs zero ablation):\n%s",
                static_cast<long long>(report.contexts), static_cast<long long>(report.tokens), report.table().c_str(),
                tradeoff_table(tradeoff_points(report)).c_str());
    if (!out.empty()) std::printf("wrote %s\n", out.c_str());
    if (!plot.empty()) std::printf("wrote %s\n", plot.c_str());
  });
}

}  // namespace saelab
