// Sparse coders: x [batch, d_in] → code f [batch, d_sae] → ŷ = f W_dec + b_dec (+ x W_skipᵀ).
// An SAE reconstructs its input (ŷ ≈ x, d_out = d_in); a transcoder predicts another activation y
// [batch, d_out] from x (e.g. an MLP's output from its input), optionally with a linear skip path.
// Six architectures (standard, gated, topk, batchtopk, matryoshka_batchtopk, jumprelu), each with
// encode, decode and a training forward that returns its loss terms. sae/ knows nothing about
// language models.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "sae/sparse_grad.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace saelab {

/// The sparse-coder architectures. Each is one file, sae/arch_<name>.cpp, and one line of the table
/// in sae/architectures.cpp, the only place their names are spelled (sae/architecture.h says how to
/// add one); the file formats map the enum to their own names.
enum class Architecture { kStandard, kGated, kTopK, kBatchTopK, kMatryoshkaBatchTopK, kJumpReLU };

/// "standard", "gated", "topk", "batchtopk", "matryoshka_batchtopk" or "jumprelu"; throws naming
/// the valid names.
Architecture parse_architecture(const std::string& name);
/// The name parse_architecture reads (and cfg.json holds).
const char* architecture_name(Architecture architecture);
/// topk, batchtopk and matryoshka_batchtopk: a k and a sparse code.
bool uses_k(Architecture architecture);
/// batchtopk and matryoshka_batchtopk: a batch-level top-k in training, a threshold at inference.
bool uses_batch_topk(Architecture architecture);

/// JumpReLU's sparsity penalty: Gemma Scope's λ·L0 through the step function's pseudo-gradient
/// (Rajamanoharan et al. 2024b), or Anthropic's January 2025 λ·Σ tanh(c · f_i ‖W_dec,i‖), whose
/// gradient also reaches the pre-activations of active latents.
enum class JumpReluSparsity { kStep, kTanh };
JumpReluSparsity parse_jumprelu_sparsity(const std::string& name);
const char* jumprelu_sparsity_name(JumpReluSparsity sparsity);
/// The bandwidth ε that goes with a penalty in saelab's units (E‖x‖ = √d_in): Anthropic's 2 for
/// tanh; for step, Gemma Scope's 0.001 at E‖x‖² = 1, i.e. about 0.05 here (d_in ≈ 2300).
double default_jumprelu_bandwidth(JumpReluSparsity sparsity);

struct SaeConfig {
  Architecture architecture = Architecture::kTopK;
  /// Input width (the hook point's d).
  int64_t d_in = 0;
  /// Output width (the target's d); 0: d_in. A transcoder (a target other than the input) does not
  /// subtract b_dec from its input (apply_b_dec_to_input false), as SAELens and sparsify.
  int64_t d_out = 0;
  /// A linear skip path: ŷ += x W_skipᵀ, W_skip [d_out, d_in] (SAELens' orientation), initialised
  /// to zero (sparsify, Paulo et al. 2025 "Transcoders beat sparse autoencoders").
  bool skip = false;
  /// Dictionary size.
  int64_t d_sae = 0;
  /// Active latents per row (topk), or on average per row (batchtopk, matryoshka_batchtopk).
  int64_t k = 32;
  /// Subtract b_dec from the input before encoding.
  bool apply_b_dec_to_input = true;
  /// JumpReLU straight-through bandwidth ε, in the units of the normalised input
  /// (the trainer scales inputs so that E‖x‖ = sqrt(d_in), i.e. about 1 per coordinate).
  /// Anthropic's ε = 2 is stated in these units (they scale to E‖x‖² = d_in); the step penalty's
  /// Gemma Scope ε = 0.001 is in units of E‖x‖² = 1, i.e. about 0.05 here for d_in ≈ 2300.
  double jumprelu_bandwidth = 2.0;
  /// Initial JumpReLU threshold, same units (Anthropic's 0.1).
  double jumprelu_init_threshold = 0.1;
  JumpReluSparsity jumprelu_sparsity = JumpReluSparsity::kTanh;
  /// c of the tanh penalty (Anthropic: 4).
  double jumprelu_tanh_scale = 4.0;
  /// Anthropic's pre-activation loss λ_P Σ_i ReLU(θ_i − π_i) ‖W_dec,i‖ on dead latents (0: off;
  /// Anthropic: 3e-6), which pulls latents that never fire back towards their threshold.
  double pre_act_loss_coefficient = 3e-6;
  /// matryoshka_batchtopk: the nested dictionary widths, strictly increasing, the last one d_sae.
  /// Level w reconstructs x from the code's latents 0 … w − 1 alone (Bussmann et al. 2025).
  std::vector<int64_t> matryoshka_widths;
  /// AuxK: latents used to model the residual (0: d_in / 2) and the loss coefficient.
  int64_t aux_k = 0;
  double aux_k_coefficient = 1.0 / 32.0;
  /// BatchTopK threshold estimate: θ ← (1 − rate) θ + rate · (smallest kept activation).
  double batchtopk_threshold_rate = 0.01;

