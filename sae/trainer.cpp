#include "sae/trainer.h"

#include "core/torch_version.h"
#include "sae/architecture.h"

#include <ATen/Parallel.h>

#include <cmath>

namespace saelab {

void SaeTrainOptions::validate() const {
  TORCH_CHECK(steps > 0, "steps must be positive (got ", steps, ")");
  TORCH_CHECK(batch_size > 0, "batch_size must be positive (got ", batch_size, ")");
  TORCH_CHECK(lr > 0 && std::isfinite(lr), "lr must be a positive number (got ", lr, ")");
  TORCH_CHECK(lr_warmup_steps >= 0, "lr_warmup_steps must be >= 0 (got ", lr_warmup_steps, ")");
  TORCH_CHECK(lr_decay_fraction >= 0 && lr_decay_fraction <= 1, "lr_decay_fraction must be in [0, 1] (got ",
              lr_decay_fraction, ")");
  TORCH_CHECK(l1_warmup_steps >= 0, "l1_warmup_steps must be >= 0 (got ", l1_warmup_steps, ")");
  TORCH_CHECK(grad_clip >= 0, "grad_clip must be >= 0 (got ", grad_clip, ")");
  TORCH_CHECK(dead_window > 0, "dead_window must be positive (got ", dead_window, ")");
}

torch::Tensor geometric_median(const torch::Tensor& x, int64_t iterations) {
  torch::NoGradGuard g;
  const torch::Tensor xd = x.to(torch::kFloat64);
  torch::Tensor y = xd.mean(0);
  for (int64_t i = 0; i < iterations; ++i) {
    const torch::Tensor w = 1.0 / (xd - y).norm(2, {1}).clamp_min(1e-8);
    const torch::Tensor next = (w.unsqueeze(1) * xd).sum(0) / w.sum();
    const bool done = (next - y).norm().item<double>() < 1e-7 * (1.0 + y.norm().item<double>());
    y = next;
    if (done) break;
  }
  return y.to(x.dtype());
}

namespace {

torch::optim::AdamParamState& adam_state(torch::optim::Adam& optimizer, const torch::Tensor& p) {
  const auto key = torch_version::optimizer_state_key(p);
  auto& states = optimizer.state();
  if (states.count(key) == 0) {
    auto st = std::make_unique<torch::optim::AdamParamState>();
    st->step(0);
    st->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
    st->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
    states[key] = std::move(st);
  }
  return static_cast<torch::optim::AdamParamState&>(*states[key]);
}

// Counts a step in p's state and returns its Adam constants (torch::optim::Adam's formula without
// weight decay or AMSGrad).
AdamStep next_adam_step(torch::optim::Adam& optimizer, torch::optim::AdamParamState& st, double lr) {
  TORCH_CHECK(optimizer.param_groups().size() == 1, "the SAE optimizer has one parameter group");
  const auto& o = static_cast<const torch::optim::AdamOptions&>(optimizer.param_groups()[0].options());
  TORCH_CHECK(o.weight_decay() == 0 && !o.amsgrad(), "fused Adam supports neither weight decay nor AMSGrad");
  const auto [beta1, beta2] = o.betas();
  st.step(st.step() + 1);
  const double bc1 = 1 - std::pow(beta1, static_cast<double>(st.step()));
  const double bc2 = 1 - std::pow(beta2, static_cast<double>(st.step()));
  AdamStep a;
  a.beta1 = static_cast<float>(beta1);
  a.beta2 = static_cast<float>(beta2);
  a.eps = static_cast<float>(o.eps());
  a.step_size = static_cast<float>(lr / bc1);
  a.inv_sqrt_bc2 = static_cast<float>(1 / std::sqrt(bc2));
  return a;
}

// Adam's update for one float32 parameter with a dense gradient, in a single pass over p, g, m, v
// (adam_span; the library's Adam makes about eight passes). The state lives in the optimizer, so it
// is saved and loaded with it.
void fused_adam_step(torch::optim::Adam& optimizer, torch::Tensor& p, double lr) {
  TORCH_CHECK(p.scalar_type() == torch::kFloat32 && p.is_contiguous(), "fused Adam needs contiguous float32 parameters");
  auto& st = adam_state(optimizer, p);
  const AdamStep a = next_adam_step(optimizer, st, lr);
  const torch::Tensor g = p.grad().contiguous();
  float* pp = p.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* mp = st.exp_avg().data_ptr<float>();
  float* vp = st.exp_avg_sq().data_ptr<float>();
  at::parallel_for(0, p.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
    adam_span(pp + begin, mp + begin, vp + begin, gp + begin, 1.0f, end - begin, a);
  });
}

}  // namespace

