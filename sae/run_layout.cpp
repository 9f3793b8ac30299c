// Who trains what in a run, and this process's groups opened for training (sae/run_parts.h).
#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "core/files.h"
#include "core/runtime.h"
#include "sae/run_parts.h"

namespace saelab {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Every hook of a capture folder with a store, sorted.
std::vector<std::string> hooks_of(const SaeRunOptions& o) {
  TORCH_CHECK(fs::is_directory(o.store), "capture folder '", o.store, "' does not exist (saelab capture --out)");
  std::vector<std::string> hooks;
  for (const auto& e : fs::directory_iterator(o.store)) {
    if (fs::exists(e.path() / "manifest.json")) hooks.push_back(e.path().filename().string());
  }
  std::sort(hooks.begin(), hooks.end());
  TORCH_CHECK(!hooks.empty(), "capture folder '", o.store, "' holds no activation stores");
  return hooks;
}

// The stream's position of a hook.
int64_t stream_slot(const ActivationStream& stream, const std::string& hook) {
  const auto& ms = stream.manifests();
  for (size_t i = 0; i < ms.size(); ++i) {
    if (ms[i].hook == hook) return static_cast<int64_t>(i);
  }
  TORCH_CHECK(false, "hook '", hook, "' is not streamed from the model (stream --hooks and targets)");
}

// A hook's store as its manifest describes it (read from the capture, or the stream's).
StoreManifest manifest_of(const SaeRunOptions& options, const ActivationStream* stream, const std::string& hook) {
  if (stream) return stream->manifests()[static_cast<size_t>(stream_slot(*stream, hook))];
  const fs::path path = fs::path(options.store) / hook / "manifest.json";
  TORCH_CHECK(fs::exists(path), "hook '", hook, "' has no activation store in '", options.store, "' (expected ",
              path.string(), ")");
  StoreManifest m = StoreManifest::from_json(load_json_file(path.string(), "activation manifest"), path.string());
  TORCH_CHECK(m.hook == hook, "the store folder '", (fs::path(options.store) / hook).string(),
              "' holds activations of hook '", m.hook, "' (", path.string(),
              "): a folder replaced by another hook's capture; capture '", hook, "' again, or name '", m.hook, "'");
  return m;
}

}  // namespace

const std::vector<SaeRunSpec>& RunLayout::specs_of(size_t h) const {
  return !targets[h].empty() && !options->transcoders.empty() ? options->transcoders : options->saes;
}

const SaeRunSpec& RunLayout::spec_of_unit(int64_t u) const {
  const auto [h, i] = unit_ref[static_cast<size_t>(u)];
  return specs_of(h)[i];
}

std::string RunLayout::unit_dir(int64_t u) const {
  return (fs::path(options->out) / key_of_unit(u) / spec_of_unit(u).folder_name()).string();
}

json RunLayout::launch() const {
  json out = {{"world_size", world_size}, {"data_parallel", dp}, {"module_groups", json::array()}};
  for (int gi = 0; gi < n_groups; ++gi) {
    json ranks = json::array(), saes = json::array();
    for (int r = gi * dp; r < (gi + 1) * dp; ++r) ranks.push_back(r);
    for (int64_t u : units_of_rank[static_cast<size_t>(gi * dp)]) saes.push_back(key_of_unit(u) + "/" + spec_of_unit(u).folder_name());
    out["module_groups"].push_back({{"ranks", ranks}, {"saes", saes}});
  }
  return out;
}

