// saelab capture: activations at hook points into a sharded activation store.
#include "apps/commands.h"
#include "apps/common.h"
#include "core/distributed.h"
#include "models/capture.h"

namespace saelab {

namespace {

// What the command adds to CaptureOptions: where the model is and where the store goes.
struct CaptureCommand {
  std::string model = default_model_dir();
  std::string out = "runs/acts";
  CaptureOptions capture;

  template <class V>
  void fields(V& v) {
    v("model", model, "model folder with model.json");
    v("out", out, "output folder");
    capture.fields(v);
  }
};

}  // namespace

void register_capture(CLI::App& app) {
  static CaptureCommand options;
  static std::string config;
  CLI::App* cmd = app.add_subcommand("capture", "capture activations at hook points to a sharded store (resumable)");
  cmd->add_option("--config", config, "JSON with the same keys as the flags (hooks as a list); flags override");
  static OptionFlags<CaptureCommand> flags(cmd, &options);
  cmd->callback([] {
    start_command(true, true);  // under torchrun: each process captures its part of the rows
    if (!config.empty()) read_options(load_json_file(config, "capture config"), config, options);
    flags.apply();
    LanguageModel lm = LanguageModel::open(options.model);
    const CaptureResult r = capture_activations(lm, options.capture, global_options().cache_dir, options.out);
    if (world_communicator()->rank() != 0) return;  // rank 0 speaks for the capture
    std::printf("captured %lld rows at %zu hook point(s) into %s (%lld contexts this run, %.0f model tokens/s)\n",
                static_cast<long long>(r.rows), options.capture.hooks.size(), options.out.c_str(),
                static_cast<long long>(r.contexts), r.tokens_per_second);
  });
}

}  // namespace saelab
