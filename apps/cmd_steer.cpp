// saelab steer: generation with a feature's decoder direction added at its hook.
#include "analysis/steering.h"
#include "apps/analysis_args.h"
#include "apps/commands.h"
#include "core/files.h"

namespace saelab {

void register_steer(CLI::App& app) {
  static AnalysisArgs args;
  static SteerOptions options;
  static int64_t feature = 0;
  static std::string prompt = "The jury said that", alphas = "0,4,8,16", out;
  CLI::App* cmd = app.add_subcommand("steer", "generate with alpha x a feature's decoder direction added at its hook");
  cmd->add_option("--model", args.model, "model folder with model.json")->capture_default_str();
  cmd->add_option("--sae", args.saes, "SAE folder")->required();
  cmd->add_flag("--allow-other-model", args.allow_other_model, "use an SAE whose metadata names another model file");
  cmd->add_option("--feature", feature, "feature index")->required();
  cmd->add_option("--prompt", prompt, "prompt")->capture_default_str();
  cmd->add_option("--alphas", alphas, "comma list of steering strengths (feature-activation units)")->capture_default_str();
  static FlagBinder<GenerateOptions> gen(cmd, &options.generate);
  gen.add("--max-new-tokens", &GenerateOptions::max_new_tokens, "tokens to generate");
  gen.add("--temperature", &GenerateOptions::temperature, "softmax temperature (0: greedy)");
  gen.add("--top-k", &GenerateOptions::top_k, "sample among the k most likely tokens");
  gen.add("--seed", &GenerateOptions::seed, "sampling seed (the same for every alpha)");
  cmd->add_option("--out", out, "also write the results as JSON");
  cmd->callback([] {
    start_command();
    gen.apply();
    options.alphas = parse_numbers<double>(alphas, "--alphas");
    const auto dirs = find_sae_dirs(args.saes);
    TORCH_CHECK(dirs.size() == 1, "--sae must name one SAE folder ('", args.saes, "' holds ", dirs.size(), ")");
    AnalysisSession s = AnalysisSession::open(args, dirs);
    const SteerResult r = steer(s.lm, *s.hooked, s.saes.front(), feature, prompt, find_unembedding(s.lm), options);
    std::printf("%s", r.side_by_side().c_str());
    if (!out.empty()) write_file_atomic(out, r.to_json().dump(2) + "\n");
  });
}

}  // namespace saelab
