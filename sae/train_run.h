// A training run: SAEs for every hook of an activation capture, all trained in one pass (each
// batch of each hook read once for all SAEs on it), with checkpoints and exact resume.
//
//   OUT/run.json           the run's options (a resumed run must match them) and, when finished,
//                          "complete": true and the SAE folders
//   OUT/checkpoint.pt      weights, Adam state, dead-latent counters, thresholds, step and the
//                          density counters; written atomically every `checkpoint_every` steps
//   OUT/metrics.jsonl      one line per step and SAE: loss, mse, fvu, l0, dead_fraction
//   OUT/<hook>/<name>/     SAELens directories (cfg.json, sae_weights.safetensors, sparsity.safetensors)
//   OUT/<in>__<out>/<name>/  the same for a transcoder from hook <in> to hook <out> (`targets`)
//
// The data order is a function of the seed and the number of batches drawn, so a resumed run
// (weights, optimizer, step, data position restored) ends with the same weights as one that was
// never interrupted.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "core/activation_store.h"
#include "sae/trainer.h"

namespace saelab {

/// One SAE of a run (trained once per hook).
struct SaeRunSpec {
  std::string architecture = "topk";
  int64_t k = 32;
  double l1 = 1.0;
  int64_t expansion = 8;
  double jumprelu_bandwidth = 0;  ///< 0: default_jumprelu_bandwidth of the penalty
  double jumprelu_init_threshold = SaeConfig{}.jumprelu_init_threshold;
  std::string jumprelu_sparsity = jumprelu_sparsity_name(SaeConfig{}.jumprelu_sparsity);
  double jumprelu_tanh_scale = SaeConfig{}.jumprelu_tanh_scale;
  double pre_act_loss_coefficient = SaeConfig{}.pre_act_loss_coefficient;
  std::vector<int64_t> matryoshka_widths;
  int64_t matryoshka_levels = 4;
  bool skip = false;
  std::string name;

  template <class V>
  void fields(V& v) {
    v("architecture", architecture, "standard, gated, topk, batchtopk, matryoshka_batchtopk or jumprelu");
    v("k", k, "active latents per row (topk, batchtopk, matryoshka_batchtopk)", at_least(1));
    v("l1", l1, "sparsity coefficient λ (standard, gated: L1; jumprelu: its sparsity penalty)", at_least(0));
    v("expansion", expansion, "d_sae = expansion × d_in (in a run config: the run's 'expansion' when left out)", at_least(1));
    v("jumprelu_bandwidth", jumprelu_bandwidth, "JumpReLU pseudo-gradient bandwidth ε in normalised units (0: the penalty's default, tanh 2, step 0.05)", at_least(0));
    v("jumprelu_init_threshold", jumprelu_init_threshold, "JumpReLU initial threshold (normalised units)", at_least(0));
    v("jumprelu_sparsity", jumprelu_sparsity, "JumpReLU penalty: tanh (Anthropic 2025: λ Σ tanh(c f |W_dec|)) or step (Gemma Scope: λ L0)");
    v("jumprelu_tanh_scale", jumprelu_tanh_scale, "c of the tanh penalty", at_least(1e-12));
    v("pre_act_loss_coefficient", pre_act_loss_coefficient, "JumpReLU pre-activation loss on dead latents (0: off)", at_least(0));
    v("matryoshka_widths", matryoshka_widths, "nested widths of a matryoshka_batchtopk SAE, the last d_sae (empty: halving levels)", at_least(1));
    v("matryoshka_levels", matryoshka_levels, "levels when matryoshka_widths is empty: d_sae / 2^(L-1), …, d_sae / 2, d_sae", at_least(1));
    v("skip", skip, "transcoders: a linear skip path x W_skipᵀ beside the code, initialised to zero");
    v("name", name, "folder name (empty: <architecture>-k<k> or <architecture>-l1_<λ>, with -skip)", path_name());
  }
  std::string folder_name() const;
  /// The SaeConfig of this SAE on inputs of width d_in (validated); a transcoder when d_out > 0
  /// (no b_dec subtracted from the input).
  SaeConfig config(int64_t d_in, int64_t d_out = 0) const;
  /// jumprelu_bandwidth, or the penalty's default when it is 0.
  double bandwidth() const;
};

/// A cross product of SAEs: architectures × (k for topk / batchtopk, λ otherwise).
struct SaeGridOptions {
  std::vector<std::string> architectures = {SaeRunSpec{}.architecture};
  std::vector<int64_t> k = {SaeRunSpec{}.k};
  std::vector<double> l1 = {SaeRunSpec{}.l1};
  int64_t expansion = SaeRunSpec{}.expansion;
  bool skip = false;

