// saelab train: SAEs on captured activations, many per pass (architectures x sparsity settings,
// for every hook of a capture), each batch of each hook read once for all SAEs on it.
#include "apps/commands.h"
#include "apps/common.h"
#include "sae/train_run.h"

namespace saelab {

void register_train(CLI::App& app) {
  struct Args {
    std::string hooks;  // empty: every hook of the capture
    std::string architectures = "topk";
    int64_t expansion = 8;
    std::string k = "32";
    std::string l1 = "1.0";
    std::string config;
  };
  static Args args;
  static SaeRunOptions options;
  CLI::App* cmd = app.add_subcommand("train", "train SAEs on captured activations (many per pass, resumable)");
  cmd->add_option("--config", args.config, "JSON config (keys as in OUT/run.json; 'saes' lists SAEs); flags override");
  cmd->add_option("--hooks", args.hooks, "comma-separated hook points of the capture (default: all)");
  cmd->add_option("--architectures", args.architectures, "comma list of standard, gated, topk, batchtopk, jumprelu")
      ->capture_default_str();
  cmd->add_option("--expansion", args.expansion, "d_sae = expansion x d_in")->capture_default_str();
  cmd->add_option("--k", args.k, "comma list of k for topk / batchtopk (one SAE each)")->capture_default_str();
  cmd->add_option("--l1", args.l1, "comma list of sparsity coefficients for standard / gated / jumprelu")
      ->capture_default_str();
  static FlagBinder<SaeRunOptions> run_flags(cmd, &options);
  run_flags.add("--store", &SaeRunOptions::store, "capture folder (saelab capture --out)");
  run_flags.add("--out", &SaeRunOptions::out, "output folder: OUT/<hook>/<name>/ SAELens directories");
  run_flags.add("--init-rows", &SaeRunOptions::init_rows, "rows used for the scaling factor and b_dec's geometric median");
  run_flags.add("--seed", &SaeRunOptions::seed, "seed of initialisation and data order");
  run_flags.add("--checkpoint-every", &SaeRunOptions::checkpoint_every, "steps between checkpoints");
  run_flags.add("--stop-after", &SaeRunOptions::stop_after, "stop after this many steps (resume later)");
  static SaeTrainOptions train_defaults;
  static FlagBinder<SaeTrainOptions> flags(cmd, &train_defaults);
  flags.add("--steps", &SaeTrainOptions::steps, "optimizer steps");
  flags.add("--batch-size", &SaeTrainOptions::batch_size, "rows per step");
  flags.add("--lr", &SaeTrainOptions::lr, "Adam learning rate");
  flags.add("--l1-warmup-steps", &SaeTrainOptions::l1_warmup_steps, "sparsity-coefficient warm-up steps");
  flags.add("--dead-window", &SaeTrainOptions::dead_window, "tokens without firing before a latent is dead");
  cmd->callback([cmd] {
    start_command();
    if (!args.config.empty()) {
      read_sae_run_options(load_json_file(args.config, "training config"), args.config, options);
    }
    train_defaults = options.train;
    flags.apply();
    options.train = train_defaults;
    run_flags.apply();
    if (cmd->count("--hooks") > 0) options.hooks = split_list(args.hooks);
    const bool grid_flags = cmd->count("--architectures") + cmd->count("--k") + cmd->count("--l1") +
                                cmd->count("--expansion") > 0;
    if (args.config.empty() || grid_flags) {
      options.saes = sae_grid(split_list(args.architectures), parse_numbers<int64_t>(args.k, "--k"),
                              parse_numbers<double>(args.l1, "--l1"), args.expansion);
    }
    const SaeRunResult r = run_sae_training(options);
    if (!r.complete) {
      std::printf("stopped at step %lld of %lld; rerun the same command to resume\n",
                  static_cast<long long>(r.steps_done), static_cast<long long>(options.train.steps));
      return;
    }
    for (const auto& dir : r.sae_dirs) std::printf("wrote %s\n", dir.c_str());
  });
}

}  // namespace saelab
