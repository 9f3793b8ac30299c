// saelab graph: features across consecutive layers (decoder cosine and ablation effects), as JSON.
#include <algorithm>
#include <map>

#include "analysis/feature_graph.h"
#include "apps/analysis_args.h"
#include "apps/commands.h"
#include "core/files.h"

namespace saelab {

void register_graph(CLI::App& app) {
  static AnalysisArgs args;
  static GraphOptions options;
  static std::string name, out = "runs/graph.json";
  CLI::App* cmd = app.add_subcommand("graph", "feature graph across consecutive layers (cosine and ablation edges)");
  args.add_to(cmd, 32);
  static FlagBinder<GraphOptions> flags(cmd, &options);
  flags.add("--similar", &GraphOptions::similar, "cosine edges per feature");
  flags.add("--ablated-features", &GraphOptions::ablated_features, "features ablated per layer");
  flags.add("--ablation-contexts", &GraphOptions::contexts, "contexts per ablation");
  flags.add("--effects", &GraphOptions::effects, "strongest ablation edges kept per ablated feature");
  cmd->add_option("--name", name, "SAE folder name chained across hooks (default: the first found)");
  cmd->add_option("--out", out, "JSON edges")->capture_default_str();
  cmd->callback([] {
    start_command();
    flags.apply();
    std::vector<std::string> dirs = args.sae_dirs();
    const std::string chosen = name.empty() ? std::filesystem::path(dirs.front()).filename().string() : name;
    dirs.erase(std::remove_if(dirs.begin(), dirs.end(),
                              [&](const std::string& d) { return std::filesystem::path(d).filename() != chosen; }),
               dirs.end());
    TORCH_CHECK(dirs.size() >= 2, "the feature graph needs SAEs named '", chosen, "' on at least two hooks");
    AnalysisSession s = AnalysisSession::open(args, dirs);
    // Order the chain as the forward pass reaches the hooks.
    std::map<std::string, size_t> order;
    for (size_t i = 0; i < s.hooked->hook_points().size(); ++i) order[s.hooked->hook_points()[i]] = i;
    std::sort(s.saes.begin(), s.saes.end(),
              [&](const AttachedSae& a, const AttachedSae& b) { return order.at(a.hook) < order.at(b.hook); });
    const EvalSet eval_set = build_eval_set(s.lm, args.eval_set, global_options().cache_dir);
    const FeatureGraph g = build_feature_graph(*s.hooked, s.saes, eval_set, options);
    write_file_atomic(out, g.to_json().dump(1) + "\n");
    std::printf("%zu edges across %zu SAEs; wrote %s\n", g.edges.size(), s.saes.size(), out.c_str());
  });
}

}  // namespace saelab
