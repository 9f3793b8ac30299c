// saelab train: SAEs on captured activations, many per pass (architectures x sparsity settings,
// for every hook of a capture), each batch of each hook read once for all SAEs on it.
#include <algorithm>

#include "apps/commands.h"
#include "apps/common.h"
#include "core/distributed.h"
#include "models/capture.h"
#include "models/hooked_model.h"
#include "sae/train_run.h"

namespace saelab {

namespace {

// Training from the model instead of a store: the plan a capture would run, streamed through a
// shuffle buffer (--buffer-rows) inside the training loop.
struct StreamCommand {
  std::string model;
  int64_t tokens = 0;
  std::string corpus = CaptureOptions{}.corpus;
  std::string split = CaptureOptions{}.split;
  int64_t context_length = 0;
  bool pack_documents = true;
  bool include_bos = false;
  int64_t context_batch = CaptureOptions{}.batch_size;

  template <class V>
  void fields(V& v) {
    v("model", model, "stream activations from this model folder (with --hooks) instead of reading --store");
    v("tokens", tokens, "with --model: rows of one pass over the corpus, passes repeating (0: steps x batch_size, one pass)", at_least(0));
    v("corpus", corpus, "with --model: corpus (brown, brown:DIR, text:PATH or jsonl:PATH)");
    v("split", split, "with --model: corpus split");
    v("context_length", context_length, "with --model: context length including BOS (0: the model's)", at_least(0));
    v("pack_documents", pack_documents, "with --model: pack documents back to back (false: one per context)");
    v("include_bos", include_bos, "with --model: train on BOS positions too");
    v("context_batch", context_batch, "with --model: contexts per forward pass", at_least(1));
  }
};

}  // namespace

void register_train(CLI::App& app) {
  static SaeRunOptions options;
  static SaeGridOptions grid;
  static std::string config;
  CLI::App* cmd = app.add_subcommand("train", "train SAEs on captured activations (many per pass, resumable)");
  cmd->add_option("--config", config, "JSON config (keys as in OUT/run.json; 'saes' lists SAEs); flags override");
  static OptionFlags<SaeRunOptions> run_flags(cmd, &options);
  static OptionFlags<SaeGridOptions> grid_flags(cmd, &grid);
  static StreamCommand stream_options;
  static OptionFlags<StreamCommand> stream_flags(cmd, &stream_options);
  cmd->callback([cmd] {
    start_command(true, true);
    if (!config.empty()) read_sae_run_options(load_json_file(config, "training config"), config, options);
    run_flags.apply();
    grid_flags.apply();
    const bool grid_given = cmd->count("--architectures") + cmd->count("--k") + cmd->count("--l1") +
                                cmd->count("--expansion") + cmd->count("--skip") > 0;
    if (config.empty() || grid_given) options.saes = grid.specs();
    stream_flags.apply();
    SaeRunResult r;
    if (stream_options.model.empty()) {
      TORCH_CHECK(cmd->count("--tokens") + cmd->count("--corpus") + cmd->count("--context-batch") == 0,
                  "--tokens, --corpus and --context-batch describe streaming from a model; give --model too");
      r = run_sae_training(options);
    } else {
      TORCH_CHECK(!options.hooks.empty(), "--model streams activations at --hooks; name at least one hook");
      LanguageModel lm = LanguageModel::open(stream_options.model);
      {  // the names the stream records (blocks.0.input → blocks.0.hook_resid_pre), as a capture would
        const HookedModel hooked(lm.module(), lm.info().hook_aliases);
        for (auto& h : options.hooks) h = hooked.preferred_name(h);
        for (auto& t : options.targets) t = hooked.preferred_name(t);
      }
      CaptureOptions plan;
      plan.hooks = options.hooks;
      for (const auto& t : options.targets) {  // transcoder targets are streamed beside their inputs
        if (std::find(plan.hooks.begin(), plan.hooks.end(), t) == plan.hooks.end()) plan.hooks.push_back(t);
      }
      plan.tokens = stream_options.tokens > 0 ? stream_options.tokens : options.train.steps * options.train.batch_size;
      plan.corpus = stream_options.corpus;
      plan.split = stream_options.split;
      plan.context_length = stream_options.context_length;
      plan.pack_documents = stream_options.pack_documents;
      plan.include_bos = stream_options.include_bos;
      plan.batch_size = stream_options.context_batch;
      const std::unique_ptr<ActivationStream> stream =
          open_activation_stream(lm, plan, global_options().cache_dir, options.train.batch_size, options.buffer_rows,
                                 static_cast<uint64_t>(options.seed));
      r = run_sae_training(options, stream.get());
    }
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
