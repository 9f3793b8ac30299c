// Training SAEs: many SAEs (architectures, sparsity settings) on one input stream per step, each
// batch read once for all of them.
//
// Per SAE and step: Adam (β1 = 0 for gated and jumprelu, as Gemma Scope and dictionary_learning
// train them; β = (0.9, 0.999) otherwise); learning rate warm-up, constant, then linear decay to
// zero over the last `lr_decay_fraction` of the steps; sparsity-coefficient warm-up; gradient-norm
// clipping; for every architecture but standard unit-norm decoder rows, with the gradient
// component parallel to each row removed before the step. Inputs are scaled so that E‖x‖ = sqrt(d_in)
// (the factor is estimated once from a sample and folded into the weights by `folded()`), and b_dec
// starts at the geometric median of that sample (Weiszfeld). Latents that have not fired for
// `dead_window` tokens count as dead (AuxK uses them).
//
// Transcoders train the same way on aligned (input, target) batches: the target has its own scale
// (E‖y‖ = sqrt(d_out)), b_dec starts at the target's geometric median, and the loss, FVU, AuxK and
// the dead-latent counts are all against the target.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/distributed.h"
#include "core/options.h"
#include "sae/sae.h"

namespace saelab {

struct SaeSpec {
  std::string name;             ///< folder name of this SAE in the run
  SaeConfig config;
  double l1_coefficient = 0.0;  ///< λ for standard / gated (L1) and jumprelu (L0); unused by topk / batchtopk
  int64_t seed_index = -1;      ///< initialisation seed offset (seed + 7919 × this); -1: the SAE's position
};

struct SaeTrainOptions {
  int64_t steps = 250;  // x batch_size 4,096: one pass over capture's default 1,024,000 rows
  int64_t batch_size = 4096;
  double lr = 4e-4;
  int64_t lr_warmup_steps = 100;
  double lr_decay_fraction = 0.2;
  int64_t l1_warmup_steps = 200;
  double grad_clip = 1.0;
  int64_t dead_window = 200000;
  bool normalize_activations = true;

  template <class V>
  void fields(V& v) {
    v("steps", steps, "optimizer steps", at_least(1));
    v("batch_size", batch_size, "rows per step", at_least(1));
    v("lr", lr, "Adam learning rate", in_range(1e-12, 10));
    v("lr_warmup_steps", lr_warmup_steps, "linear learning-rate warm-up steps", at_least(0));
    v("lr_decay_fraction", lr_decay_fraction, "fraction of the steps, at the end, over which the learning rate decays linearly to 0", in_range(0, 1));
    v("l1_warmup_steps", l1_warmup_steps, "steps over which the sparsity coefficient ramps up from 0", at_least(0));
    v("grad_clip", grad_clip, "global gradient-norm clip per SAE (0: off)", at_least(0));
    v("dead_window", dead_window, "a latent that has not fired for this many tokens is dead", at_least(1));
    v("normalize_activations", normalize_activations, "scale inputs so that E|x| = sqrt(d_in)");
  }
  void validate() const;
};

struct SaeStepStats {
  double loss = 0, mse = 0, l0 = 0, dead_fraction = 0;
  double fvu = 0;  ///< this batch's Σ‖y − ŷ‖² / Σ‖y − mean y‖² (y the target: x for an SAE), normalised
  torch::Tensor fire_counts;  ///< [d_sae] rows of the batch in which each latent fired
};

/// One SAE being trained, with its optimizer and bookkeeping.
struct TrainedSae {
  SaeSpec spec;
  std::unique_ptr<Sae> sae;
  std::unique_ptr<torch::optim::Adam> optimizer;
  torch::Tensor steps_since_fired;  // [d_sae] tokens since each latent last fired
};

class SaeTrainer {
 public:
  SaeTrainer(std::vector<SaeSpec> specs, const SaeTrainOptions& options, uint64_t seed);

  /// Estimates the input scaling factor and sets every b_dec to the geometric median of `sample`
  /// [n, d_in] (raw activations). Transcoders: `target_sample` [n, d_out] holds the targets of the
  /// same rows (its own scale, and b_dec at its median); undefined for SAEs. Call once before the
  /// first step.
  void initialize(const torch::Tensor& sample, const torch::Tensor& target_sample = {});

