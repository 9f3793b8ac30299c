// The training loop of a run (sae/train_run.h): the layout, the groups and the checkpoints are
// sae/run_parts.h's; this file opens them, steps every group's coders on each batch, writes the
// metrics and checkpoints, and at the end the coders' folders.
#include "sae/train_run.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/distributed.h"
#include "core/fault.h"
#include "core/files.h"
#include "core/json_options.h"
#include "core/progress.h"
#include "sae/run_parts.h"
#include "sae/sae_io.h"

namespace saelab {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// "48 coders  fvu 0.19-0.41 (median 0.25)  L0 16.0-61.2 (median 32.0)  dead <= 3.1%": every coder's
// last step at a glance, from the rows (loss, mse, fvu, l0, dead_fraction) of the step's statistics.
std::string all_coders_status(const torch::Tensor& unit_stats) {
  const torch::Tensor fvu = std::get<0>(unit_stats.select(1, 2).sort()), l0 = std::get<0>(unit_stats.select(1, 3).sort());
  const int64_t n = unit_stats.size(0);
  auto spread = [n](const torch::Tensor& sorted, const char* name, int digits) {
    return fmt::format("{} {:.{}f}-{:.{}f} (median {:.{}f})", name, sorted[0].item<double>(), digits,
                       sorted[n - 1].item<double>(), digits, sorted[n / 2].item<double>(), digits);
  };
  return fmt::format("{} coders  {}  {}  dead <= {:.1f}%", n, spread(fvu, "fvu", 2), spread(l0, "L0", 1),
                     100 * unit_stats.select(1, 4).max().item<double>());
}

// The first rows of a store, as read for initialisation: a NaN or Inf among them is named by hook,
// shard and row, before it would surface as a NaN geometric median.
void check_finite_rows(const torch::Tensor& rows, const StoreManifest& m, const std::string& store) {
  const torch::Tensor bad = torch::isfinite(rows).all(1).logical_not().nonzero();
  if (bad.numel() == 0) return;
  int64_t row = bad[0][0].item<int64_t>(), first = row;
  std::string shard = "?";
  for (const auto& [name, n] : m.shards) {
    if (row < n) {
      shard = name;
      break;
    }
    row -= n;
  }
  TORCH_CHECK(false, "the activations of hook '", m.hook, "' in '", store, "' hold NaN or Inf: row ", first,
              " of the store (row ", row, " of shard '", shard, "'), among the rows that initialise the coders; "
              "capture the hook again");
}

}  // namespace

