// saelab generate: sample a continuation of a prompt.
#include "apps/commands.h"
#include "apps/common.h"
#include "models/generate.h"

namespace saelab {

void register_generate(CLI::App& app) {
  struct Args {
    std::string model = default_model_dir();
    std::string prompt = "The jury said";
    int64_t samples = 1;
  };
  static Args args;
  static GenerateOptions gen;
  CLI::App* cmd = app.add_subcommand("generate", "sample text from a model (temperature, top-k)");
  cmd->add_option("--model", args.model, "model folder with model.json")->capture_default_str();
  cmd->add_option("--prompt", args.prompt, "text to continue")->capture_default_str();
  cmd->add_option("--samples", args.samples, "how many continuations")->capture_default_str();
  cmd->add_option("--max-new-tokens", gen.max_new_tokens, "tokens to generate")->capture_default_str();
  cmd->add_option("--temperature", gen.temperature, "softmax temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", gen.top_k, "sample among the k most likely tokens (0: all)")->capture_default_str();
  cmd->add_option("--seed", gen.seed, "sampling seed")->capture_default_str();
  cmd->callback([] {
    start_command();
    LanguageModel lm = LanguageModel::open(args.model);
    const auto prompt = prompt_ids(lm, args.prompt);
    for (int64_t s = 0; s < args.samples; ++s) {
      GenerateOptions o = gen;
      o.seed = gen.seed + s;
      const auto ids = generate(lm, prompt, o);
      std::printf("%s\n", generated_text(lm, prompt, ids).c_str());
      if (s + 1 < args.samples) std::printf("---\n");
    }
  });
}

}  // namespace saelab
