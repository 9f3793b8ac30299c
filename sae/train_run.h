// A training run: SAEs for every hook of an activation capture, all trained in one pass (each
// batch of each hook read once for all SAEs on it), with checkpoints and exact resume.
//
//   OUT/run.json           the run's options (a resumed run must match them) and, when finished,
//                          "complete": true and the SAE folders
//   OUT/checkpoint.pt      weights, Adam state, dead-latent counters, thresholds, step and the
//                          density counters; written atomically every `checkpoint_every` steps
//   OUT/metrics.jsonl      one line per step and SAE: loss, mse, fvu, l0, dead_fraction
//   OUT/<hook>/<name>/     SAELens directories (cfg.json, sae_weights.safetensors, sparsity.safetensors)
//
// The data order is a function of the seed and the number of batches drawn, so a resumed run
// (weights, optimizer, step, data position restored) ends with the same weights as one that was
// never interrupted.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "sae/trainer.h"

namespace saelab {

/// One SAE of a run (trained once per hook).
struct SaeRunSpec {
  /// standard, gated, topk, batchtopk or jumprelu.
  std::string architecture = "topk";
  /// Active latents per row (topk, batchtopk).
  int64_t k = 32;
  /// Sparsity coefficient λ (standard, gated: L1; jumprelu: L0).
  double l1 = 1.0;
  /// d_sae = expansion × d_in.
  int64_t expansion = 8;
  /// JumpReLU bandwidth and initial threshold (normalised units).
  double jumprelu_bandwidth = SaeConfig{}.jumprelu_bandwidth;
  double jumprelu_init_threshold = SaeConfig{}.jumprelu_init_threshold;
  /// Folder name; empty: "<architecture>-k<k>" or "<architecture>-l1_<λ>".
  std::string name;

  std::string folder_name() const;
};

struct SaeRunOptions {
  /// Capture folder (saelab capture --out).
  std::string store = "runs/acts";
  /// Hook points of the capture; empty: all of them.
  std::vector<std::string> hooks;
  /// Output folder.
  std::string out = "runs/saes";
  /// The SAEs trained on each hook.
  std::vector<SaeRunSpec> saes = {SaeRunSpec{}};
  SaeTrainOptions train;
  /// Rows used for the scaling factor and b_dec's geometric median.
  int64_t init_rows = 8192;
  /// Shards in the shuffle buffer.
  int64_t buffer_shards = 4;
  /// Seed of SAE initialisation and data order.
  int64_t seed = 0;
  /// Steps between checkpoints.
  int64_t checkpoint_every = 500;
  /// Stop (with a checkpoint) after this many steps of this invocation (0: run to the end); for tests.
  int64_t stop_after = 0;

  void validate() const;
  /// Everything that shapes the result (not `stop_after`): a checkpoint must match it to resume.
  nlohmann::json to_json() const;
};

/// The cross product architectures × (k for topk / batchtopk, λ otherwise).
std::vector<SaeRunSpec> sae_grid(const std::vector<std::string>& architectures, const std::vector<int64_t>& ks,
                                 const std::vector<double>& l1s, int64_t expansion);

/// Reads a JSON config into `options` (keys as in to_json(); "saes" is a list of objects with the
/// SaeRunSpec fields, or give "architectures", "k", "l1", "expansion" for their cross product).
/// Unknown keys and wrong types are errors naming `where` and the key.
void read_sae_run_options(const nlohmann::json& config, const std::string& where, SaeRunOptions& options);

struct SaeRunResult {
  std::vector<std::string> sae_dirs;  ///< OUT/<hook>/<name>, written when complete
  int64_t steps_done = 0;
  int64_t resumed_from = 0;           ///< step of the checkpoint this invocation started from
  bool complete = false;
};

/// Trains (or resumes) the run. Throws on NaN / Inf naming the step; the last checkpoint stays intact.
SaeRunResult run_sae_training(const SaeRunOptions& options);

}  // namespace saelab
