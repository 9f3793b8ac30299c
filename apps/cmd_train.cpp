// saelab train: SAEs on captured activations, many per pass (architectures x sparsity settings,
// for every hook of a capture), each batch of each hook read once for all SAEs on it.
#include "apps/commands.h"
#include "apps/common.h"
#include "core/distributed.h"
#include "sae/train_run.h"

namespace saelab {

void register_train(CLI::App& app) {
  static SaeRunOptions options;
  static SaeGridOptions grid;
  static std::string config;
  CLI::App* cmd = app.add_subcommand("train", "train SAEs on captured activations (many per pass, resumable)");
  cmd->add_option("--config", config, "JSON config (keys as in OUT/run.json; 'saes' lists SAEs); flags override");
  static OptionFlags<SaeRunOptions> run_flags(cmd, &options);
  static OptionFlags<SaeGridOptions> grid_flags(cmd, &grid);
  cmd->callback([cmd] {
    start_command(true, true);
    if (!config.empty()) read_sae_run_options(load_json_file(config, "training config"), config, options);
    run_flags.apply();
    grid_flags.apply();
    const bool grid_given = cmd->count("--architectures") + cmd->count("--k") + cmd->count("--l1") +
                                cmd->count("--expansion") > 0;
    if (config.empty() || grid_given) options.saes = grid.specs();
    const SaeRunResult r = run_sae_training(options);
    if (world_communicator()->rank() != 0) return;  // rank 0 speaks for the run
    if (!r.complete) {
      std::printf("stopped at step %lld of %lld; rerun the same command to resume\n",
                  static_cast<long long>(r.steps_done), static_cast<long long>(options.train.steps));
      return;
    }
    for (const auto& dir : r.sae_dirs) std::printf("wrote %s\n", dir.c_str());
  });
}

}  // namespace saelab