  /// One optimizer step of every SAE on `batch` [batch, d_in] of raw activations (and, for
  /// transcoders, `target` [batch, d_out], the same rows' targets).
  /// Throws, naming the step and the SAE, when the batch or a loss is NaN or Inf.
  std::vector<SaeStepStats> step(const torch::Tensor& batch, const torch::Tensor& target = {});

  /// Data parallelism: every member of `replicas` holds the same SAEs and steps them on its own
  /// rows of each global batch. Losses are weighted by each replica's share of the rows, and the
  /// gradients (densely, one all-reduce per SAE and step), fire counts, the batch statistics and
  /// AuxK's normaliser are summed over the replicas, so every replica makes the update one process
  /// would make on the whole batch (up to float summation order). BatchTopK and Matryoshka select
  /// over the whole batch and are refused.
  void set_replicas(std::shared_ptr<Communicator> replicas);

  int64_t steps_done() const { return step_; }
  double scaling_factor() const { return scale_; }
  /// The target's scaling factor (the input's for SAEs).
  double target_scaling_factor() const { return target_scale_; }
  /// Whether the coders predict a target other than their input.
  bool transcodes() const { return transcoder_; }
  const std::vector<TrainedSae>& saes() const { return saes_; }

  /// Everything a resumed run needs (weights, Adam state, dead-latent counters, BatchTopK threshold
  /// estimates, scale, step) into `archive`; `load_state` restores it into a trainer built with the
  /// same specs and options. Training uses no random numbers beyond the data order, which the
  /// caller restores (the batch count is steps_done()).
  void save_state(torch::serialize::OutputArchive& archive) const;
  void load_state(torch::serialize::InputArchive& archive, const std::string& where);
  /// The same for SAE i alone (with the scale and step): a run's checkpoint keeps each SAE apart,
  /// so that it resumes on any number of processes.
  void save_sae_state(size_t i, torch::serialize::OutputArchive& archive) const;
  void load_sae_state(size_t i, torch::serialize::InputArchive& archive, const std::string& where);

  /// Drops every SAE's optimizer and its state after the last step (and checkpoint): no step or
  /// save_state is possible afterwards.
  void release_optimizers();

  /// Sets the inference threshold of every batchtopk / matryoshka_batchtopk SAE from `sample`
  /// [n, d_in] raw activations (Sae::calibrate_batchtopk_threshold on the scaled rows). Call after
  /// the last step.
  void calibrate_thresholds(const torch::Tensor& sample);

  /// SAE i with the input and target scalings folded into its weights, so it works on raw
  /// activations (W_enc · s_in, W_dec / s_out, b_dec / s_out, W_skip · s_in / s_out). A
  /// standard SAE also has its decoder norms folded into the encoder (SAELens fold_W_dec_norm):
  /// unit-norm decoder rows in the normalised space, codes multiplied by ‖W_dec,i‖, the same
  /// reconstruction.
  Sae folded(size_t i) const;

  /// The learning rate and sparsity-coefficient multipliers at a step (exposed for tests).
  double lr_at(int64_t step) const;
  double l1_scale_at(int64_t step) const;

 private:
  SaeTrainOptions options_;
  std::vector<TrainedSae> saes_;
  double scale_ = 1.0;
  double target_scale_ = 1.0;
  bool transcoder_ = false;
  int64_t step_ = 0;
  bool initialized_ = false;
  std::shared_ptr<Communicator> replicas_;  // data-parallel replicas (null or size 1: none)
};

/// The update after a forward pass: backward, parallel-gradient removal (unit-norm architectures),
/// gradient clipping, Adam at `lr`, decoder rows renormalised. With `replicas`, the gradients
/// are made dense and summed over them (`what` names the step in errors) before the rest.
void sae_optimizer_step(Sae& sae, torch::optim::Adam& optimizer, const torch::Tensor& loss, double lr,
                        double grad_clip, Communicator* replicas = nullptr, const std::string& what = "");

/// The geometric median of the rows of `x` [n, d] by Weiszfeld's iteration.
torch::Tensor geometric_median(const torch::Tensor& x, int64_t iterations = 100);

}  // namespace saelab