  bool is_topk() const { return architecture == Architecture::kTopK; }
  /// d_out, or d_in when it is 0.
  int64_t out_width() const { return d_out > 0 ? d_out : d_in; }
  void validate() const;
};

/// Loss terms of one training forward pass; every term is a scalar averaged over the batch.
struct SaeOutput {
  torch::Tensor x_hat;     // [batch, d_out] the prediction ŷ of the target (the input for an SAE)
  torch::Tensor features;  // [batch, d_sae] dense code; undefined where the code stays sparse (code_values)
  torch::Tensor code_values, code_indices;  // [batch, k'] the sparse code (topk, batchtopk; the others' sparse path), padding has value 0
  torch::Tensor fire_counts;  // [d_sae] rows of the batch in which each latent is active (int64)
  torch::Tensor mse;       // mean_b ‖y − ŷ‖² (y the target)
  torch::Tensor sparsity;  // the sparsity penalty (already multiplied by its coefficient); 0 for topk / batchtopk
  torch::Tensor aux;       // auxiliary loss (gated's reconstruction through ReLU(π_gate), AuxK, JumpReLU's pre-activation loss); 0 otherwise
  torch::Tensor nested;    // matryoshka_batchtopk: Σ over the inner levels of mean_b ‖y − ŷ_level‖²; 0 otherwise
  torch::Tensor loss;      // mse + sparsity + aux + nested
  torch::Tensor l0;        // mean active latents per row

  /// The code as [batch, d_sae], dense or expanded from the sparse code (for tests and analysis).
  torch::Tensor dense_features(int64_t d_sae) const;
};

/// Σ‖x − x̄‖² over the rows of x [rows, d] (float64), and the row count. With `sum`, the sums it
/// is made of (Σx, Σ‖x‖², rows) are first added over the data-parallel replicas, so the result is
/// the whole global batch's.
struct CentredSquares {
  double sum = 0;
  double rows = 0;
};
CentredSquares centred_squares(const torch::Tensor& x, const std::function<void(torch::Tensor&)>& sum = nullptr);

class Sae {
 public:
  /// A freshly initialised SAE: W_dec rows of unit norm in random directions, W_enc = W_decᵀ,
  /// biases zero (gated: r_mag zero; jumprelu: threshold at its initial value). A transcoder
  /// (apply_b_dec_to_input false): W_enc columns in random directions of norm 0.1, W_skip zero.
  Sae(const SaeConfig& config, uint64_t seed);
  /// An SAE from given tensors (e.g. loaded from disk); shapes are checked against the config.
  Sae(const SaeConfig& config, std::map<std::string, torch::Tensor> params, const std::string& where);

  const SaeConfig& config() const { return config_; }

  /// Inference code f [batch, d_sae] (batchtopk uses its learned threshold, as JumpReLU).
  torch::Tensor encode(const torch::Tensor& x) const;
  /// f W_dec + b_dec (without the skip path, which needs the input: see predict).
  torch::Tensor decode(const torch::Tensor& f) const;
  /// The skip path x W_skipᵀ [..., d_out]; undefined without one.
  torch::Tensor skip_term(const torch::Tensor& x) const;
  /// ŷ = decode(f) + x W_skipᵀ: what the coder writes for input x given its code f.
  torch::Tensor predict(const torch::Tensor& x, const torch::Tensor& f) const;

  /// Pre-activations (x − b_dec) W_enc + b_enc [..., d_sae] (every architecture but gated).
  torch::Tensor pre_activations(const torch::Tensor& x) const;

  /// The training forward pass. `l1_coefficient` is λ (standard, gated, jumprelu's penalty);
  /// `dead` [d_sae] bool marks dead latents: AuxK uses them (topk, batchtopk, matryoshka), and so
  /// does JumpReLU's pre-activation loss (ignored when undefined or none dead). `target` [batch,
  /// d_out] is what the coder predicts (undefined: x itself, an SAE); every loss term that compares
  /// a prediction (mse, AuxK's residual, Matryoshka's levels, gated's auxiliary) compares it to the target.
  SaeOutput forward(const torch::Tensor& x, double l1_coefficient, const torch::Tensor& dead = {},
                    const torch::Tensor& target = {});