void sae_optimizer_step(Sae& sae, torch::optim::Adam& optimizer, const torch::Tensor& loss, double lr,
                        double grad_clip, Communicator* replicas, const std::string& what) {
  // Dropping the old gradients (instead of zeroing them) lets backward hand over its result
  // without a zero fill and an addition over every parameter.
  for (const auto& [name, p] : sae.parameters()) const_cast<torch::Tensor&>(p).mutable_grad() = torch::Tensor();
  SparseGradSinks* sinks = sae.sparse_gradients();
  if (sinks != nullptr) {
    sinks->W_enc.clear();
    sinks->W_dec.clear();
  }
  loss.backward();
  const bool unit_norm = architecture_rules(sae.config().architecture).unit_norm_decoder();
  torch::Tensor& W_enc = sae.W_enc();
  torch::Tensor& W_dec = sae.W_dec();
  torch::NoGradGuard g;
  // A factored gradient stays factored only where it is the parameter's whole gradient; where some
  // term also left a dense one (Matryoshka's dense levels) the two are added densely.
  auto merge = [](torch::Tensor& p, SparseGrad& grad, bool transposed) {
    if (grad.empty() || !p.grad().defined()) return;
    const torch::Tensor d = transposed ? grad.dense(p.size(1)) : grad.dense(p.size(0), p);
    p.mutable_grad() = p.grad() + (transposed ? d.t() : d);
    grad.clear();
  };
  if (sinks != nullptr) {
    merge(W_enc, sinks->W_enc, true);
    merge(W_dec, sinks->W_dec, false);
  }
  if (replicas != nullptr && replicas->size() > 1) {
    // Dense gradients summed over the replicas in one buffer: a flag per parameter (whether it has
    // a gradient on any replica), then every gradient.
    auto densify = [](torch::Tensor& p, SparseGrad& grad, bool transposed) {
      if (grad.empty()) return;
      const torch::Tensor d = transposed ? grad.dense(p.size(1)).t() : grad.dense(p.size(0), p);
      p.mutable_grad() = p.grad().defined() ? p.grad() + d : d.contiguous();
      grad.clear();
    };
    if (sinks != nullptr) {
      densify(W_enc, sinks->W_enc, true);
      densify(W_dec, sinks->W_dec, false);
    }
    std::vector<torch::Tensor> params;
    int64_t total = 0;
    for (const auto& [name, p] : sae.parameters()) {
      params.push_back(p);
      total += p.numel();
    }
    const int64_t n = static_cast<int64_t>(params.size());
    torch::Tensor flat = torch::zeros({n + total}, torch::kFloat32);
    int64_t at = n;
    for (int64_t i = 0; i < n; ++i) {
      const torch::Tensor& p = params[static_cast<size_t>(i)];
      if (p.grad().defined()) {
        flat[i] = 1;
        flat.narrow(0, at, p.numel()).copy_(p.grad().reshape(-1));
      }
      at += p.numel();
    }
    replicas->all_reduce_sum(flat, "the gradient all-reduce of " + what);
    at = n;
    for (int64_t i = 0; i < n; ++i) {
      torch::Tensor& p = params[static_cast<size_t>(i)];
      p.mutable_grad() = flat[i].item<float>() > 0 ? flat.narrow(0, at, p.numel()).view(p.sizes()) : torch::Tensor();
      at += p.numel();
    }
  }
  const bool enc_factored = sinks != nullptr && !sinks->W_enc.empty();
  const bool dec_factored = sinks != nullptr && !sinks->W_dec.empty();
  if (unit_norm && W_dec.grad().defined()) {
    // Remove the gradient component parallel to each (unit-norm) decoder row.
    torch::Tensor grad = W_dec.grad();
    grad.sub_((grad * W_dec).sum(1, true) * W_dec);
  }
  // Clipping as torch::nn::utils::clip_grad_norm_: every gradient times min(1, clip / (‖g‖ + 1e-6)),
  // ‖g‖ the norm of all of the SAE's gradients together.
  double clip_scale = 1.0;
  if (grad_clip > 0) {
    double sq = 0;
    for (const auto& [name, p] : sae.parameters()) {
      if (p.grad().defined()) sq += p.grad().pow(2).sum().item<double>();
    }
    if (enc_factored) sq += sparse_grad_norm_sq(W_enc, sinks->W_enc, LatentAxis::kColumns, false);
    if (dec_factored) sq += sparse_grad_norm_sq(W_dec, sinks->W_dec, LatentAxis::kRows, unit_norm);
    clip_scale = std::min(1.0, grad_clip / (std::sqrt(sq) + 1e-6));
  }
  for (const auto& [name, p] : sae.parameters()) {
    if (!p.grad().defined()) continue;
    if (clip_scale < 1) p.grad().mul_(clip_scale);
    torch::Tensor param = p;
    fused_adam_step(optimizer, param, lr);
  }
  if (enc_factored) {
    auto& st = adam_state(optimizer, W_enc);
    const AdamStep a = next_adam_step(optimizer, st, lr);
    fused_sparse_adam(W_enc, sinks->W_enc, LatentAxis::kColumns, false, clip_scale, st.exp_avg(), st.exp_avg_sq(), a,
                      false);
  }
  if (dec_factored) {
    // Projection, clipping, Adam and the unit-norm rescaling, latent by latent.
    auto& st = adam_state(optimizer, W_dec);
    const AdamStep a = next_adam_step(optimizer, st, lr);
    fused_sparse_adam(W_dec, sinks->W_dec, LatentAxis::kRows, unit_norm, clip_scale, st.exp_avg(), st.exp_avg_sq(), a,
                      unit_norm);
  } else if (unit_norm) {
    W_dec.div_(W_dec.norm(2, {1}, true).clamp_min(1e-12));
  }
  if (sinks != nullptr) {
    sinks->W_enc.clear();
    sinks->W_dec.clear();
  }
}

