#include "sae/train_run.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/activation_store.h"
#include "core/files.h"
#include "core/json_options.h"
#include "core/options.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "sae/sae_io.h"

namespace saelab {

namespace {

using nlohmann::json;

// One hook of the run: its store, batches and trainer.
struct HookGroup {
  std::string hook;
  std::unique_ptr<ActivationStore> store;
  std::unique_ptr<ShuffledBatches> batches;
  std::unique_ptr<SaeTrainer> trainer;
  torch::Tensor fired;  // [n_saes, d_sae] float64 fire counts over the density window
  int64_t counted = 0;  // rows in the density window
};

std::vector<std::string> hooks_of(const SaeRunOptions& o) {
  if (!o.hooks.empty()) return o.hooks;
  TORCH_CHECK(fs::is_directory(o.store), "capture folder '", o.store, "' does not exist (saelab capture --out)");
  std::vector<std::string> hooks;
  for (const auto& e : fs::directory_iterator(o.store)) {
    if (fs::exists(e.path() / "manifest.json")) hooks.push_back(e.path().filename().string());
  }
  std::sort(hooks.begin(), hooks.end());
  TORCH_CHECK(!hooks.empty(), "capture folder '", o.store, "' holds no activation stores");
  return hooks;
}

void save_run_checkpoint(const fs::path& path, const std::string& config, int64_t step,
                         const std::vector<HookGroup>& groups) {
  torch::serialize::OutputArchive archive;
  archive.write("config", c10::IValue(config));
  archive.write("step", torch::tensor(step));
  for (size_t g = 0; g < groups.size(); ++g) {
    torch::serialize::OutputArchive one;
    groups[g].trainer->save_state(one);
    one.write("fired", groups[g].fired);
    one.write("counted", torch::tensor(groups[g].counted));
    archive.write("hook" + std::to_string(g), one);
  }
  write_atomic_stream(path, [&](const ByteSink& sink) { archive.save_to(sink); });
}

int64_t load_run_checkpoint(const fs::path& path, const std::string& config, std::vector<HookGroup>& groups) {
  torch::serialize::InputArchive archive;
  verify_zip_archive(path, "checkpoint");
  try {
    archive.load_from(path.string());
  } catch (const c10::Error&) {
    TORCH_CHECK(false, "checkpoint '", path.string(), "' is corrupt; delete it to start over");
  }
  c10::IValue saved;
  archive.read("config", saved);
  TORCH_CHECK(saved.isString() && saved.toStringRef() == config, "'", path.parent_path().string(),
              "' holds a training run with different options or activations; use another output folder or delete it");
  torch::Tensor step;
  archive.read("step", step);
  for (size_t g = 0; g < groups.size(); ++g) {
    torch::serialize::InputArchive one;
    archive.read("hook" + std::to_string(g), one);
    groups[g].trainer->load_state(one, path.string());
    torch::Tensor fired, counted;
    one.read("fired", fired);
    one.read("counted", counted);
    groups[g].fired = fired.clone();
    groups[g].counted = counted.item<int64_t>();
  }
  return step.item<int64_t>();
}

}  // namespace

std::string SaeRunSpec::folder_name() const {
  if (!name.empty()) return name;
  if (uses_k(parse_architecture(architecture))) return architecture + "-k" + std::to_string(k);
  std::ostringstream s;
  s << architecture << "-l1_" << l1;
  return s.str();
}

double SaeRunSpec::bandwidth() const {
  return jumprelu_bandwidth > 0 ? jumprelu_bandwidth : default_jumprelu_bandwidth(parse_jumprelu_sparsity(jumprelu_sparsity));
}

SaeConfig SaeRunSpec::config(int64_t d_in) const {
  SaeConfig c;
  c.architecture = parse_architecture(architecture);
  c.d_in = d_in;
  c.d_sae = expansion * d_in;
  c.k = k;
  c.jumprelu_bandwidth = bandwidth();
  c.jumprelu_init_threshold = jumprelu_init_threshold;
  c.jumprelu_sparsity = parse_jumprelu_sparsity(jumprelu_sparsity);
  c.jumprelu_tanh_scale = jumprelu_tanh_scale;
  c.pre_act_loss_coefficient = pre_act_loss_coefficient;
  if (c.architecture == Architecture::kMatryoshkaBatchTopK) {
    c.matryoshka_widths = matryoshka_widths;
    if (c.matryoshka_widths.empty()) {
      TORCH_CHECK(matryoshka_levels >= 1 && matryoshka_levels < 31, "SAE '", folder_name(), "': matryoshka_levels must be in 1..30");
      for (int64_t l = matryoshka_levels - 1; l >= 0; --l) c.matryoshka_widths.push_back(c.d_sae >> l);
    }
  }
  try {
    c.validate();
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "SAE '", folder_name(), "' on a hook of width ", d_in, ": ", e.msg());
  }
  return c;
}