SaeRunResult run_sae_training(const SaeRunOptions& options, ActivationStream* stream) {
  options.validate();
  const SaeTrainOptions& to = options.train;
  const std::shared_ptr<Communicator> world = world_communicator();
  const int world_size = world->size(), rank = world->rank();
  const RunLayout layout = plan_run_layout(options, stream, world_size, rank);
  const int dp = layout.dp, replica = layout.replica;
  const bool leader = layout.leader();
  const int64_t n_units = layout.n_units();
  const std::shared_ptr<Communicator> replicas = world->split(layout.my_group, "replicas");

  std::optional<RunLock> lock;
  std::vector<HookGroup> groups;
  json fingerprint = json::array();
  run_together(*world, "opening the run", [&] {
    if (rank == 0) lock.emplace(RunLock::folder(options.out, "training folder"));
    groups = open_hook_groups(layout, stream, replicas, fingerprint);
  });
  // Density over the last 20% of the steps (at least one): the features' settled behaviour.
  const int64_t count_from = to.steps - std::max<int64_t>(1, to.steps / 5);
  json run = options.to_json();
  run["activations"] = fingerprint;
  if (stream) run["stream"] = stream->fingerprint();
  const std::string config_text = run.dump();
  json run_record = run;
  run_record["launch"] = layout.launch();  // provenance only: a resume may use another number of processes

  const fs::path ckpt = fs::path(options.out) / "checkpoint.pt";
  const fs::path metrics_path = fs::path(options.out) / "metrics.jsonl";
  const fs::path run_path = fs::path(options.out) / "run.json";
  SaeRunResult result;
  for (int64_t u = 0; u < n_units; ++u) result.sae_dirs.push_back(layout.unit_dir(u));
  // The rows that initialise the SAEs and calibrate BatchTopK thresholds: the first init_rows
  // (check_store_plan refused more than a store holds; 0: kDefaultInitRows, or all of a smaller store).
  const int64_t init_rows = options.init_rows > 0 ? options.init_rows : kDefaultInitRows;
  std::vector<torch::Tensor> stream_rows;
  auto first_rows = [&](const HookGroup& g, bool target = false) {
    if (target && g.target.empty()) return torch::Tensor();
    if (!stream) {
      const ActivationStore& store = target ? *g.target_store : *g.store;
      return store.rows(0, std::min(init_rows, store.rows()));
    }
    if (stream_rows.empty()) stream_rows = stream->first_rows(std::min(init_rows, stream->manifests().front().target_rows));
    return stream_rows[static_cast<size_t>(target ? g.target_slot : g.input_slot)];
  };
  int64_t step = 0;
  bool already_complete = false;
  run_together(*world, "starting the run", [&] {
    if (rank == 0) fs::create_directories(options.out);
    if (fs::exists(ckpt)) {
      step = load_run_checkpoint(ckpt, config_text, groups, stream);
      // A run that wrote its coders' folders is done: said so, and nothing is rewritten.
      already_complete = step >= to.steps && fs::exists(run_path) &&
                         load_json_file(run_path.string(), "training run").value("complete", false);
      if (already_complete) return;
      if (!stream) {
        for (auto& g : groups) g.batches->skip(step);
      }
      if (rank == 0) {
        truncate_jsonl_steps(metrics_path, step);
        std::printf("resuming from step %lld (%s)\n", static_cast<long long>(step), ckpt.string().c_str());
      }
    } else {
      if (rank == 0 && fs::exists(run_path)) {
        json old_cfg = load_json_file(run_path.string(), "training run");
        for (const char* key : {"complete", "sae_dirs", "launch"}) old_cfg.erase(key);
        TORCH_CHECK(old_cfg == run, "'", options.out,
                    "' holds a training run with different options or activations; use another output folder or delete it");
      }
      for (auto& g : groups) {
        const torch::Tensor x = first_rows(g), y = first_rows(g, true);
        if (!stream) {
          check_finite_rows(x, g.manifest, options.store);
          if (y.defined()) check_finite_rows(y, g.target_manifest, options.store);
        }
        g.trainer->initialize(x, y);
      }
      if (rank == 0) fs::remove(metrics_path);
    }
    if (rank == 0) write_file_atomic(run_path, run_record.dump(2) + "\n");
  });
  result.resumed_from = step;
  if (already_complete) {
    if (rank == 0) {
      std::printf("'%s' is already complete (%lld steps, %lld coders): nothing to do; to train again, choose "
                  "another --out or delete this one\n", options.out.c_str(), static_cast<long long>(step),
                  static_cast<long long>(n_units));
    }
    result.steps_done = step;
    result.complete = true;
    return result;
  }

  std::ofstream metrics;
  if (rank == 0) {
    metrics.open(metrics_path, std::ios::app);
    TORCH_CHECK(metrics.good(), "cannot write '", metrics_path.string(), "'");
  }
  std::optional<Progress> bar;
  if (rank == 0) {
    bar.emplace("train", to.steps, "step");
    bar->update(step);
  }
  const int64_t stop_at = options.stop_after > 0 ? std::min(to.steps, step + options.stop_after) : to.steps;
  int64_t last_checkpoint = step;
  // The statistics of every SAE of the run, for metrics.jsonl: loss, mse, fvu, l0, dead fraction.
  torch::Tensor unit_stats = torch::zeros({n_units, 5}, torch::kFloat64);
  while (step < stop_at) {
    std::string status;
    unit_stats.zero_();
    const std::vector<torch::Tensor> streamed = stream ? stream->next() : std::vector<torch::Tensor>();
    for (auto& g : groups) {
      auto [batch, target] = g.next(streamed);
      const int64_t rows = batch.size(0);
      if (dp > 1) {
        const int64_t begin = rows * replica / dp, n = rows * (replica + 1) / dp - begin;
        batch = batch.narrow(0, begin, n);
        if (target.defined()) target = target.narrow(0, begin, n);
      }
      std::vector<SaeStepStats> stats;
      try {
        stats = g.trainer->step(batch, target);
      } catch (const c10::Error& e) {
        TORCH_CHECK(false, "hook ", g.key, ": ", e.msg(), "; the last good checkpoint (step ", last_checkpoint,
                    ") in '", options.out, "' is intact");
      }
      if (step >= count_from) {
        for (size_t i = 0; i < stats.size(); ++i) {
          g.fired[static_cast<int64_t>(i)].narrow(0, 0, stats[i].fire_counts.size(0)) += stats[i].fire_counts.to(torch::kFloat64);
        }
        g.counted += rows;
      }
      if (leader) {
        for (size_t i = 0; i < stats.size(); ++i) {
          const auto& s = stats[i];
          auto row = unit_stats[g.units[i]];
          row[0] = s.loss;
          row[1] = s.mse;
          row[2] = s.fvu;
          row[3] = s.l0;
          row[4] = s.dead_fraction;
        }
      }
      const auto& s0 = stats.front();
      status = fmt::format("{} {} loss {:.3f} fvu {:.3f} L0 {:.1f} dead {:.1f}%", g.key, g.trainer->saes()[0].spec.name,
                           s0.loss, s0.fvu, s0.l0, 100 * s0.dead_fraction);
    }
    world->all_reduce_sum(unit_stats, "gathering the statistics of step " + std::to_string(step + 1));
    if (rank == 0) {
      auto st = unit_stats.accessor<double, 2>();
      // With several coders the bar shows them all at once: the spread of FVU and L0, the worst dead share.
      if (n_units > 1) status = all_coders_status(unit_stats);
      for (int64_t u = 0; u < n_units; ++u) {
        metrics << json{{"step", step + 1}, {"hook", layout.key_of_unit(u)}, {"sae", layout.spec_of_unit(u).folder_name()},
                        {"loss", st[u][0]}, {"mse", st[u][1]}, {"fvu", st[u][2]}, {"l0", st[u][3]},
                        {"dead_fraction", st[u][4]}}
                       .dump()
                << "\n";
      }
    }
    ++step;
    fault_point("train_step", step);
    if (bar) bar->update(step, status);
    if (step % options.checkpoint_every == 0 || step == stop_at) {
      if (rank == 0) metrics.flush();
      save_run_checkpoint(ckpt, config_text, step, groups, layout, *world, stream);
      last_checkpoint = step;
    }
  }
  if (bar) bar->finish();
  if (rank == 0 && step == to.steps && step > result.resumed_from) {
    // Every coder at the end, not only the one the bar showed: its last batch's statistics.
    std::printf("%-56s %8s %7s %6s\n", "coder (last batch)", "L0", "FVU", "dead%");
    auto st = unit_stats.accessor<double, 2>();
    for (int64_t u = 0; u < n_units; ++u) {
      const std::string name = layout.key_of_unit(u) + "/" + layout.spec_of_unit(u).folder_name();
      std::printf("%-56s %8.1f %7.3f %6.1f\n", name.c_str(), st[u][3], st[u][2], 100 * st[u][4]);
    }
    std::fflush(stdout);
  }
  result.steps_done = step;
  if (step < to.steps) {
    result.sae_dirs.clear();
    return result;
  }

  // The last checkpoint is written: Adam's moments and the shuffle buffers are no longer needed,
  // and at GPT-3 width they are the memory the folded copies below need.
  for (auto& g : groups) {
    g.trainer->release_optimizers();
    g.batches.reset();
  }
  run_together(*world, "writing the SAE folders", [&] {
    if (!leader) return;
    for (auto& g : groups) {
      const StoreManifest& m = g.manifest;
      // BatchTopK thresholds from the final weights: exactly k active latents per row on average
      // over the calibration rows (the running average of training lags the weights).
      const auto& saes = g.trainer->saes();
      if (std::any_of(saes.begin(), saes.end(), [](const auto& t) { return uses_batch_topk(t.spec.config.architecture); })) {
        g.trainer->calibrate_thresholds(first_rows(g));
      }
      for (size_t i = 0; i < g.trainer->saes().size(); ++i) {
        SaeMetadata meta;
        meta.model_name = m.model_name;
        meta.hook_name = m.hook;
        meta.hook_name_out = g.target;
        meta.context_size = m.context_length;
        meta.prepend_bos = true;
        meta.model_sha256 = m.model_sha256;
        meta.density_tokens = g.counted;
        const torch::Tensor density =
            (g.fired[static_cast<int64_t>(i)].narrow(0, 0, g.trainer->saes()[i].spec.config.d_sae) / std::max<int64_t>(1, g.counted))
                .clamp_min(1e-10)
                .log10()
                .to(torch::kFloat32);
        save_sae(result.sae_dirs[static_cast<size_t>(g.units[i])], g.trainer->folded(i), meta, density);
      }
    }
  });
  if (rank == 0) {
    run_record["complete"] = true;
    run_record["sae_dirs"] = result.sae_dirs;
    write_file_atomic(run_path, run_record.dump(2) + "\n");
  }
  world->barrier("finishing the run");
  result.complete = true;
  return result;
}

}  // namespace saelab
