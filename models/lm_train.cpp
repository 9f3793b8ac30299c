#include "models/lm_train.h"

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/files.h"
#include "core/torchscript_storages.h"
#include "core/progress.h"
#include "models/lm_data.h"

namespace saelab {

void LmTrainOptions::validate() const {
  TORCH_CHECK(steps > 0, "steps must be positive (got ", steps, ")");
  TORCH_CHECK(batch_size > 0, "batch_size must be positive (got ", batch_size, ")");
  TORCH_CHECK(lr > 0 && std::isfinite(lr), "lr must be a positive number (got ", lr, ")");
  TORCH_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1] (got ", min_lr_ratio, ")");
  TORCH_CHECK(warmup_steps >= 0, "warmup_steps must be >= 0 (got ", warmup_steps, ")");
  TORCH_CHECK(weight_decay >= 0, "weight_decay must be >= 0 (got ", weight_decay, ")");
  TORCH_CHECK(grad_clip >= 0, "grad_clip must be >= 0 (got ", grad_clip, ")");
  TORCH_CHECK(eval_every > 0, "eval_every must be positive (got ", eval_every, ")");
  TORCH_CHECK(checkpoint_every > 0, "checkpoint_every must be positive (got ", checkpoint_every, ")");
  TORCH_CHECK(stop_after >= 0, "stop_after must be >= 0 (got ", stop_after, ")");
}

nlohmann::json LmTrainOptions::to_json() const {
  nlohmann::json j = options_json(*this);
  j["optimizer"] = "AdamW(0.9, 0.95)";
  j["schedule"] = "linear warm-up, cosine decay";
  return j;
}

namespace {

namespace fs = std::filesystem;

// The graph executor's optimised path replaces autograd formulas with its own and would make a
// resumed run differ from an uninterrupted one; training runs the plain interpreter.
struct PlainInterpreter {
  bool previous = torch::jit::getGraphExecutorOptimize();
  PlainInterpreter() { torch::jit::setGraphExecutorOptimize(false); }
  ~PlainInterpreter() { torch::jit::setGraphExecutorOptimize(previous); }
};

double learning_rate(const LmTrainOptions& o, int64_t step) {
  if (step < o.warmup_steps) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
  const double span = std::max<int64_t>(1, o.steps - o.warmup_steps);
  const double progress = std::min(1.0, static_cast<double>(step - o.warmup_steps) / span);
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return o.lr * (o.min_lr_ratio + (1.0 - o.min_lr_ratio) * cosine);
}

void save_checkpoint(const fs::path& path, const std::vector<std::pair<std::string, torch::Tensor>>& params,
                     torch::optim::Optimizer& opt, int64_t step, const std::string& config) {
  torch::serialize::OutputArchive archive;
  for (const auto& [name, t] : params) archive.write("param." + name, t.detach());
  torch::serialize::OutputArchive optim;
  opt.save(optim);
  archive.write("optimizer", optim);
  archive.write("step", torch::tensor(step));
  archive.write("config", c10::IValue(config));
  write_atomic_stream(path, [&](const ByteSink& sink) { archive.save_to(sink); });
}

int64_t load_checkpoint(const fs::path& path, const std::vector<std::pair<std::string, torch::Tensor>>& params,
                        torch::optim::Optimizer& opt, const std::string& config) {
  torch::serialize::InputArchive archive;
  verify_torch_archive(path, "checkpoint");
  try {
    archive.load_from(path.string());
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "checkpoint '", path.string(), "' is corrupt; delete it to start over");
  }
  c10::IValue saved_config;
  archive.read("config", saved_config);
  TORCH_CHECK(saved_config.isString() && saved_config.toStringRef() == config, "checkpoint '", path.string(),
              "' was written with a different model or training config; use another --out folder");
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : params) {
    torch::Tensor saved;
    archive.read("param." + name, saved);
    TORCH_CHECK(saved.sizes() == t.sizes(), "checkpoint '", path.string(), "': parameter ", name, " has shape ",
                saved.sizes(), ", expected ", t.sizes());
    t.copy_(saved);
  }
  torch::serialize::InputArchive optim;
  archive.read("optimizer", optim);
  opt.load(optim);
  torch::Tensor step;
  archive.read("step", step);
  return step.item<int64_t>();
}

}  // namespace

double evaluate_lm(const LogitsFn& logits_fn, const torch::Tensor& contexts, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const int64_t n = contexts.size(0), T = contexts.size(1) - 1;
  double total = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < n; i += batch_size) {
    const torch::Tensor rows = contexts.narrow(0, i, std::min(batch_size, n - i));
    const torch::Tensor logits = logits_fn(rows.narrow(1, 0, T));
    const torch::Tensor targets = rows.narrow(1, 1, T);
    total += torch::nn::functional::cross_entropy(
                 logits.reshape({-1, logits.size(-1)}), targets.reshape(-1),
                 torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                 .item<double>();
    count += targets.numel();
  }
  return total / static_cast<double>(count);
}

