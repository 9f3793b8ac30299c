// Training the reference language model: AdamW, linear warm-up then cosine decay, gradient
// clipping, periodic validation, atomic checkpoints and exact resume.
#pragma once
#include <torch/script.h>

#include <functional>
#include <string>
#include <vector>

#include "models/gpt.h"

namespace saelab {

struct LmTrainOptions {
  /// Optimizer steps.
  int64_t steps = 6000;
  /// Contexts per step.
  int64_t batch_size = 32;
  /// Peak learning rate.
  double lr = 2e-3;
  /// Final learning rate as a fraction of the peak (cosine decay reaches it at the last step).
  double min_lr_ratio = 0.1;
  /// Linear warm-up steps.
  int64_t warmup_steps = 200;
  /// AdamW weight decay, applied to matrices only (not to biases, LayerNorm or positions).
  double weight_decay = 0.1;
  /// Global gradient-norm clip; 0 disables.
  double grad_clip = 1.0;
  /// Validate every this many steps (and at the end).
  int64_t eval_every = 500;
  /// Validation contexts used for the periodic check (0: all); the final figure uses all.
  int64_t eval_rows = 256;
  /// Write a checkpoint every this many steps.
  int64_t checkpoint_every = 200;
  /// Seed for initialisation and batch sampling.
  int64_t seed = 1234;
  /// Stop this run after this many steps (0: run to `steps`); the schedule still spans `steps`
  /// and a later run resumes from the checkpoint. Not part of the run's identity.
  int64_t stop_after = 0;

  void validate() const;
  nlohmann::json to_json() const;
};

struct LmTrainResult {
  int64_t steps = 0;            ///< steps done in total; < options.steps when stop_after ended the run
  bool finished = false;        ///< all `steps` are done
  double final_train_loss = 0;  ///< mean loss over the last 50 steps
  double validation_loss = 0;   ///< mean cross-entropy (nats/token) over all validation contexts (when finished)
  double seconds = 0;
  double tokens_per_second = 0;
};

/// Maps tokens [B, T] to logits [B, T, vocab].
using LogitsFn = std::function<torch::Tensor(const torch::Tensor&)>;

/// Mean cross-entropy (nats per token) of the model on `contexts` [n, T + 1]: inputs [:, :T],
/// targets [:, 1:].
double evaluate_lm(const LogitsFn& logits, const torch::Tensor& contexts, int64_t batch_size = 16);

/// Trains `module` (built by build_gpt with `config`) in `run_dir`: checkpoint.pt, metrics.jsonl.
/// If run_dir/checkpoint.pt exists, training resumes from it (its config must match).
LmTrainResult train_lm(torch::jit::Module& module, const GptConfig& config, const LmTrainOptions& options,
                       const std::vector<int64_t>& train_stream, const torch::Tensor& validation_contexts,
                       int64_t bos_id, const std::string& run_dir);

}  // namespace saelab
