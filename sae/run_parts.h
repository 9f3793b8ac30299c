// The parts of a training run that sae/train_run.cpp's loop drives (internal to sae/):
//   RunLayout    who trains what: the run's coder groups (an input hook, and a target for
//                transcoders), its coders ("units", group-major) and their split over the
//                processes of a torchrun launch (sae/run_layout.cpp);
//   HookGroup    one group as this process trains it: its batches (input and target read in
//                lockstep, or streamed) and its trainer (sae/run_layout.cpp opens them, after the
//                memory check);
//   checkpoints  every coder of the run apart under "unit<u>", whatever the number of processes
//                that wrote or read it (sae/run_checkpoint.cpp).
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/activation_store.h"
#include "core/distributed.h"
#include "sae/train_run.h"
#include "sae/trainer.h"

namespace saelab {

struct RunLayout {
  const SaeRunOptions* options = nullptr;
  std::vector<std::string> hooks;    // input hook of each group
  std::vector<std::string> targets;  // the hook its transcoders predict; "" for SAEs
  std::vector<std::string> keys;     // folder of each group: coder_group_name(hook, target)
  std::vector<std::pair<size_t, size_t>> unit_ref;  // (group, spec) of each unit
  std::vector<int64_t> first_unit;                  // of each group
  int world_size = 1, rank = 0;
  int dp = 1;                  // data-parallel replicas per module group
  int n_groups = 1;            // module groups: world_size / dp
  int my_group = 0, replica = 0;
  std::vector<std::vector<int64_t>> units_of_rank;  // the units each group's leading rank sends

  /// The coders of group h: options.transcoders for a transcoder group (when given), else options.saes.
  const std::vector<SaeRunSpec>& specs_of(size_t h) const;
  const SaeRunSpec& spec_of_unit(int64_t u) const;
  const std::string& key_of_unit(int64_t u) const { return keys[unit_ref[static_cast<size_t>(u)].first]; }
  int64_t n_units() const { return static_cast<int64_t>(unit_ref.size()); }
  /// The module group that trains unit u (contiguous, equal-sized parts).
  int group_of_unit(int64_t u) const { return static_cast<int>(u * n_groups / n_units()); }
  /// The replica that writes the group's coders and reports their statistics.
  bool leader() const { return replica == 0; }
  /// OUT/<group>/<name> of unit u.
  std::string unit_dir(int64_t u) const;
  /// The run's launch (provenance only: a resume may use another number of processes).
  nlohmann::json launch() const;
};

/// The layout of a run on `world_size` processes (this one `rank`): refuses in one line what
/// cannot be split (data_parallel not dividing the processes, more module groups than coders).
RunLayout plan_run_layout(const SaeRunOptions& options, const ActivationStream* stream, int world_size, int rank);

// One group of the run as this process trains it: its store, batches and trainer, over this
// process's coders of the group (all of them in one process).
struct HookGroup {
  std::string hook;            // the input hook
  std::string target;          // the hook a transcoder predicts; empty for SAEs
  std::string key;             // folder and name in the metrics: coder_group_name(hook, target)
  int64_t hook_index = 0;      // position among the run's groups
  int64_t input_slot = 0, target_slot = 0;  // the stream's hook positions of input and target
  std::vector<int64_t> units;  // global unit index (group-major over the run's coders) of each trainer SAE
  StoreManifest manifest;                // the store's, or the stream's description of it
  StoreManifest target_manifest;         // the target's (transcoders)
  std::unique_ptr<ActivationStore> store;  // null when streaming
  std::unique_ptr<ActivationStore> target_store;
  std::unique_ptr<ShuffledBatches> batches;  // input and target in lockstep
  std::vector<SaeSpec> specs;              // this process's coders of the group
  std::unique_ptr<SaeTrainer> trainer;
  torch::Tensor fired;  // [n_saes, d_sae] float64 fire counts over the density window
  int64_t counted = 0;  // rows in the density window

  /// The next (input, target) batch, the target undefined for SAEs; `streamed` is the stream's
  /// batch of every hook when streaming.
  std::pair<torch::Tensor, torch::Tensor> next(const std::vector<torch::Tensor>& streamed);
};

/// The memory a process of the run holds at its peak (the steady steps: the Adam moments exist
/// from the first step on; the checkpoint writes the tensors in place, and the folded copies at
/// save reuse the moments' memory), in bytes, part by part. scripts/bench-train-memory measures it
/// against the peak RSS at two widths.
struct RunMemory {
  // [batch, d_sae] float32 tensors of one step of the widest coder (the coders step one after the
  // other): pre-activations, code, reconstruction-side and gradient buffers, and the allocator's
  // slack around them (calibrated against scripts/bench-train-memory's peaks).
  static constexpr double kStepTensors = 10;
  // LibTorch, OpenMP and the allocator's own.
  static constexpr double kProcessBytes = 0.5e9;
  double weights = 0, adam = 0, gradients = 0, step = 0, buffers = 0;
  // Resuming: LibTorch reads the whole checkpoint (weights and moments) beside the freshly
  // allocated coders, and one record at a time twice (its largest, a coder's widest matrix).
  double largest_tensor = 0;
  bool resuming = false;
  int64_t coders_counted = 0;
  double steady() const { return weights + adam + gradients + step + buffers + kProcessBytes; }
  double while_resuming() const {
    return resuming ? weights + (weights + adam) + largest_tensor + kProcessBytes : 0.0;
  }
  double total() const;  // the larger of the two
  std::string summary() const;  // "GB: weights 4.83, Adam moments 9.66, …[; while the checkpoint is read …]"
};

/// This process's groups, opened (stores, lockstep batches, trainers) after refusing at once a run
/// that memory cannot hold (estimate_run_memory, printed by rank 0). `fingerprint` gets every group's identity (hooks, model, rows, widths).
std::vector<HookGroup> open_hook_groups(const RunLayout& layout, ActivationStream* stream,
                                        const std::shared_ptr<Communicator>& replicas, nlohmann::json& fingerprint);

/// The peak memory of this process's share of the run, from the groups' specs and batches
/// (before their trainers exist).
RunMemory estimate_run_memory(const RunLayout& layout, const std::vector<HookGroup>& groups, const ActivationStream* stream);

/// Every process sends its coders to rank 0, which writes the checkpoint atomically.
void save_run_checkpoint(const std::filesystem::path& path, const std::string& config, int64_t step,
                         const std::vector<HookGroup>& groups, const RunLayout& layout, Communicator& world,
                         const ActivationStream* stream);
/// Restores this process's coders (and the stream's position); returns the step. A checkpoint of
/// other options or activations is refused.
int64_t load_run_checkpoint(const std::filesystem::path& path, const std::string& config, std::vector<HookGroup>& groups,
                            ActivationStream* stream);

}  // namespace saelab