SaeTrainer::SaeTrainer(std::vector<SaeSpec> specs, const SaeTrainOptions& options, uint64_t seed)
    : options_(options) {
  options_.validate();
  TORCH_CHECK(!specs.empty(), "give at least one SAE to train");
  for (size_t i = 0; i < specs.size(); ++i) {
    TrainedSae t;
    t.spec = std::move(specs[i]);
    const uint64_t index = t.spec.seed_index >= 0 ? static_cast<uint64_t>(t.spec.seed_index) : i;
    t.sae = std::make_unique<Sae>(t.spec.config, seed + 7919 * index);
    t.sae->set_sparse_gradients(true);  // the fused sparse update wherever the code is sparse
    std::vector<torch::Tensor> params;
    for (const auto& [name, p] : t.sae->parameters()) params.push_back(p);
    t.optimizer = std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(options_.lr).betas({architecture_rules(t.spec.config.architecture).adam_beta1(), 0.999}));
    t.steps_since_fired = torch::zeros({t.spec.config.d_sae}, torch::kInt64);
    const SaeConfig& c = t.spec.config;
    TORCH_CHECK(saes_.empty() || (c.d_in == saes_.front().spec.config.d_in &&
                                  c.out_width() == saes_.front().spec.config.out_width() &&
                                  c.apply_b_dec_to_input == saes_.front().spec.config.apply_b_dec_to_input),
                "all coders trained on one input need the same d_in, d_out and target (", t.spec.name, " has d_in ",
                c.d_in, ", d_out ", c.out_width(), ")");
    // A coder that does not subtract b_dec from its input (or maps to another width) may predict a
    // target other than its input; the trainer then needs the target with every batch.
    transcoder_ = !c.apply_b_dec_to_input;
    saes_.push_back(std::move(t));
  }
}

void SaeTrainer::set_replicas(std::shared_ptr<Communicator> replicas) {
  replicas_ = std::move(replicas);
  for (auto& t : saes_) {
    if (replicas_ && replicas_->size() > 1) {
      std::shared_ptr<Communicator> r = replicas_;
      const std::string name = t.spec.name;
      t.sae->set_replica_sum([r, name](torch::Tensor& m) { r->all_reduce_sum(m, "the batch sums of SAE '" + name + "'"); });
      // An all-gather as a sum of disjoint slots (exact: every other slot adds zeros).
      t.sae->set_replica_gather([r, name](const torch::Tensor& v) {
        torch::Tensor all = torch::zeros({r->size(), v.numel()}, v.options());
        all[r->rank()].copy_(v.reshape(-1));
        r->all_reduce_sum(all, "the BatchTopK selection of SAE '" + name + "'");
        return all.reshape(-1);
      });
    } else {
      t.sae->set_replica_sum(nullptr);
      t.sae->set_replica_gather(nullptr);
    }
  }
}