  /// Trainable tensors by name (SAELens names; jumprelu trains log_threshold).
  std::vector<std::pair<std::string, torch::Tensor>> parameters() const;
  /// Everything saved to disk by SAELens name (jumprelu and batchtopk: "threshold").
  std::map<std::string, torch::Tensor> state() const;

  torch::Tensor& W_enc() { return p_.at("W_enc"); }
  torch::Tensor& W_dec() { return p_.at("W_dec"); }
  torch::Tensor& b_dec() { return p_.at("b_dec"); }
  const torch::Tensor& param(const std::string& name) const;
  /// JumpReLU / BatchTopK threshold per latent [d_sae] (float32).
  torch::Tensor threshold() const;
  /// Sets the batchtopk threshold so that exactly round(k · rows) activations of `x` [rows, d_in]
  /// exceed it (ties aside): on held-out rows from the same distribution the mean L0 is then k,
  /// which a running average over training is not in short runs. Returns the threshold.
  double calibrate_batchtopk_threshold(const torch::Tensor& x);
  /// With `on`, the sparse-code paths (topk, batchtopk, matryoshka_batchtopk; standard, gated and
  /// jumprelu once their codes are sparse, see set_sparse_code_cap) record W_enc's and W_dec's
  /// gradients as factored terms in sparse_gradients() instead of dense .grad, for the trainer's
  /// fused update (sae/sparse_grad.h). Dense paths still fill .grad.
  void set_sparse_gradients(bool on);
  /// The recorded gradients, or nullptr when they go to .grad.
  SparseGradSinks* sparse_gradients() const { return sinks_.get(); }
  /// standard, gated and jumprelu: the training forward keeps the code sparse (the latents above
  /// their threshold — jumprelu: above θ − ε/2, where the threshold's pseudo-gradient reaches —
  /// through the same sparse kernels as TopK) while no row of the batch has more than `cap` such
  /// latents, and is dense otherwise (early in training). −1 (the default): max(64, d_sae / 8);
  /// 0: always dense. Both give the same loss and gradients up to float summation order.
  void set_sparse_code_cap(int64_t cap) { sparse_code_cap_ = cap; }
  /// Data-parallel training: `sum` adds a float64 tensor over the replicas in place. AuxK's
  /// normaliser ‖e − mean e‖² is then the whole global batch's, as in one process; every other
  /// loss term is a mean over rows, which the trainer weights by the replica's share of the rows.
  void set_replica_sum(std::function<void(torch::Tensor&)> sum) { replica_sum_ = std::move(sum); }
  /// Data-parallel BatchTopK / Matryoshka: `gather` returns every replica's 1-D float32 tensor (the
  /// same length everywhere), concatenated in replica order. With it (and set_replica_sum) the
  /// code keeps the k × global-batch largest activations of the whole global batch, as one process
  /// would: each replica keeps its own entries at or above the global threshold found from the
  /// replicas' candidates, and the running threshold is the global smallest kept activation.
  void set_replica_gather(std::function<torch::Tensor(const torch::Tensor&)> gather) { replica_gather_ = std::move(gather); }
  /// BatchTopK's running threshold estimate [] (−1 before the first batch); for checkpoints.
  torch::Tensor& batchtopk_running_threshold() { return batchtopk_threshold_; }
  const torch::Tensor& batchtopk_running_threshold() const { return batchtopk_threshold_; }

 private:
  friend class ArchitectureRules;  // what each architecture's file sees (sae/architecture.h)
  torch::Tensor centred(const torch::Tensor& x) const;
  /// b_dec + x W_skipᵀ [batch, d_out] with a skip path, else b_dec [d_out]: what every prediction adds.
  torch::Tensor output_base(const torch::Tensor& x) const;
  /// (x − b_dec) W + b (x − b_dec only when apply_b_dec_to_input), as one GEMM on the raw x.
  torch::Tensor affine(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b) const;

  SaeConfig config_;
  std::map<std::string, torch::Tensor> p_;
  torch::Tensor batchtopk_threshold_;  // [] running estimate (batchtopk)
  std::shared_ptr<SparseGradSinks> sinks_;
  int64_t sparse_code_cap_ = -1;
  std::function<void(torch::Tensor&)> replica_sum_;
  std::function<torch::Tensor(const torch::Tensor&)> replica_gather_;
};

/// Expected tensor shapes of an architecture, by SAELens name.
std::map<std::string, std::vector<int64_t>> sae_shapes(const SaeConfig& config);

}  // namespace saelab
