// saelab capture: activations at hook points into a sharded activation store.
#include "apps/commands.h"
#include "apps/common.h"
#include "models/capture.h"

namespace saelab {

void register_capture(CLI::App& app) {
  struct Args {
    std::string model = default_model_dir();
    std::string out = "runs/acts";
    std::string hooks;
    std::string config;
  };
  static Args args;
  static CaptureOptions options;
  CLI::App* cmd = app.add_subcommand("capture", "capture activations at hook points to a sharded store (resumable)");
  cmd->add_option("--model", args.model, "model folder with model.json")->capture_default_str();
  cmd->add_option("--out", args.out, "output folder")->capture_default_str();
  cmd->add_option("--hooks", args.hooks, "comma-separated hook points or aliases (e.g. blocks.1.input)");
  cmd->add_option("--config", args.config, "JSON with the same keys as the flags (hooks as a list); flags override");
  static FlagBinder<CaptureOptions> flags(cmd, &options);
  flags.add("--tokens", &CaptureOptions::tokens, "rows (token positions) per hook");
  flags.add("--corpus", &CaptureOptions::corpus, "brown, brown:DIR, text:PATH or jsonl:PATH");
  flags.add("--split", &CaptureOptions::split, "train, validation or test");
  flags.add("--context-length", &CaptureOptions::context_length, "context length incl. BOS (0: the model's)");
  flags.add("--pack-documents", &CaptureOptions::pack_documents, "pack documents back to back (false: one per context)");
  flags.add("--include-bos", &CaptureOptions::include_bos, "store BOS positions too");
  flags.add("--dtype", &CaptureOptions::dtype, "float32, float16 or bfloat16");
  flags.add("--batch-size", &CaptureOptions::batch_size, "contexts per forward pass");
  flags.add("--shard-rows", &CaptureOptions::shard_rows, "rows per shard file");
  cmd->callback([] {
    start_command();
    if (!args.config.empty()) {
      const json cfg = load_json_file(args.config, "capture config");
      JsonFields f(cfg, args.config);
      read_capture_options(f, options);
      f.read("model", args.model);
      f.read("out", args.out);
      f.finish();
    }
    flags.apply();
    if (!args.hooks.empty()) {
      options.hooks = split_list(args.hooks);
    }
    LanguageModel lm = LanguageModel::open(args.model);
    const CaptureResult r = capture_activations(lm, options, global_options().cache_dir, args.out);
    std::printf("captured %lld rows at %zu hook point(s) into %s (%lld contexts this run, %.0f model tokens/s)\n",
                static_cast<long long>(r.rows), options.hooks.size(), args.out.c_str(),
                static_cast<long long>(r.contexts), r.tokens_per_second);
  });
}

}  // namespace saelab