  template <class V>
  void fields(V& v) {
    v("architectures", architectures, "architectures of the grid: standard, gated, topk, batchtopk, matryoshka_batchtopk, jumprelu", non_empty());
    v("k", k, "k of the grid's topk / batchtopk / matryoshka_batchtopk SAEs (one SAE each)", at_least(1).and_non_empty());
    v("l1", l1, "λ of the grid's standard / gated / jumprelu SAEs (one SAE each)", at_least(0).and_non_empty());
    v("expansion", expansion, "d_sae = expansion × d_in", at_least(1));
    v("skip", skip, "transcoders (--targets): a linear skip path W_skip in every coder of the grid");
  }
  std::vector<SaeRunSpec> specs() const;
};

/// The rows that initialise a run's coders when init_rows is 0 (or all of a smaller store).
inline constexpr int64_t kDefaultInitRows = 8192;

struct SaeRunOptions {
  std::string store = "runs/acts";
  std::vector<std::string> hooks;
  std::vector<std::string> targets;
  std::string out = "runs/saes";
  std::vector<SaeRunSpec> saes = {SaeRunSpec{}};
  std::vector<SaeRunSpec> transcoders;
  SaeTrainOptions train;
  int64_t init_rows = 0;
  int64_t buffer_shards = 4;
  double buffer_gb = 2;
  int64_t seed = 0;
  int64_t checkpoint_every = 500;
  int64_t stop_after = 0;
  int64_t data_parallel = 1;
  int64_t buffer_rows = 65536;

  template <class V>
  void fields(V& v) {
    v("store", store, "capture folder (saelab capture --out)");
    v("hooks", hooks, "hook points of the capture (empty: all of them)", path_name().and_non_empty());
    v("targets", targets, "transcoders: the hook each of --hooks predicts, in order (empty: SAEs, which reconstruct their hook; an entry equal to its hook: an SAE)", path_name().and_non_empty());
    v("out", out, "output folder: OUT/<hook>/<name>/ SAELens directories", kInConfig | kOnCommandLine);
    v("saes", saes, "the SAEs trained on each hook (objects with the SaeRunSpec keys)", kInConfig | kInRecord);
    v("transcoders", transcoders, "the coders trained on each transcoder pair (a hook with a target), as saes (empty: saes)", kInConfig | kInRecord);
    train.fields(v);
    v("init_rows", init_rows, "rows used for the scaling factor and b_dec's geometric median (0: 8192, or the whole store when smaller; more than the store is refused)", at_least(0));
    v("buffer_shards", buffer_shards, "shards in the shuffle buffer", at_least(1));
    v("buffer_gb", buffer_gb, "at most this many GB (10^9 bytes) of shuffle buffer per hook: fewer than buffer_shards shards when they would not fit, at least one; 0: no bound", at_least(0));
    v("seed", seed, "seed of SAE initialisation and data order", at_least(0));
    v("checkpoint_every", checkpoint_every, "steps between checkpoints", at_least(1).only(kInConfig | kOnCommandLine));
    v("data_parallel", data_parallel, "under torchrun: processes that share each SAE, each on its own rows of every batch (the others split the SAEs)", at_least(1).at_most(1 << 20).only(kInConfig | kOnCommandLine));
    v("buffer_rows", buffer_rows, "streaming from the model (--model): rows in the shuffle buffer, refilled when half empty", at_least(2).only(kInConfig | kOnCommandLine));
    v("stop_after", stop_after, "stop, with a checkpoint, after this many steps of this invocation (0: run to the end)", at_least(0).only(kOnCommandLine));
  }
  void validate() const;
  /// What shapes the result (the kInRecord fields, SAE names resolved): a checkpoint must match it
  /// to resume.
  nlohmann::json to_json() const;
  /// The target of hooks[i] ("" for an SAE).
  std::string target_of(size_t i) const;
};

/// The folder of a coder group under the run's output: the hook for SAEs, <in>__<out> for a
/// transcoder from hook <in> to hook <out>.
std::string coder_group_name(const std::string& hook, const std::string& target);

/// Reads a training config into `options`: the SaeRunOptions keys ("saes" a list of objects with
/// the SaeRunSpec keys), or the SaeGridOptions keys for a cross product instead of "saes"; a
/// top-level "expansion" is the default of every SAE listed without one. Unknown keys and wrong
/// types are errors naming `where` and the key.
void read_sae_run_options(const nlohmann::json& config, const std::string& where, SaeRunOptions& options);

struct SaeRunResult {
  std::vector<std::string> sae_dirs;  ///< OUT/<hook>/<name>, written when complete
  int64_t steps_done = 0;
  int64_t resumed_from = 0;           ///< step of the checkpoint this invocation started from
  bool complete = false;
};

/// Trains (or resumes) the run, from options.store or, when `stream` is given, from it (one
/// process; options.hooks are then its hooks). Throws on NaN / Inf naming the step; the last
/// checkpoint stays intact.
SaeRunResult run_sae_training(const SaeRunOptions& options, ActivationStream* stream = nullptr);

}  // namespace saelab
