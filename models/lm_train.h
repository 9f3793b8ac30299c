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
  int64_t steps = 6000;
  int64_t batch_size = 32;
  double lr = 2e-3;
  double min_lr_ratio = 0.1;
  int64_t warmup_steps = 200;
  double weight_decay = 0.1;
  double grad_clip = 1.0;
  int64_t eval_every = 500;
  int64_t eval_rows = 256;
  int64_t checkpoint_every = 200;
  int64_t seed = 1234;
  int64_t stop_after = 0;

  template <class V>
  void fields(V& v) {
    v("steps", steps, "optimizer steps", at_least(1));
    v("batch_size", batch_size, "contexts per step", at_least(1));
    v("lr", lr, "peak learning rate", in_range(1e-12, 10));
    v("min_lr_ratio", min_lr_ratio, "final learning rate as a fraction of the peak (cosine decay reaches it at the last step)", in_range(0, 1));
    v("warmup_steps", warmup_steps, "linear warm-up steps", at_least(0));
    v("weight_decay", weight_decay, "AdamW weight decay, on matrices only (not biases, LayerNorm or positions)", at_least(0));
    v("grad_clip", grad_clip, "global gradient-norm clip (0: off)", at_least(0));
    v("eval_every", eval_every, "validate every this many steps (and at the end)", at_least(0));
    v("eval_rows", eval_rows, "validation contexts of the periodic check (0: all, at_least(1)); the final figure uses all");
    v("checkpoint_every", checkpoint_every, "write a checkpoint every this many steps", at_least(1));
    v("seed", seed, "seed of initialisation and batch sampling", at_least(0));
    v("stop_after", stop_after,
      "stop this run after this many steps (0: run to steps, at_least(0)); the schedule still spans steps and a later run resumes",
      kOnCommandLine);
  }
  void validate() const;
  /// The fields that shape the result, with the optimizer and schedule named.
  nlohmann::json to_json() const;
};

struct LmTrainResult {
  int64_t steps = 0;            ///< steps done in total; < options.steps when stop_after ended the run
  bool finished = false;        ///< all `steps` are done
  double final_train_loss = 0;  ///< mean loss over the last 50 steps
  double validation_loss = 0;   ///< mean cross-entropy (nats/token) over all validation contexts (when finished)
  /// The same over the first kFirstValidationContexts contexts alone: a check of the model file
  /// that costs one batch (tests recompute it instead of the whole split).
  double first_contexts_loss = 0;
  static constexpr int64_t kFirstValidationContexts = 16;
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