double SaeTrainer::lr_at(int64_t s) const {
  double m = 1.0;
  if (options_.lr_warmup_steps > 0 && s < options_.lr_warmup_steps) {
    m = static_cast<double>(s + 1) / static_cast<double>(options_.lr_warmup_steps);
  }
  const double decay_steps = options_.lr_decay_fraction * static_cast<double>(options_.steps);
  const double decay_start = static_cast<double>(options_.steps) - decay_steps;
  if (decay_steps > 0 && s >= decay_start) m *= std::max(0.0, (static_cast<double>(options_.steps) - s) / decay_steps);
  return options_.lr * m;
}

double SaeTrainer::l1_scale_at(int64_t s) const {
  if (options_.l1_warmup_steps == 0) return 1.0;
  return std::min(1.0, static_cast<double>(s + 1) / static_cast<double>(options_.l1_warmup_steps));
}

namespace {

// sqrt(d) / E‖x‖ over the rows of x: the factor that makes E‖x‖ = sqrt(d).
double norm_scale(const torch::Tensor& x, const char* what) {
  const double mean_norm = x.norm(2, {1}).mean().item<double>();
  TORCH_CHECK(mean_norm > 0, "the initialisation sample", what, " is all zeros");
  return std::sqrt(static_cast<double>(x.size(1))) / mean_norm;
}

}  // namespace

void SaeTrainer::initialize(const torch::Tensor& sample, const torch::Tensor& target_sample) {
  const SaeConfig& c = saes_.front().spec.config;
  TORCH_CHECK(sample.dim() == 2 && sample.size(1) == c.d_in, "the initialisation sample must be [n, ", c.d_in, "] (got ",
              sample.sizes(), ")");
  TORCH_CHECK(torch::isfinite(sample).all().item<bool>(), "the initialisation sample holds NaN or Inf");
  TORCH_CHECK(target_sample.defined() == transcoder_, transcoder_ ? "transcoders need the targets of the initialisation rows"
                                                                  : "SAEs reconstruct their input: give no target sample");
  torch::NoGradGuard g;
  const torch::Tensor x = sample.to(torch::kFloat32);
  if (options_.normalize_activations) scale_ = norm_scale(x, "");
  target_scale_ = scale_;
  torch::Tensor y = x;
  if (transcoder_) {
    TORCH_CHECK(target_sample.dim() == 2 && target_sample.size(0) == sample.size(0) && target_sample.size(1) == c.out_width(),
                "the initialisation targets must be [", sample.size(0), ", ", c.out_width(), "] (got ", target_sample.sizes(), ")");
    TORCH_CHECK(torch::isfinite(target_sample).all().item<bool>(), "the initialisation targets hold NaN or Inf");
    y = target_sample.to(torch::kFloat32);
    if (options_.normalize_activations) target_scale_ = norm_scale(y, "'s targets");
  }
  const torch::Tensor median = geometric_median(y * target_scale_);
  for (auto& t : saes_) t.sae->b_dec().copy_(median);
  if (transcoder_) {
    // A transcoder subtracts nothing from its input, so its encoder biases start at −m W_enc, m the
    // input's geometric median: the pre-activations start centred, as an SAE's do through b_dec
    // (sparsify starts b_enc at −mean(x) W_enc for the same reason).
    const torch::Tensor centre = geometric_median(x * scale_);
    for (auto& t : saes_) architecture_rules(t.spec.config.architecture).centre_encoder_biases(*t.sae, centre);
  }
  initialized_ = true;
}

