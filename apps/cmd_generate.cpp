// saelab generate: sample a continuation of a prompt.
#include "apps/commands.h"
#include "apps/common.h"
#include "models/generate.h"

namespace saelab {

namespace {

struct GenerateCommand {
  std::string model = default_model_dir();
  std::string prompt = "The jury said";
  int64_t samples = 1;
  GenerateOptions generate;

  template <class V>
  void fields(V& v) {
    v("model", model, "model folder with model.json");
    v("prompt", prompt, "text to continue");
    v("samples", samples, "how many continuations (seeds seed, seed + 1, …)", in_range(1, 10000));
    generate.fields(v);
  }
};

}  // namespace

void register_generate(CLI::App& app) {
  static GenerateCommand options;
  CLI::App* cmd = app.add_subcommand("generate", "sample text from a model (temperature, top-k)");
  static OptionFlags<GenerateCommand> flags(cmd, &options);
  cmd->callback([] {
    start_command();
    flags.apply();
    LanguageModel lm = LanguageModel::open(options.model);
    const auto prompt = prompt_ids(lm, options.prompt);
    for (int64_t s = 0; s < options.samples; ++s) {
      GenerateOptions o = options.generate;
      o.seed = options.generate.seed + s;
      const auto ids = generate(lm, prompt, o);
      std::printf("%s\n", generated_text(lm, prompt, ids).c_str());
      if (s + 1 < options.samples) std::printf("---\n");
    }
  });
}

}  // namespace saelab
