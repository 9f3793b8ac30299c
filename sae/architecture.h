// One sparse-coder architecture: the tensors it adds to W_enc / W_dec / b_dec (/ W_skip), its
// inference code, and its training forward pass. Each lives in its own file, sae/arch_<name>.cpp,
// and is listed once in sae/architectures.cpp: the only place architecture names are spelled.
//
// Adding an architecture: a value of `Architecture` (sae.h), a file sae/arch_<name>.cpp with a
// class deriving from ArchitectureRules and a function returning its instance (declared below),
// its line in architectures.cpp's table, and its file in sae/CMakeLists.txt. The coder (`Sae`),
// the trainer, the run, eval, top, steering and every file format then handle it; a format that
// stores it under another name maps the enum in its own file.
//
// Internal to sae/: the rest of saelab sees `Sae` (sae.h).
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "sae/sae.h"
#include "sae/topk_kernels.h"

namespace saelab {

using TensorShapes = std::map<std::string, std::vector<int64_t>>;

/// One training forward's inputs, as Sae::forward checked them.
struct CoderBatch {
  const torch::Tensor& x;       ///< [batch, d_in]
  const torch::Tensor& y;       ///< [batch, d_out] the target (x itself for an SAE)
  double l1;                    ///< λ of the sparsity penalty
  const torch::Tensor& dead;    ///< [d_sae] bool, or undefined
  torch::Tensor base;           ///< b_dec, or b_dec + x W_skipᵀ [batch, d_out]: what every prediction adds
  bool any_dead() const { return dead.defined() && dead.any().item<bool>(); }
};

class ArchitectureRules {
 public:
  virtual ~ArchitectureRules() = default;
  virtual Architecture id() const = 0;
  /// The name cfg.json holds and the command line takes.
  virtual const char* name() const = 0;
  /// A k (active latents per row, or on average per row).
  virtual bool uses_k() const { return false; }
  /// A batch-level top-k in training and a threshold at inference.
  virtual bool uses_batch_topk() const { return false; }
  /// Saves a per-latent "threshold" tensor (SAELens' name).
  virtual bool has_threshold() const { return false; }
  /// Decoder rows held at unit norm in training (parallel gradient removed, rows renormalised).
  /// standard: no, its penalty weighs each code by ‖W_dec,i‖ (Anthropic's April 2024 update).
  virtual bool unit_norm_decoder() const { return true; }
  /// Adam's β1 (0 where a threshold learns through a straight-through estimator: gated, jumprelu).
  virtual double adam_beta1() const { return 0.9; }
  /// Saved weights with unit-norm decoder rows, the norms moved into the encoder (standard: SAELens'
  /// fold_W_dec_norm; the same prediction). Default: unchanged (already unit norm).
  virtual void fold_decoder_norms(std::map<std::string, torch::Tensor>& state) const { (void)state; }
  /// A transcoder's encoder biases at the start: the pre-activations of an input `centre` [d_in]
  /// (its geometric median) at zero, as an SAE's are through b_dec. Default: b_enc = −centre W_enc.
  virtual void centre_encoder_biases(Sae& s, const torch::Tensor& centre) const;
  /// Checks of the fields only this architecture reads.
  virtual void validate(const SaeConfig& c) const { (void)c; }
  /// The tensors beyond W_enc, W_dec, b_dec and W_skip, by SAELens name ("threshold" included
  /// where has_threshold()). Default: b_enc.
  virtual void add_shapes(const SaeConfig& c, TensorShapes& shapes) const;
  /// A fresh coder's tensors beyond W_enc, W_dec, b_dec and W_skip (not yet requiring grad).
  /// Default: b_enc zero.
  virtual void init(Sae& s) const;
  /// Takes a loaded "threshold" tensor (shape and values checked finite).
  virtual void load_threshold(Sae& s, const torch::Tensor& threshold, const std::string& where) const;
  /// The per-latent threshold [d_sae].
  virtual torch::Tensor threshold(const Sae& s) const;
  /// The inference code [..., d_sae] of x [..., d_in].
  virtual torch::Tensor encode(const Sae& s, const torch::Tensor& x) const = 0;
  /// The training forward: sets o.x_hat, the code (o.features, or o.code_values / o.code_indices)
  /// and the terms it owns (sparsity, aux, nested); Sae::forward adds mse, loss, l0, fire counts.
  virtual void forward(Sae& s, const CoderBatch& b, SaeOutput& o) const = 0;