std::vector<SaeStepStats> SaeTrainer::step(const torch::Tensor& batch, const torch::Tensor& target) {
  TORCH_CHECK(initialized_, "call initialize() with a sample before training");
  for (const auto& t : saes_) TORCH_CHECK(t.optimizer, "step: the optimizers were released");
  const SaeConfig& c = saes_.front().spec.config;
  TORCH_CHECK(batch.dim() == 2 && batch.size(1) == c.d_in, "a training batch must be [n, ", c.d_in, "] (got ",
              batch.sizes(), ")");
  TORCH_CHECK(torch::isfinite(batch).all().item<bool>(), "the training batch of step ", step_ + 1,
              " holds NaN or Inf activations");
  TORCH_CHECK(target.defined() == transcoder_, transcoder_ ? "transcoders need the target rows of every batch"
                                                           : "SAEs reconstruct their input: give no target");
  const torch::Tensor x = batch.to(torch::kFloat32) * scale_;
  torch::Tensor y = x;  // what the coders predict
  if (transcoder_) {
    TORCH_CHECK(target.dim() == 2 && target.size(0) == batch.size(0) && target.size(1) == c.out_width(),
                "the targets of a batch must be [", batch.size(0), ", ", c.out_width(), "] (got ", target.sizes(), ")");
    TORCH_CHECK(torch::isfinite(target).all().item<bool>(), "the target batch of step ", step_ + 1,
                " holds NaN or Inf activations");
    y = target.to(torch::kFloat32) * target_scale_;
  }
  const double lr = lr_at(step_);
  const double l1_scale = l1_scale_at(step_);
  std::vector<SaeStepStats> stats;
  // One process: local values. Data parallel: every sum below also runs over the replicas, and
  // the row-mean terms are weighted by this replica's share of the rows.
  Communicator* replicas = replicas_ && replicas_->size() > 1 ? replicas_.get() : nullptr;
  const std::string what = "step " + std::to_string(step_ + 1);
  std::function<void(torch::Tensor&)> sum;
  if (replicas != nullptr) sum = [&](torch::Tensor& t) { replicas->all_reduce_sum(t, "the batch statistics of " + what); };
  const CentredSquares batch_sq = centred_squares(y, sum);
  const double weight = static_cast<double>(x.size(0)) / std::max(1.0, batch_sq.rows);
  for (auto& t : saes_) {
    Sae& sae = *t.sae;
    const torch::Tensor dead = t.steps_since_fired >= options_.dead_window;
    const SaeOutput o = sae.forward(x, t.spec.l1_coefficient * l1_scale, dead, transcoder_ ? y : torch::Tensor());
    const int64_t d_sae = t.spec.config.d_sae;
    // loss, mse, L0, Σ‖x − x̂‖², then the fire counts.
    torch::Tensor summed = torch::empty({4 + d_sae}, torch::kFloat64);
    {
      torch::NoGradGuard g;
      summed[0] = o.loss.detach().to(torch::kFloat64) * weight;
      summed[1] = o.mse.detach().to(torch::kFloat64) * weight;
      summed[2] = o.l0.detach().to(torch::kFloat64) * weight;
      summed[3] = (y - o.x_hat.detach()).to(torch::kFloat64).pow(2).sum();
      summed.narrow(0, 4, d_sae).copy_(o.fire_counts);
    }
    if (replicas != nullptr) replicas->all_reduce_sum(summed, "the statistics of SAE '" + t.spec.name + "' at " + what);
    const double loss = summed[0].item<double>();
    TORCH_CHECK(std::isfinite(loss), "the loss of SAE '", t.spec.name, "' became ", loss, " at step ", step_ + 1,
                " (lower the learning rate or the sparsity coefficient)");
    sae_optimizer_step(sae, *t.optimizer, replicas != nullptr ? o.loss * weight : o.loss, lr, options_.grad_clip,
                       replicas, "SAE '" + t.spec.name + "' at " + what);
    torch::NoGradGuard g;
    const torch::Tensor fired = summed.narrow(0, 4, d_sae).to(torch::kInt64);
    t.steps_since_fired.add_(static_cast<int64_t>(batch_sq.rows)).masked_fill_(fired > 0, 0);
    SaeStepStats s;
    s.loss = loss;
    s.mse = summed[1].item<double>();
    s.l0 = summed[2].item<double>();
    s.dead_fraction = dead.to(torch::kFloat32).mean().item<double>();
    s.fvu = summed[3].item<double>() / std::max(1e-12, batch_sq.sum);
    s.fire_counts = fired;
    stats.push_back(s);
  }
  ++step_;
  return stats;
}

void SaeTrainer::save_sae_state(size_t i, torch::serialize::OutputArchive& one) const {
  TORCH_CHECK(initialized_, "save_state: the trainer has not been initialised");
  const TrainedSae& t = saes_.at(i);
  TORCH_CHECK(t.optimizer, "save_state: the optimizers were released");
  one.write("scale", torch::tensor(scale_, torch::kFloat64));
  one.write("target_scale", torch::tensor(target_scale_, torch::kFloat64));
  one.write("step", torch::tensor(step_));
  one.write("name", c10::IValue(t.spec.name));
  for (const auto& [name, p] : t.sae->parameters()) one.write("param." + name, p.detach());
  if (uses_batch_topk(t.spec.config.architecture)) {
    one.write("batchtopk_threshold", t.sae->batchtopk_running_threshold());
  }
  one.write("steps_since_fired", t.steps_since_fired);
  torch::serialize::OutputArchive optim;
  t.optimizer->save(optim);
  one.write("optimizer", optim);
}