RunLayout plan_run_layout(const SaeRunOptions& options, const ActivationStream* stream, int world_size, int rank) {
  RunLayout l;
  l.options = &options;
  const SaeTrainOptions& to = options.train;
  // The run's coder groups: an input hook each, and the hook its transcoders predict ("" for SAEs).
  if (!options.hooks.empty()) {
    l.hooks = options.hooks;
    for (size_t i = 0; i < l.hooks.size(); ++i) l.targets.push_back(options.target_of(i));
  } else {
    TORCH_CHECK(options.targets.empty(), "targets pairs each of hooks with the hook it predicts: give hooks too");
    if (stream) {
      for (const auto& m : stream->manifests()) l.hooks.push_back(m.hook);
    } else {
      l.hooks = hooks_of(options);
    }
    l.targets.assign(l.hooks.size(), "");
  }
  for (size_t h = 0; h < l.hooks.size(); ++h) l.keys.push_back(coder_group_name(l.hooks[h], l.targets[h]));
  for (const auto& key : l.keys) check_path_name(key, "hook '" + key + "' (a folder name of the run)");

  // The processes of a torchrun launch (one without it): data_parallel replicas per group, and
  // the run's coders (group-major) split into contiguous, equal-sized parts over the groups.
  l.world_size = world_size;
  l.rank = rank;
  TORCH_CHECK(!stream || world_size == 1, "training from the model (--model) runs in one process; under torchrun (",
              world_size, " processes) capture the activations first (saelab capture) and train from the store");
  if (stream) {
    TORCH_CHECK(options.buffer_rows >= 2 * to.batch_size, "buffer_rows ", options.buffer_rows,
                " must be at least twice the batch_size (", to.batch_size, "): the buffer is refilled when half empty");
  }
  l.dp = static_cast<int>(options.data_parallel);
  TORCH_CHECK(world_size % l.dp == 0, "data_parallel ", l.dp, " must divide the number of processes (", world_size, ")");
  TORCH_CHECK(to.batch_size >= l.dp, "batch_size ", to.batch_size, " must be at least data_parallel (", l.dp,
              "): every replica takes a share of each batch's rows");
  l.n_groups = world_size / l.dp;
  for (size_t h = 0; h < l.hooks.size(); ++h) {
    l.first_unit.push_back(l.n_units());
    for (size_t i = 0; i < l.specs_of(h).size(); ++i) l.unit_ref.emplace_back(h, i);
  }
  TORCH_CHECK(l.n_groups <= l.n_units(), world_size, " processes with data_parallel ", l.dp, " make ", l.n_groups,
              " module groups, but the run has only ", l.n_units(), " coders (over ", l.hooks.size(),
              " hooks); raise data_parallel or use fewer processes");
  l.my_group = rank / l.dp;
  l.replica = rank % l.dp;
  l.units_of_rank.resize(static_cast<size_t>(world_size));
  for (int64_t u = 0; u < l.n_units(); ++u) l.units_of_rank[static_cast<size_t>(l.group_of_unit(u) * l.dp)].push_back(u);
  return l;
}

// What the run reads from its stores, said before it starts: rows a hook, and how many times each
// stored row is read (a warning above once, which a held-out FVU far above the training one would
// otherwise be the first sign of); init_rows past the smallest store is refused.
void check_store_plan(const RunLayout& l, const std::vector<StoreManifest>& manifests) {
  const SaeRunOptions& options = *l.options;
  int64_t rows = 0;
  std::string smallest;
  for (size_t h = 0; h < manifests.size(); ++h) {
    if (smallest.empty() || manifests[h].rows < rows) {
      rows = manifests[h].rows;
      smallest = l.hooks[h];
    }
  }
  if (smallest.empty()) return;
  TORCH_CHECK(rows > 0, "the store at '", smallest, "' holds no rows");
  TORCH_CHECK(options.init_rows <= rows, "init_rows ", options.init_rows, " is more than the ", rows,
              " rows of the store at '", smallest, "': lower init_rows (0: ", kDefaultInitRows,
              " or the whole store when smaller) or capture more tokens");
  if (l.rank != 0) return;
  const int64_t wanted = options.train.steps * options.train.batch_size;
  const double passes = static_cast<double>(wanted) / static_cast<double>(rows);
  std::printf("plan: %lld coders on %zu hook(s); %lld steps x %lld rows = %lld rows a hook, from stores of %lld rows: "
              "%.2f passes\n", static_cast<long long>(l.n_units()), manifests.size(), static_cast<long long>(options.train.steps),
              static_cast<long long>(options.train.batch_size), static_cast<long long>(wanted), static_cast<long long>(rows),
              passes);
  if (passes > 1.0) {
    std::printf("warning: each stored row is read about %.1f times, so training FVU will look better than held-out "
                "FVU; for fresh rows capture more (saelab capture --tokens %lld) or stream from the model (saelab "
                "train --model)\n", passes, static_cast<long long>(wanted));
  }
  std::fflush(stdout);
}

