// saelab steer: generation with a feature's decoder direction added at its hook.
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
  SteerOptions steer;

  template <class V>
  void fields(V& v) {
    v("model", model, "model folder with model.json");
    v("sae", sae, "SAE folder");
    v("allow_other_model", allow_other_model, "use an SAE whose metadata names another model file");
    v("feature", feature, "feature index", at_least(0));
    v("prompt", prompt, "prompt");
    v("out", out, "also write the results as JSON");
    steer.fields(v);
  }
};

}  // namespace

void register_steer(CLI::App& app) {
  static SteerCommand options;
  CLI::App* cmd = app.add_subcommand("steer", "generate with alpha x a feature's decoder direction added at its hook");
  static OptionFlags<SteerCommand> flags(cmd, &options);
  cmd->get_option("--sae")->required();
  cmd->get_option("--feature")->required();
  cmd->callback([] {
    start_command();
    flags.apply();
    const auto dirs = find_sae_dirs(options.sae);
    TORCH_CHECK(dirs.size() == 1, "--sae must name one SAE folder ('", options.sae, "' holds ", dirs.size(), ")");
    AnalysisSession s = AnalysisSession::open(options.model, dirs, options.allow_other_model);
    const SteerResult r =
        steer(s.lm, *s.hooked, s.saes.front(), options.feature, options.prompt, find_unembedding(s.lm), options.steer);
    std::printf("%s", r.side_by_side().c_str());
    if (!options.out.empty()) write_file_atomic(options.out, r.to_json().dump(2) + "\n");
  });
}

}  // namespace saelab
