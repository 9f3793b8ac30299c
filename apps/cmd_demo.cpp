// saelab demo: the main job. Runs the whole study on the bundled model and Brown corpus (or a
// pipeline config of your own) — capture, train SAEs on every layer, evaluate, find top texts,
// explain, graph, steer — and writes a browsable report. Stages are cached and resumable.
#include <fmt/format.h>

#include "study/pipeline.h"
#include "apps/commands.h"
#include "apps/common.h"
#include "core/json_options.h"

namespace saelab {

void register_demo(CLI::App& app) {
  struct Args {
    std::string config = SAELAB_SOURCE_DIR "/configs/demo.json";
    std::string out;
    bool quick = false;
    bool check = false;
  };
  static Args args;
  CLI::App* cmd = app.add_subcommand("demo", "the whole study on the bundled model and Brown corpus, with an HTML report");
  cmd->add_option("--config", args.config, "pipeline config (JSON)")->capture_default_str();
  cmd->add_option("--out", args.out, "output folder (default: the config's \"out\")");
  cmd->add_flag("--quick", args.quick, "fewer tokens and a smaller sweep (the config's \"quick\" overrides)");
  cmd->add_flag("--check", args.check, "only validate the config");
  cmd->callback([] {
    start_command();
    PipelineOptions o;
    o.config = load_json_file(args.config, "pipeline config");
    o.config_path = args.config;
    o.quick = args.quick;
    o.out = args.out;
    o.cache_dir = global_options().cache_dir;
    if (args.check) {
      validate_pipeline_config(o);
      std::printf("%s: valid\n", args.config.c_str());
      return;
    }
    const PipelineResult r = run_pipeline(o);
    std::printf("\nstages:");
    for (const auto& s : r.stages) std::printf(" %s (%s)", s.name.c_str(), s.ran ? fmt::format("{:.0f} s", s.seconds).c_str() : "cached");
    std::printf("\n\n%s\nreport: %s\n", r.summary_table().c_str(), r.report.c_str());
  });
}

}  // namespace saelab