std::vector<HookGroup> open_hook_groups(const RunLayout& l, ActivationStream* stream,
                                        const std::shared_ptr<Communicator>& replicas, json& fingerprint) {
  const SaeRunOptions& options = *l.options;
  const SaeTrainOptions& to = options.train;
  std::vector<StoreManifest> manifests, target_manifests;
  for (size_t h = 0; h < l.hooks.size(); ++h) {
    manifests.push_back(manifest_of(options, stream, l.hooks[h]));
    target_manifests.push_back(l.targets[h].empty() ? manifests.back() : manifest_of(options, stream, l.targets[h]));
    const StoreManifest &in = manifests.back(), &out = target_manifests.back();
    TORCH_CHECK(in.model_sha256 == out.model_sha256 && in.rows == out.rows, "hooks '", l.hooks[h], "' and '",
                l.targets[h], "' are not from one capture (model or rows differ); capture both in one pass");
  }
  if (!stream) check_store_plan(l, manifests);
  std::vector<HookGroup> groups;
  for (size_t h = 0; h < l.hooks.size(); ++h) {
    const std::string& hook = l.hooks[h];
    // Every process fingerprints every group (the run's identity), but opens stores only for its own.
    const StoreManifest& m = manifests[h];
    // norm_sum (a float64 sum of the rows' norms) tells one capture's rows from another's of the
    // same shape: a resume on replaced activations is refused.
    json print = {{"hook", hook}, {"model_sha256", m.model_sha256}, {"rows", m.rows}, {"d", m.d}};
    if (!stream) print["norm_sum"] = m.norm_sum;
    if (!l.targets[h].empty()) {
      print["target"] = {{"hook", l.targets[h]}, {"d", target_manifests[h].d}};
      if (!stream) print["target"]["norm_sum"] = target_manifests[h].norm_sum;
    }
    fingerprint.push_back(print);
    HookGroup g;
    g.hook = hook;
    g.target = l.targets[h];
    g.key = l.keys[h];
    g.hook_index = static_cast<int64_t>(h);
    if (stream) {
      g.input_slot = stream_slot(*stream, hook);
      g.target_slot = g.target.empty() ? g.input_slot : stream_slot(*stream, g.target);
    }
    std::vector<SaeSpec> specs;
    for (size_t i = 0; i < l.specs_of(h).size(); ++i) {
      const int64_t u = l.first_unit[h] + static_cast<int64_t>(i);
      const SaeRunSpec& rs = l.specs_of(h)[i];
      SaeSpec s;
      s.name = rs.folder_name();
      s.config = rs.config(m.d, g.target.empty() ? 0 : target_manifests[h].d);  // validated against these widths
      s.l1_coefficient = rs.l1;
      s.seed_index = static_cast<int64_t>(i);  // the same initialisation whichever process trains it
      if (l.group_of_unit(u) != l.my_group) continue;
      specs.push_back(s);
      g.units.push_back(u);
    }
    if (specs.empty()) continue;
    g.manifest = m;
    g.target_manifest = target_manifests[h];
    if (!stream) {
      g.store = std::make_unique<ActivationStore>(ActivationStore::open((fs::path(options.store) / hook).string()));
      std::vector<const ActivationStore*> read = {g.store.get()};
      if (!g.target.empty()) {
        g.target_store = std::make_unique<ActivationStore>(ActivationStore::open((fs::path(options.store) / g.target).string()));
        read.push_back(g.target_store.get());
      }
      g.batches = std::make_unique<ShuffledBatches>(read, to.batch_size, options.buffer_shards,
                                                    static_cast<uint64_t>(options.seed), options.buffer_gb * 1e9);
    }
    g.specs = std::move(specs);
    groups.push_back(std::move(g));
  }
  // Refuse at once what memory cannot hold, before the coders are allocated.
  const RunMemory memory = estimate_run_memory(l, groups, stream);
  const int64_t n = memory.coders_counted;
  require_memory(memory.total(), "training " + std::to_string(n) + (n == 1 ? " coder (" : " coders (") + memory.summary() +
                                     "; lower the expansion, the batch_size or buffer_gb, or spread the coders over processes)");
  if (l.rank == 0) {
    std::printf("memory: about %.2f GB (%s)\n", memory.total() / 1e9, memory.summary().c_str());
    std::fflush(stdout);
  }
  for (auto& g : groups) {
    g.trainer = std::make_unique<SaeTrainer>(g.specs, to, static_cast<uint64_t>(options.seed));
    g.trainer->set_replicas(replicas);
    int64_t widest = 0;  // coders of a group may differ in expansion: row i uses its first d_sae entries
    for (const auto& sp : g.specs) widest = std::max(widest, sp.config.d_sae);
    g.fired = torch::zeros({static_cast<int64_t>(g.specs.size()), widest}, torch::kFloat64);
  }
  return groups;
}