void SaeRunOptions::validate() const {
  train.validate();
  TORCH_CHECK(!saes.empty(), "give at least one SAE to train (saes)");
  std::set<std::string> names;
  for (const auto& s : saes) {
    // Checked again against each hook's width when the run starts.
    const Architecture a = parse_architecture(s.architecture);
    parse_jumprelu_sparsity(s.jumprelu_sparsity);
    if (a != Architecture::kMatryoshkaBatchTopK || !s.matryoshka_widths.empty()) {
      SaeConfig c;
      c.architecture = a;
      c.d_in = 1;
      c.d_sae = s.matryoshka_widths.empty() ? std::max<int64_t>(1, s.expansion) * std::max<int64_t>(1, s.k)
                                            : s.matryoshka_widths.back();
      c.k = s.k;
      c.matryoshka_widths = s.matryoshka_widths;
      c.jumprelu_bandwidth = s.bandwidth();
      c.validate();
    }
    TORCH_CHECK(s.expansion > 0, "SAE '", s.folder_name(), "': expansion must be positive (got ", s.expansion, ")");
    TORCH_CHECK(s.l1 >= 0 && std::isfinite(s.l1), "SAE '", s.folder_name(), "': l1 must be >= 0 (got ", s.l1, ")");
    TORCH_CHECK(s.jumprelu_init_threshold > 0, "SAE '", s.folder_name(), "': jumprelu_init_threshold must be positive");
    TORCH_CHECK(names.insert(s.folder_name()).second, "two SAEs are named '", s.folder_name(), "'; give them distinct names");
  }
  TORCH_CHECK(init_rows > 0, "init_rows must be positive (got ", init_rows, ")");
  TORCH_CHECK(buffer_shards > 0, "buffer_shards must be positive (got ", buffer_shards, ")");
  TORCH_CHECK(checkpoint_every > 0, "checkpoint_every must be positive (got ", checkpoint_every, ")");
  TORCH_CHECK(stop_after >= 0, "stop_after must be >= 0 (got ", stop_after, ")");
}

json SaeRunOptions::to_json() const {
  json j = options_json(*this);
  j["format_version"] = 1;
  for (size_t i = 0; i < saes.size(); ++i) j["saes"][i]["name"] = saes[i].folder_name();
  return j;
}

std::vector<SaeRunSpec> SaeGridOptions::specs() const {
  std::vector<SaeRunSpec> out;
  for (const auto& arch : architectures) {
    SaeRunSpec base;
    base.architecture = arch;
    base.expansion = expansion;
    if (uses_k(parse_architecture(arch))) {
      for (int64_t one : k) {
        SaeRunSpec s = base;
        s.k = one;
        out.push_back(s);
      }
    } else {
      for (double one : l1) {
        SaeRunSpec s = base;
        s.l1 = one;
        out.push_back(s);
      }
    }
  }
  return out;
}

void read_sae_run_options(const json& config, const std::string& where, SaeRunOptions& o) {
  JsonFields f(config, where);
  SaeGridOptions grid;
  read_options(f, grid);
  const bool grid_given = config.contains("architectures");
  const json* saes = config.contains("saes") ? &config.at("saes") : nullptr;
  TORCH_CHECK(!(saes && grid_given), where, ": give either 'saes' or 'architectures', not both");
  TORCH_CHECK(!saes || (saes->is_array() && !saes->empty()), where, ": 'saes' must be a non-empty array of objects");
  read_options(f, o);
  f.finish();
  if (grid_given) o.saes = grid.specs();
  if (saes) {
    for (size_t i = 0; i < saes->size(); ++i) {
      if (!(*saes)[i].contains("expansion")) o.saes[i].expansion = grid.expansion;
    }
  }
}