LmTrainResult train_lm(torch::jit::Module& module, const GptConfig& config, const LmTrainOptions& options,
                       const std::vector<int64_t>& train_stream, const torch::Tensor& validation_contexts,
                       int64_t bos_id, const std::string& run_dir) {
  options.validate();
  PlainInterpreter plain;
  fs::create_directories(run_dir);
  const fs::path ckpt = fs::path(run_dir) / "checkpoint.pt";
  const fs::path metrics_path = fs::path(run_dir) / "metrics.jsonl";
  const std::string config_text = nlohmann::json{{"model", config.to_json()}, {"train", options.to_json()}}.dump();

  const auto params = unique_parameters(module);
  std::vector<torch::Tensor> decay, no_decay, all;
  for (const auto& [name, t] : params) {
    all.push_back(t);
    (t.dim() >= 2 && name != "pos_embed.weight" ? decay : no_decay).push_back(t);
  }
  using torch::optim::AdamWOptions;
  auto base = AdamWOptions(options.lr).betas({0.9, 0.95}).eps(1e-8);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<AdamWOptions>(AdamWOptions(base).weight_decay(options.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<AdamWOptions>(AdamWOptions(base).weight_decay(0.0)));
  torch::optim::AdamW opt(std::move(groups), base);

  int64_t step = 0;
  if (fs::exists(ckpt)) {
    step = load_checkpoint(ckpt, params, opt, config_text);
    std::fprintf(stderr, "resuming from %s at step %lld\n", ckpt.string().c_str(), static_cast<long long>(step));
    truncate_jsonl_steps(metrics_path, step);
  }
  std::ofstream metrics(metrics_path, std::ios::app);
  TORCH_CHECK(metrics.good(), "cannot write '", metrics_path.string(), "'");

  const int64_t T = config.context_length;
  const int64_t eval_rows = options.eval_rows > 0 ? std::min(options.eval_rows, validation_contexts.size(0))
                                                  : validation_contexts.size(0);
  const torch::Tensor eval_subset = validation_contexts.narrow(0, 0, eval_rows);
  const LogitsFn plain_logits = [&module](const torch::Tensor& t) { return module.forward({t}).toTensor(); };
  module.train();
  const int64_t tokens_per_step = options.batch_size * T;
  Progress bar("train-lm", options.steps * tokens_per_step, "tok");
  const auto start = std::chrono::steady_clock::now();
  const int64_t start_step = step;
  std::vector<double> recent;
  double last_val = NAN;
  while (step < options.steps) {
    const double lr = learning_rate(options, step);
    for (auto& g : opt.param_groups()) static_cast<AdamWOptions&>(g.options()).lr(lr);
    const torch::Tensor batch =
        training_batch(train_stream, T, bos_id, options.batch_size, static_cast<uint64_t>(options.seed), step);
    const torch::Tensor logits = module.forward({batch.narrow(1, 0, T)}).toTensor();
    const torch::Tensor loss = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                                    batch.narrow(1, 1, T).reshape(-1));
    opt.zero_grad();
    loss.backward();
    const double loss_value = loss.item<double>();
    TORCH_CHECK(std::isfinite(loss_value), "training loss became ", loss_value, " at step ", step + 1,
                "; the last checkpoint in '", run_dir, "' is intact (lower the learning rate)");
    const double grad_norm = options.grad_clip > 0 ? torch::nn::utils::clip_grad_norm_(all, options.grad_clip)
                                                   : 0.0;
    opt.step();
    ++step;
    recent.push_back(loss_value);
    if (recent.size() > 50) recent.erase(recent.begin());

    nlohmann::json line = {{"step", step}, {"loss", loss_value}, {"lr", lr}, {"grad_norm", grad_norm}};
    if (step % options.eval_every == 0 || step == options.steps) {
      module.eval();
      last_val = evaluate_lm(plain_logits, eval_subset);
      module.train();
      line["val_loss"] = last_val;
    }
    metrics << line.dump() << "\n";
    metrics.flush();
    const bool stopping = options.stop_after > 0 && step - start_step >= options.stop_after;
    if (step % options.checkpoint_every == 0 || step == options.steps || stopping) {
      save_checkpoint(ckpt, params, opt, step, config_text);
    }
    bar.update(step * tokens_per_step,
               fmt::format("step {}/{} loss {:.3f} val {:.3f} lr {:.2e}", step, options.steps, loss_value, last_val, lr));
    if (stopping) break;
  }
  bar.finish();
  module.eval();
  LmTrainResult r;
  r.steps = step;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.tokens_per_second = r.seconds > 0 ? static_cast<double>((step - start_step) * options.batch_size * T) / r.seconds : 0;
  double sum = 0;
  for (double v : recent) sum += v;
  r.final_train_loss = recent.empty() ? NAN : sum / static_cast<double>(recent.size());
  r.finished = step >= options.steps;
  if (r.finished) {
    r.validation_loss = evaluate_lm(plain_logits, validation_contexts);
    const int64_t first = std::min(LmTrainResult::kFirstValidationContexts, validation_contexts.size(0));
    r.first_contexts_loss = evaluate_lm(plain_logits, validation_contexts.narrow(0, 0, first));
  }
  return r;
}

}  // namespace saelab