RunMemory estimate_run_memory(const RunLayout& l, const std::vector<HookGroup>& groups, const ActivationStream* stream) {
  const SaeRunOptions& options = *l.options;
  RunMemory m;
  double widest_step = 0;
  for (const auto& g : groups) {
    for (const SaeSpec& s : g.specs) {
      const SaeConfig& c = s.config;
      const double d_in = static_cast<double>(c.d_in), d_out = static_cast<double>(c.d_out > 0 ? c.d_out : c.d_in);
      const double d_sae = static_cast<double>(c.d_sae);
      const double matrices = 4.0 * d_sae * (d_in + d_out), skip = c.skip ? 4.0 * d_in * d_out : 0.0;
      m.weights += matrices + skip;
      m.largest_tensor = std::max(m.largest_tensor, 4.0 * d_sae * std::max(d_in, d_out));
      m.adam += 2.0 * (matrices + skip);
      // TopK, BatchTopK and Matryoshka keep W_enc's and W_dec's gradients factored
      // (sae/sparse_grad.h) unless replicas sum them; W_skip's is always dense.
      m.gradients += (uses_k(c.architecture) && l.dp == 1 ? 0.0 : matrices) + skip;
      widest_step = std::max(widest_step, d_sae);
      ++m.coders_counted;
    }
    if (g.batches) m.buffers += g.batches->peak_bytes();
  }
  m.resuming = fs::exists(fs::path(options.out) / "checkpoint.pt");
  m.step = 4.0 * widest_step * RunMemory::kStepTensors * static_cast<double>(options.train.batch_size / l.dp + 1);
  if (stream && !groups.empty()) {
    m.buffers += 4.0 * static_cast<double>(options.buffer_rows) * static_cast<double>(l.hooks.size()) * 1.5 *
                 static_cast<double>(groups.front().manifest.d);  // the shuffle buffer while refilled
  }
  return m;
}

double RunMemory::total() const { return std::max(steady(), while_resuming()); }

std::string RunMemory::summary() const {
  auto gb = [](double b) { return fmt::format("{:.2f}", b / 1e9); };
  std::string parts = fmt::format("GB: weights {}, Adam moments {}, dense gradients {}, step {}, shuffle buffers {}, "
                                  "process {}", gb(weights), gb(adam), gb(gradients), gb(step), gb(buffers),
                                  gb(kProcessBytes));
  if (resuming) parts += fmt::format("; {} while the checkpoint is read to resume", gb(while_resuming()));
  return parts;
}

std::pair<torch::Tensor, torch::Tensor> HookGroup::next(const std::vector<torch::Tensor>& streamed) {
  if (!batches) {
    return {streamed[static_cast<size_t>(input_slot)],
            target.empty() ? torch::Tensor() : streamed[static_cast<size_t>(target_slot)]};
  }
  std::vector<torch::Tensor> both = batches->next_all();
  return {both[0], target.empty() ? torch::Tensor() : both[1]};
}

}  // namespace saelab