 protected:
  // What an architecture's code sees of a coder (Sae befriends this class, not its subclasses).
  static std::map<std::string, torch::Tensor>& params(Sae& s) { return s.p_; }
  static const torch::Tensor& p(const Sae& s, const std::string& name) { return s.p_.at(name); }
  static torch::Tensor& running_threshold(Sae& s) { return s.batchtopk_threshold_; }
  static const torch::Tensor& running_threshold(const Sae& s) { return s.batchtopk_threshold_; }
  /// (x − b_dec) W + b (x − b_dec only when apply_b_dec_to_input), as one GEMM on the raw x.
  static torch::Tensor affine(const Sae& s, const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b) {
    return s.affine(x, W, b);
  }
  static torch::Tensor centred(const Sae& s, const torch::Tensor& x) { return s.centred(x); }
  /// b_dec where the input is centred on it (the kernels' `centre`), else undefined.
  static torch::Tensor centre(const Sae& s) {
    return s.config_.apply_b_dec_to_input ? s.p_.at("b_dec") : torch::Tensor();
  }
  /// Where W_enc's and W_dec's gradients go as factored terms (nullptr: dense .grad).
  static SparseGrad* enc_grad(const Sae& s) { return s.sinks_ ? &s.sinks_->W_enc : nullptr; }
  static SparseGrad* dec_grad(const Sae& s) { return s.sinks_ ? &s.sinks_->W_dec : nullptr; }
  static const std::function<void(torch::Tensor&)>& replica_sum(const Sae& s) { return s.replica_sum_; }
  static const std::function<torch::Tensor(const torch::Tensor&)>& replica_gather(const Sae& s) {
    return s.replica_gather_;
  }
  /// The most candidate latents per row a sparse training code may have (0: always dense).
  static int64_t sparse_code_cap(const Sae& s);
  /// The sparse training code's candidates of standard, gated and jumprelu: per row, the latents
  /// whose pre-activation x W + b (centred) exceeds `floor` [d_sae]. Up to 1/16 of the rows may
  /// have more than the cap: the code then lists them in `overflow`, and the caller hands it to
  /// split_rows (sae/row_split.cpp); with more, it is undefined (the dense path then runs). A
  /// 64-row probe settles most dense batches early. With `band_floor`, the code also carries the
  /// band mask (topk_kernels.h: threshold_select).
  static ThresholdCode sparse_candidates(const Sae& s, const torch::Tensor& x, const torch::Tensor& bias,
                                         const torch::Tensor& floor, const torch::Tensor& band_floor = {});
  /// Where `sel` lists rows past the cap: runs this forward on the other rows with their code
  /// (sparse) and on those rows densely, and joins the two into `o`, every term a row mean as if
  /// one pass had run. Returns false (nothing done) when no row is past the cap.
  bool split_rows(Sae& s, const CoderBatch& b, const ThresholdCode& sel, SaeOutput& o) const;
  /// AuxK (Gao et al. 2024), shared by the TopK family (sae/arch_topk.cpp): models the detached
  /// residual e = y − ŷ with the top-k_aux pre-activations of the dead latents; ‖e − ê‖² /
  /// ‖e − mean e‖² times the coefficient. Call only when b.any_dead().
  static torch::Tensor aux_k_loss(const Sae& s, const CoderBatch& b, const torch::Tensor& x_hat);
  /// per_latent [d_sae] at each entry of latents [batch, k'].
  static torch::Tensor at_latents(const torch::Tensor& per_latent, const torch::Tensor& latents) {
    return per_latent.index_select(0, latents.reshape(-1)).view_as(latents);
  }
  /// mean_b ‖y − ŷ‖².
  static torch::Tensor squared_error(const torch::Tensor& y, const torch::Tensor& y_hat) {
    return (y - y_hat).pow(2).sum(-1).mean();
  }
};

/// batchtopk (Bussmann et al. 2024), which matryoshka_batchtopk extends (sae/arch_batchtopk.cpp).
class BatchTopKRules : public ArchitectureRules {
 public:
  Architecture id() const override { return Architecture::kBatchTopK; }
  const char* name() const override { return "batchtopk"; }
  bool uses_k() const override { return true; }
  bool uses_batch_topk() const override { return true; }
  bool has_threshold() const override { return true; }
  void add_shapes(const SaeConfig& c, TensorShapes& shapes) const override;
  void init(Sae& s) const override;
  void load_threshold(Sae& s, const torch::Tensor& threshold, const std::string& where) const override;
  torch::Tensor threshold(const Sae& s) const override;
  torch::Tensor encode(const Sae& s, const torch::Tensor& x) const override;
  void forward(Sae& s, const CoderBatch& b, SaeOutput& o) const override;

 protected:
  /// The batch's code (the k × global-batch largest activations, across data-parallel replicas
  /// when they are set), o.x_hat and the code set, the running threshold updated.
  TopKCode batch_code(Sae& s, const CoderBatch& b, SaeOutput& o) const;
};

/// Every architecture, in the order their names are listed in messages.
const std::vector<const ArchitectureRules*>& all_architectures();
/// The rules of one architecture.
const ArchitectureRules& architecture_rules(Architecture a);

// The instances, one per sae/arch_<name>.cpp.
const ArchitectureRules& standard_architecture();
const ArchitectureRules& gated_architecture();
const ArchitectureRules& topk_architecture();
const ArchitectureRules& batchtopk_architecture();
const ArchitectureRules& matryoshka_architecture();
const ArchitectureRules& jumprelu_architecture();

}  // namespace saelab
