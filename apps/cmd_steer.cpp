// saelab steer: generation with a feature's decoder direction added at its hook.
#include <optional>

#include "analysis/feature_db.h"
#include "analysis/feature_queries.h"
#include "analysis/steering.h"
#include "apps/analysis_args.h"
#include "apps/commands.h"
#include "core/files.h"

namespace saelab {

namespace {

// What the command adds to SteerOptions: the model, the SAE, the feature and the prompt.
struct SteerCommand {
  std::string model = default_model_dir();
  std::string sae;
  bool allow_other_model = false;
  int64_t feature = 0;
  std::string prompt = kSteerPrompt;
  std::string out;
  std::string db;
  double max_activation = 0;
  SteerOptions steer;

  template <class V>
  void fields(V& v) {
    v("model", model, "model folder with model.json");
    v("saes", sae, "the SAE folder (one; --saes as in the other commands)");
    v("allow_other_model", allow_other_model, "use an SAE whose metadata names another model file");
    v("feature", feature, "feature index", at_least(0));
    v("prompt", prompt, "prompt");
    v("out", out, "also write the results as JSON");
    v("db", db, "feature database (saelab top --db): the feature's max activation, for clamp mode");
    v("max_activation", max_activation, "the feature's max activation for clamp mode (instead of --db)", at_least(0));
    steer.fields(v);
  }
};

}  // namespace

void register_steer(CLI::App& app) {
  static SteerCommand options;
  CLI::App* cmd = app.add_subcommand("steer", "generate with a feature's decoder direction added at its hook (add: alpha x W_dec; clamp: the feature set to c x its max activation)");
  static OptionFlags<SteerCommand> flags(cmd, &options);
  cmd->get_option("--saes")->required();
  cmd->get_option("--feature")->required();
  cmd->callback([] {
    start_command(/*keep_freed_memory=*/false);  // varying tensor sizes: let glibc return big blocks
    flags.apply();
    const auto dirs = find_sae_dirs(options.sae);
    if (dirs.size() != 1) {
      std::string listed;
      for (size_t i = 0; i < dirs.size() && i < 6; ++i) listed += (i == 0 ? "" : ", ") + dirs[i];
      TORCH_CHECK(false, "--saes must name one SAE folder; '", options.sae, "' holds ", dirs.size(), ": ", listed,
                  dirs.size() > 6 ? ", …" : "");
    }
    ModelSession s = ModelSession::open(options.model, dirs, options.allow_other_model);
    double max_activation = options.max_activation;
    if (!options.db.empty() && max_activation <= 0) {
      FeatureDb db = FeatureDb::open(options.db);
      const std::optional<double> max = FeatureQueries(db).max_activation(s.saes.front().name, options.feature);
      TORCH_CHECK(max.has_value(), options.db, ": no row for feature ", options.feature, " of SAE '", s.saes.front().name,
                  "' in table features (run saelab top on this SAE)");
      max_activation = *max;
      db.commit();
    }
    TORCH_CHECK(options.steer.mode != "clamp" || max_activation > 0, "clamp steering needs the feature's max "
                "activation: give --db (the feature database of saelab top) or --max-activation");
    const SteerResult r = steer(s.lm, *s.hooked, s.saes.front(), options.feature, options.prompt,
                                find_unembedding(s.lm), options.steer, max_activation);
    std::printf("%s", r.side_by_side().c_str());
    if (!options.out.empty()) write_file_atomic(options.out, r.to_json().dump(2) + "\n");
  });
}

}  // namespace saelab