void SaeTrainer::load_sae_state(size_t i, torch::serialize::InputArchive& one, const std::string& where) {
  torch::NoGradGuard g;
  TrainedSae& t = saes_.at(i);
  torch::Tensor scale, step;
  one.read("scale", scale);
  one.read("step", step);
  scale_ = scale.item<double>();
  step_ = step.item<int64_t>();
  target_scale_ = scale_;  // checkpoints of SAE runs written before transcoders have one scale
  torch::Tensor target_scale;
  if (one.try_read("target_scale", target_scale)) target_scale_ = target_scale.item<double>();
  c10::IValue name;
  one.read("name", name);
  TORCH_CHECK(name.isString() && name.toStringRef() == t.spec.name, where, ": SAE ", i, " is '",
              name.isString() ? name.toStringRef() : "?", "', expected '", t.spec.name, "'");
  for (const auto& [pname, p] : t.sae->parameters()) {
    torch::Tensor saved;
    one.read("param." + pname, saved);
    TORCH_CHECK(saved.sizes() == p.sizes(), where, ": ", t.spec.name, ".", pname, " has shape ", saved.sizes(),
                ", expected ", p.sizes());
    p.copy_(saved);
  }
  if (uses_batch_topk(t.spec.config.architecture)) {
    torch::Tensor th;
    one.read("batchtopk_threshold", th);
    t.sae->batchtopk_running_threshold() = th.clone();
  }
  torch::Tensor since;
  one.read("steps_since_fired", since);
  t.steps_since_fired = since.clone();
  torch::serialize::InputArchive optim;
  one.read("optimizer", optim);
  t.optimizer->load(optim);
  initialized_ = true;
}

void SaeTrainer::save_state(torch::serialize::OutputArchive& archive) const {
  for (size_t i = 0; i < saes_.size(); ++i) {
    torch::serialize::OutputArchive one;
    save_sae_state(i, one);
    archive.write("sae" + std::to_string(i), one);
  }
}

void SaeTrainer::load_state(torch::serialize::InputArchive& archive, const std::string& where) {
  for (size_t i = 0; i < saes_.size(); ++i) {
    torch::serialize::InputArchive one;
    archive.read("sae" + std::to_string(i), one);
    load_sae_state(i, one, where);
  }
}

void SaeTrainer::release_optimizers() {
  for (auto& t : saes_) t.optimizer.reset();
}

void SaeTrainer::calibrate_thresholds(const torch::Tensor& sample) {
  TORCH_CHECK(initialized_, "calibrate_thresholds: the trainer has not been initialised");
  TORCH_CHECK(sample.dim() == 2 && sample.size(1) == saes_.front().spec.config.d_in, "calibration rows must be [n, ",
              saes_.front().spec.config.d_in, "] (got ", sample.sizes(), ")");
  torch::NoGradGuard g;
  const torch::Tensor x = sample.to(torch::kFloat32) * scale_;
  for (auto& t : saes_) {
    if (uses_batch_topk(t.spec.config.architecture)) t.sae->calibrate_batchtopk_threshold(x);
  }
}

Sae SaeTrainer::folded(size_t i) const {
  const Sae& sae = *saes_.at(i).sae;
  std::map<std::string, torch::Tensor> p = sae.state();
  architecture_rules(sae.config().architecture).fold_decoder_norms(p);
  const double s = scale_, t = target_scale_;
  // The SAE saw x·s and predicted y·t (t = s for an SAE). On raw x: (x·s − b_dec) W_enc =
  // (x − b_dec/s)(s W_enc), and the output ŷ/t = f (W_dec/t) + b_dec/t + x (W_skip · s/t)ᵀ.
  // Pre-activations, thresholds and codes are unchanged.
  p["W_enc"] = p["W_enc"] * s;
  p["W_dec"] = p["W_dec"] / t;
  p["b_dec"] = p["b_dec"] / t;
  if (p.count("W_skip")) p["W_skip"] = p["W_skip"] * (s / t);
  return Sae(sae.config(), p, "folded SAE '" + saes_.at(i).spec.name + "'");
}

}  // namespace saelab