SaeRunResult run_sae_training(const SaeRunOptions& options) {
  options.validate();
  const SaeTrainOptions& to = options.train;
  const std::vector<std::string> hooks = hooks_of(options);
  for (const auto& hook : hooks) check_path_name(hook, "hook '" + hook + "' (a folder name of the run)");
  const RunLock lock = RunLock::folder(options.out, "training folder");
  {
    // Refuse at once what memory cannot hold: float32 weights and two Adam moments of encoder and
    // decoder, their dense gradients where the code is not sparse (topk, batchtopk and matryoshka
    // keep them factored: sae/sparse_grad.h), and about six [batch, d_sae] step tensors of the
    // widest SAE (the SAEs step one after the other). The folded copies at save reuse the Adam
    // moments' memory (released first).
    double need = 0, step_tensors = 0;  // the step tensors of one SAE at a time: they train in turn
    for (const auto& hook : hooks) {
      const fs::path manifest = fs::path(options.store) / hook / "manifest.json";
      if (!fs::exists(manifest)) continue;  // named below
      const double d = static_cast<double>(
          StoreManifest::from_json(load_json_file(manifest.string(), "activation manifest"), manifest.string()).d);
      for (const auto& rs : options.saes) {
        const double d_sae = static_cast<double>(rs.expansion) * d;
        const double copies = uses_k(parse_architecture(rs.architecture)) ? 6.0 : 8.0;
        need += 4.0 * d_sae * copies * d;
        step_tensors = std::max(step_tensors, 4.0 * d_sae * 6.0 * static_cast<double>(to.batch_size));
      }
    }
    need += step_tensors;
    require_memory(need, "training " + std::to_string(options.saes.size() * hooks.size()) +
                             " SAEs (their expansion and the batch_size)");
  }
  std::vector<HookGroup> groups;
  json fingerprint = json::array();
  for (const auto& hook : hooks) {
    HookGroup g;
    g.hook = hook;
    const fs::path dir = fs::path(options.store) / hook;
    TORCH_CHECK(fs::exists(dir / "manifest.json"), "hook '", hook, "' has no activation store in '", options.store,
                "' (expected ", (dir / "manifest.json").string(), ")");
    g.store = std::make_unique<ActivationStore>(ActivationStore::open(dir.string()));
    const StoreManifest& m = g.store->manifest();
    fingerprint.push_back({{"hook", hook}, {"model_sha256", m.model_sha256}, {"rows", m.rows}, {"d", m.d}});
    std::vector<SaeSpec> specs;
    for (const auto& rs : options.saes) {
      SaeSpec s;
      s.name = rs.folder_name();
      s.config = rs.config(g.store->d());  // validated: k, widths, bandwidth against this width
      s.l1_coefficient = rs.l1;
      specs.push_back(s);
    }
    g.trainer = std::make_unique<SaeTrainer>(specs, to, static_cast<uint64_t>(options.seed));
    g.batches = std::make_unique<ShuffledBatches>(*g.store, to.batch_size, options.buffer_shards,
                                                  static_cast<uint64_t>(options.seed));
    g.fired = torch::zeros({static_cast<int64_t>(specs.size()), specs.front().config.d_sae}, torch::kFloat64);
    groups.push_back(std::move(g));
  }
  // Density over the last 20% of the steps (at least one): the features' settled behaviour.
  const int64_t count_from = to.steps - std::max<int64_t>(1, to.steps / 5);
  json run = options.to_json();
  run["activations"] = fingerprint;
  const std::string config_text = run.dump();

  fs::create_directories(options.out);
  const fs::path ckpt = fs::path(options.out) / "checkpoint.pt";
  const fs::path metrics_path = fs::path(options.out) / "metrics.jsonl";
  const fs::path run_path = fs::path(options.out) / "run.json";
  SaeRunResult result;
  int64_t step = 0;
  if (fs::exists(ckpt)) {
    step = load_run_checkpoint(ckpt, config_text, groups);
    for (auto& g : groups) g.batches->skip(step);
    truncate_jsonl_steps(metrics_path, step);
    std::printf("resuming from step %lld (%s)\n", static_cast<long long>(step), ckpt.string().c_str());
  } else {
    if (fs::exists(run_path)) {
      const json old = load_json_file(run_path.string(), "training run");
      json old_cfg = old;
      old_cfg.erase("complete");
      old_cfg.erase("sae_dirs");
      TORCH_CHECK(old_cfg == run, "'", options.out,
                  "' holds a training run with different options or activations; use another output folder or delete it");
    }
    for (auto& g : groups) {
      g.trainer->initialize(g.store->rows(0, std::min(options.init_rows, g.store->rows())));
    }
    fs::remove(metrics_path);
  }
  write_file_atomic(run_path, run.dump(2) + "\n");
  result.resumed_from = step;

  std::ofstream metrics(metrics_path, std::ios::app);
  TORCH_CHECK(metrics.good(), "cannot write '", metrics_path.string(), "'");
  Progress bar("train", to.steps, "step");
  bar.update(step);
  const int64_t stop_at = options.stop_after > 0 ? std::min(to.steps, step + options.stop_after) : to.steps;
  int64_t last_checkpoint = step;
  while (step < stop_at) {
    std::string status;
    for (auto& g : groups) {
      const torch::Tensor batch = g.batches->next();
      std::vector<SaeStepStats> stats;
      try {
        stats = g.trainer->step(batch);
      } catch (const c10::Error& e) {
        TORCH_CHECK(false, "hook ", g.hook, ": ", e.msg(), "; the last good checkpoint (step ", last_checkpoint,
                    ") in '", options.out, "' is intact");
      }
      if (step >= count_from) {
        for (size_t i = 0; i < stats.size(); ++i) {
          g.fired[static_cast<int64_t>(i)] += stats[i].fire_counts.to(torch::kFloat64);
        }
        g.counted += batch.size(0);
      }
      for (size_t i = 0; i < stats.size(); ++i) {
        const auto& s = stats[i];
        metrics << json{{"step", step + 1}, {"hook", g.hook}, {"sae", g.trainer->saes()[i].spec.name},
                        {"loss", s.loss}, {"mse", s.mse}, {"fvu", s.fvu}, {"l0", s.l0},
                        {"dead_fraction", s.dead_fraction}}
                       .dump()
                << "\n";
      }
      const auto& s0 = stats.front();
      status = fmt::format("{} {} loss {:.3f} fvu {:.3f} L0 {:.1f} dead {:.1f}%", g.hook, g.trainer->saes()[0].spec.name,
                           s0.loss, s0.fvu, s0.l0, 100 * s0.dead_fraction);
    }
    ++step;
    bar.update(step, status);
    if (step % options.checkpoint_every == 0 || step == stop_at) {
      metrics.flush();
      save_run_checkpoint(ckpt, config_text, step, groups);
      last_checkpoint = step;
    }
  }
  bar.finish();
  result.steps_done = step;
  if (step < to.steps) return result;

  // The last checkpoint is written: Adam's moments are no longer needed, and at GPT-3 width they
  // are the memory the folded copies below need.
  for (auto& g : groups) g.trainer->release_optimizers();
  for (auto& g : groups) {
    const StoreManifest& m = g.store->manifest();
    // BatchTopK thresholds from the final weights: exactly k active latents per row on average
    // over the calibration rows (the running average of training lags the weights).
    g.trainer->calibrate_thresholds(g.store->rows(0, std::min(options.init_rows, g.store->rows())));
    for (size_t i = 0; i < g.trainer->saes().size(); ++i) {
      SaeMetadata meta;
      meta.model_name = m.model_name;
      meta.hook_name = m.hook;
      meta.context_size = m.context_length;
      meta.prepend_bos = true;
      meta.model_sha256 = m.model_sha256;
      meta.density_tokens = g.counted;
      const torch::Tensor density =
          (g.fired[static_cast<int64_t>(i)] / std::max<int64_t>(1, g.counted)).clamp_min(1e-10).log10().to(torch::kFloat32);
      const std::string dir = (fs::path(options.out) / g.hook / g.trainer->saes()[i].spec.name).string();
      save_sae(dir, g.trainer->folded(i), meta, density);
      result.sae_dirs.push_back(dir);
    }
  }
  run["complete"] = true;
  run["sae_dirs"] = result.sae_dirs;
  write_file_atomic(run_path, run.dump(2) + "\n");
  result.complete = true;
  return result;
}

}  // namespace saelab
