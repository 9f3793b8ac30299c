// saelab graph: features across consecutive layers (decoder cosine and ablation effects), as JSON.
#include <algorithm>
#include <map>

#include "analysis/feature_graph.h"
#include "apps/analysis_args.h"
#include "apps/commands.h"
#include "core/files.h"

namespace saelab {

void register_graph(CLI::App& app) {
  static AnalysisArgs args(kGraphContexts);
  static GraphOptions options;
  static std::string out = "runs/graph.json";
  CLI::App* cmd = app.add_subcommand("graph", "feature graph across consecutive layers (cosine and ablation edges)");
  static OptionFlags<AnalysisArgs> arg_flags(cmd, &args);
  static OptionFlags<GraphOptions> flags(cmd, &options);
  cmd->add_option("--out", out, "JSON edges")->capture_default_str();
  cmd->callback([] {
    start_command(/*keep_freed_memory=*/false);  // varying tensor sizes: let glibc return big blocks
    arg_flags.apply();
    flags.apply();
    // Only the chain's SAEs are opened.
    std::vector<std::string> dirs = args.sae_dirs();
    const std::string chosen = options.name.empty() ? std::filesystem::path(dirs.front()).filename().string() : options.name;
    dirs.erase(std::remove_if(dirs.begin(), dirs.end(),
                              [&](const std::string& d) { return std::filesystem::path(d).filename() != chosen; }),
               dirs.end());
    TORCH_CHECK(dirs.size() >= 2, "the feature graph needs SAEs named '", chosen, "' on at least two hooks");
    ModelSession s = ModelSession::open(args.model, dirs, args.allow_other_model);
    s.saes = graph_chain(*s.hooked, s.saes, chosen);
    const EvalSet eval_set = build_eval_set(s.lm, args.eval_set, global_options().cache_dir);
    const FeatureGraph g = build_feature_graph(*s.hooked, s.saes, eval_set, options);
    write_file_atomic(out, g.to_json().dump(1) + "\n");
    std::printf("%zu edges across %zu SAEs; wrote %s\n", g.edges.size(), s.saes.size(), out.c_str());
  });
}

}  // namespace saelab
