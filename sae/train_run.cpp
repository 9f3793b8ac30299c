#include "sae/train_run.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "core/activation_store.h"
#include "core/distributed.h"
#include "core/fault.h"
#include "core/files.h"
#include "core/json_options.h"
#include "core/options.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "sae/sae_io.h"

namespace saelab {

namespace {

using nlohmann::json;

// One hook of the run as this process trains it: its store, batches and trainer, over this
// process's SAEs of the hook (all of them in one process).
struct HookGroup {
  std::string hook;            // the input hook
  std::string target;          // the hook a transcoder predicts; empty for SAEs
  std::string key;             // folder and name in the metrics: coder_group_name(hook, target)
  int64_t hook_index = 0;      // position among the run's groups
  int64_t input_slot = 0, target_slot = 0;  // the stream's hook positions of input and target
  std::vector<int64_t> units;  // global unit index (group-major over the run's coders) of each trainer SAE
  StoreManifest manifest;                // the store's, or the stream's description of it
  StoreManifest target_manifest;         // the target's (transcoders)
  std::unique_ptr<ActivationStore> store;  // null when streaming
  std::unique_ptr<ActivationStore> target_store;
  std::unique_ptr<ShuffledBatches> batches;  // input and target in lockstep
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

std::string archive_bytes(torch::serialize::OutputArchive& archive) {
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

torch::Tensor bytes_tensor(const std::string& bytes) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  if (!bytes.empty()) std::memcpy(t.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  return t;
}

// This process's SAEs, one archive each under "unit<u>" (u the global unit index): only the
// replica that leads its group sends them.
std::string pack_units(const std::vector<HookGroup>& groups) {
  torch::serialize::OutputArchive pack;
  for (const auto& g : groups) {
    for (size_t i = 0; i < g.units.size(); ++i) {
      torch::serialize::OutputArchive one;
      g.trainer->save_sae_state(i, one);
      one.write("fired", g.fired[static_cast<int64_t>(i)].clone());
      one.write("counted", torch::tensor(g.counted));
      pack.write("unit" + std::to_string(g.units[i]), bytes_tensor(archive_bytes(one)));
    }
  }
  return archive_bytes(pack);
}

// The checkpoint holds every SAE of the run apart ("unit<u>"), so it does not depend on how many
// processes wrote it or read it. Every process sends its SAEs to rank 0, which writes the file.
void save_run_checkpoint(const fs::path& path, const std::string& config, int64_t step,
                         const std::vector<HookGroup>& groups, bool leader, Communicator& world,
                         const std::vector<std::vector<int64_t>>& units_of_rank, const ActivationStream* stream) {
  const std::vector<std::string> packs =
      world.gather_bytes(leader ? pack_units(groups) : std::string(), 0, "sending the checkpoint of step " + std::to_string(step));
  if (world.rank() == 0) {
    torch::serialize::OutputArchive archive;
    archive.write("config", c10::IValue(config));
    archive.write("step", torch::tensor(step));
    if (stream) stream->save(archive);
    for (size_t r = 0; r < packs.size(); ++r) {
      if (units_of_rank[r].empty()) continue;
      torch::serialize::InputArchive pack;
      pack.load_from(packs[r].data(), packs[r].size());
      for (int64_t u : units_of_rank[r]) {
        torch::Tensor blob;
        pack.read("unit" + std::to_string(u), blob);
        archive.write("unit" + std::to_string(u), blob);
      }
    }
    write_atomic_stream(path, [&](const ByteSink& sink) { archive.save_to(sink); });
  }
  world.barrier("writing the checkpoint of step " + std::to_string(step));
}

int64_t load_run_checkpoint(const fs::path& path, const std::string& config, std::vector<HookGroup>& groups,
                            ActivationStream* stream) {
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
  if (stream) stream->load(archive, path.string());
  for (auto& g : groups) {
    for (size_t i = 0; i < g.units.size(); ++i) {
      torch::Tensor blob;
      try {
        archive.read("unit" + std::to_string(g.units[i]), blob);
      } catch (const c10::Error&) {
        TORCH_CHECK(false, "checkpoint '", path.string(), "' has no state for SAE ", g.units[i], " (", g.key, "/",
                    g.trainer->saes()[i].spec.name, "); delete it to start over");
      }
      torch::serialize::InputArchive one;
      one.load_from(reinterpret_cast<const char*>(blob.data_ptr<uint8_t>()), static_cast<size_t>(blob.numel()));
      g.trainer->load_sae_state(i, one, path.string());
      torch::Tensor fired, counted;
      one.read("fired", fired);
      one.read("counted", counted);
      g.fired[static_cast<int64_t>(i)].copy_(fired);
      g.counted = counted.item<int64_t>();
    }
  }
  return step.item<int64_t>();
}

}  // namespace

std::string SaeRunSpec::folder_name() const {
  if (!name.empty()) return name;
  std::ostringstream s;
  if (uses_k(parse_architecture(architecture))) {
    s << architecture << "-k" << k;
  } else {
    s << architecture << "-l1_" << l1;
  }
  if (skip) s << "-skip";
  return s.str();
}

std::string coder_group_name(const std::string& hook, const std::string& target) {
  return target.empty() || target == hook ? hook : hook + "__" + target;
}

std::string SaeRunOptions::target_of(size_t i) const {
  if (targets.empty()) return "";
  const std::string& t = targets.at(i);
  return t == hooks.at(i) ? std::string() : t;
}

double SaeRunSpec::bandwidth() const {
  return jumprelu_bandwidth > 0 ? jumprelu_bandwidth : default_jumprelu_bandwidth(parse_jumprelu_sparsity(jumprelu_sparsity));
}

SaeConfig SaeRunSpec::config(int64_t d_in, int64_t d_out) const {
  SaeConfig c;
  c.architecture = parse_architecture(architecture);
  c.d_in = d_in;
  TORCH_CHECK(d_out > 0 || !skip, "SAE '", folder_name(), "': skip is for transcoders (give --targets); an SAE's skip "
              "path would learn the identity");
  if (d_out > 0) {
    c.d_out = d_out;
    c.apply_b_dec_to_input = false;
    c.skip = skip;
  }
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
  std::set<std::string> names, transcoder_names;
  std::vector<std::pair<const SaeRunSpec*, std::set<std::string>*>> all;
  for (const auto& s : saes) all.emplace_back(&s, &names);
  for (const auto& s : transcoders) all.emplace_back(&s, &transcoder_names);
  for (const auto& [sp, seen] : all) {
    const SaeRunSpec& s = *sp;
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
    TORCH_CHECK(seen->insert(s.folder_name()).second, "two SAEs are named '", s.folder_name(), "'; give them distinct names");
  }
  TORCH_CHECK(init_rows > 0, "init_rows must be positive (got ", init_rows, ")");
  TORCH_CHECK(buffer_shards > 0, "buffer_shards must be positive (got ", buffer_shards, ")");
  TORCH_CHECK(checkpoint_every > 0, "checkpoint_every must be positive (got ", checkpoint_every, ")");
  TORCH_CHECK(stop_after >= 0, "stop_after must be >= 0 (got ", stop_after, ")");
  TORCH_CHECK(data_parallel >= 1 && data_parallel <= (1 << 20), "data_parallel must be >= 1 (got ", data_parallel, ")");
  TORCH_CHECK(targets.empty() || !hooks.empty(), "targets pairs each of hooks with the hook it predicts: give hooks too");
  TORCH_CHECK(targets.empty() || targets.size() == hooks.size(), "targets names the hook each of hooks predicts: give ",
              hooks.size(), " (got ", targets.size(), ")");
  std::set<std::string> groups;
  for (size_t i = 0; i < hooks.size(); ++i) {
    const std::string key = coder_group_name(hooks[i], target_of(i));
    TORCH_CHECK(groups.insert(key).second, "hook '", key, "' is listed twice");
  }
}

json SaeRunOptions::to_json() const {
  json j = options_json(*this);
  j["format_version"] = 2;  // 2: the checkpoint keeps each SAE apart
  for (size_t i = 0; i < saes.size(); ++i) j["saes"][i]["name"] = saes[i].folder_name();
  for (size_t i = 0; i < transcoders.size(); ++i) j["transcoders"][i]["name"] = transcoders[i].folder_name();
  return j;
}

std::vector<SaeRunSpec> SaeGridOptions::specs() const {
  std::vector<SaeRunSpec> out;
  for (const auto& arch : architectures) {
    SaeRunSpec base;
    base.architecture = arch;
    base.expansion = expansion;
    base.skip = skip;
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
  if (config.contains("transcoders")) {
    const json& t = config.at("transcoders");
    TORCH_CHECK(t.is_array(), where, ": 'transcoders' must be an array of objects");
    for (size_t i = 0; i < t.size(); ++i) {
      if (!t[i].contains("expansion")) o.transcoders[i].expansion = grid.expansion;
    }
  }
}

SaeRunResult run_sae_training(const SaeRunOptions& options, ActivationStream* stream) {
  options.validate();
  const SaeTrainOptions& to = options.train;
  // The run's coder groups: an input hook each, and the hook its transcoders predict ("" for SAEs).
  std::vector<std::string> hooks, targets;
  if (!options.hooks.empty()) {
    hooks = options.hooks;
    for (size_t i = 0; i < hooks.size(); ++i) targets.push_back(options.target_of(i));
  } else {
    TORCH_CHECK(options.targets.empty(), "targets pairs each of hooks with the hook it predicts: give hooks too");
    if (stream) {
      for (const auto& m : stream->manifests()) hooks.push_back(m.hook);
    } else {
      hooks = hooks_of(options);
    }
    targets.assign(hooks.size(), "");
  }
  std::vector<std::string> keys;  // folder of each group
  for (size_t h = 0; h < hooks.size(); ++h) keys.push_back(coder_group_name(hooks[h], targets[h]));
  // The stream's position of a hook.
  auto stream_slot = [&](const std::string& hook) {
    const auto& ms = stream->manifests();
    for (size_t i = 0; i < ms.size(); ++i) {
      if (ms[i].hook == hook) return static_cast<int64_t>(i);
    }
    TORCH_CHECK(false, "hook '", hook, "' is not streamed from the model (stream --hooks and targets)");
  };
  // Each hook's store as its manifest describes it (read from the capture, or the stream's).
  auto manifest_of = [&](const std::string& hook) {
    if (stream) return stream->manifests()[static_cast<size_t>(stream_slot(hook))];
    const fs::path path = fs::path(options.store) / hook / "manifest.json";
    TORCH_CHECK(fs::exists(path), "hook '", hook, "' has no activation store in '", options.store, "' (expected ",
                path.string(), ")");
    return StoreManifest::from_json(load_json_file(path.string(), "activation manifest"), path.string());
  };
  for (const auto& key : keys) check_path_name(key, "hook '" + key + "' (a folder name of the run)");

  // The processes of a torchrun launch (one without it): data_parallel replicas per group, and
  // the run's SAEs (hook-major) split into contiguous, equal-sized parts over the groups.
  const std::shared_ptr<Communicator> world = world_communicator();
  const int world_size = world->size(), rank = world->rank();
  TORCH_CHECK(!stream || world_size == 1, "training from the model (--model) runs in one process; under torchrun (",
              world_size, " processes) capture the activations first (saelab capture) and train from the store");
  if (stream) {
    TORCH_CHECK(options.buffer_rows >= 2 * to.batch_size, "buffer_rows ", options.buffer_rows,
                " must be at least twice the batch_size (", to.batch_size, "): the buffer is refilled when half empty");
  }
  const int dp = static_cast<int>(options.data_parallel);
  TORCH_CHECK(world_size % dp == 0, "data_parallel ", dp, " must divide the number of processes (", world_size, ")");
  TORCH_CHECK(to.batch_size >= dp, "batch_size ", to.batch_size, " must be at least data_parallel (", dp,
              "): every replica takes a share of each batch's rows");
  const int n_groups = world_size / dp;
  // The run's coders ("units"), group-major: each SAE group holds options.saes, each transcoder
  // group options.transcoders (options.saes when that is empty).
  auto specs_of = [&](size_t h) -> const std::vector<SaeRunSpec>& {
    return !targets[h].empty() && !options.transcoders.empty() ? options.transcoders : options.saes;
  };
  std::vector<std::pair<size_t, size_t>> unit_ref;  // (group, spec) of each unit
  std::vector<int64_t> first_unit;                  // of each group
  for (size_t h = 0; h < hooks.size(); ++h) {
    first_unit.push_back(static_cast<int64_t>(unit_ref.size()));
    for (size_t i = 0; i < specs_of(h).size(); ++i) unit_ref.emplace_back(h, i);
  }
  auto spec_of_unit = [&](int64_t u) -> const SaeRunSpec& {
    const auto [h, i] = unit_ref[static_cast<size_t>(u)];
    return specs_of(h)[i];
  };
  auto key_of_unit = [&](int64_t u) -> const std::string& { return keys[unit_ref[static_cast<size_t>(u)].first]; };
  const int64_t n_units = static_cast<int64_t>(unit_ref.size());
  TORCH_CHECK(n_groups <= n_units, world_size, " processes with data_parallel ", dp, " make ", n_groups,
              " module groups, but the run has only ", n_units, " coders (over ", hooks.size(),
              " hooks); raise data_parallel or use fewer processes");
  auto group_of_unit = [&](int64_t u) { return static_cast<int>(u * n_groups / n_units); };
  const int my_group = rank / dp, replica = rank % dp;
  const bool leader = replica == 0;  // writes the group's SAEs and reports their statistics
  std::vector<std::vector<int64_t>> units_of_rank(static_cast<size_t>(world_size));
  for (int64_t u = 0; u < n_units; ++u) units_of_rank[static_cast<size_t>(group_of_unit(u) * dp)].push_back(u);
  const std::shared_ptr<Communicator> replicas = world->split(my_group, "replicas");

  std::optional<RunLock> lock;
  std::vector<HookGroup> groups;
  json fingerprint = json::array();
  run_together(*world, "opening the run", [&] {
    if (rank == 0) lock.emplace(RunLock::folder(options.out, "training folder"));
    // Refuse at once what memory cannot hold: float32 weights and two Adam moments of encoder and
    // decoder, their dense gradients where the code is not sparse (topk, batchtopk and matryoshka
    // keep them factored: sae/sparse_grad.h; data-parallel replicas sum dense ones), and about six
    // [batch, d_sae] step tensors of the widest SAE (the SAEs step one after the other). The
    // folded copies at save reuse the Adam moments' memory (released first). Counted for this
    // process's SAEs.
    double need = 0, step_tensors = 0;
    int64_t mine = 0;
    std::vector<StoreManifest> manifests, target_manifests;
    for (size_t h = 0; h < hooks.size(); ++h) {
      manifests.push_back(manifest_of(hooks[h]));
      target_manifests.push_back(targets[h].empty() ? manifests.back() : manifest_of(targets[h]));
      const StoreManifest &in = manifests.back(), &out = target_manifests.back();
      TORCH_CHECK(in.model_sha256 == out.model_sha256 && in.rows == out.rows, "hooks '", hooks[h], "' and '", targets[h],
                  "' are not from one capture (model or rows differ); capture both in one pass");
    }
    for (size_t h = 0; h < hooks.size(); ++h) {
      const double d = 0.5 * static_cast<double>(manifests[h].d + target_manifests[h].d);
      for (size_t i = 0; i < specs_of(h).size(); ++i) {
        if (group_of_unit(first_unit[h] + static_cast<int64_t>(i)) != my_group) continue;
        const SaeRunSpec& rs = specs_of(h)[i];
        const double d_sae = static_cast<double>(rs.expansion) * d;
        const double copies = uses_k(parse_architecture(rs.architecture)) && dp == 1 ? 6.0 : 8.0;
        need += 4.0 * d_sae * copies * d;
        step_tensors = std::max(step_tensors, 4.0 * d_sae * 6.0 * static_cast<double>(to.batch_size / dp + 1));
        ++mine;
      }
    }
    need += step_tensors;
    if (stream) need += 4.0 * static_cast<double>(options.buffer_rows) * static_cast<double>(hooks.size()) * 1.5 *
                        static_cast<double>(manifests.front().d);  // the shuffle buffer while refilled
    require_memory(need, "training " + std::to_string(mine) + " SAEs (their expansion and the batch_size)");
    for (size_t h = 0; h < hooks.size(); ++h) {
      const std::string& hook = hooks[h];
      const fs::path dir = fs::path(options.store) / hook;
      // Every process fingerprints every hook (the run's identity), but opens stores only for its own.
      const StoreManifest& m = manifests[h];
      json print = {{"hook", hook}, {"model_sha256", m.model_sha256}, {"rows", m.rows}, {"d", m.d}};
      if (!targets[h].empty()) print["target"] = {{"hook", targets[h]}, {"d", target_manifests[h].d}};
      fingerprint.push_back(print);
      HookGroup g;
      g.hook = hook;
      g.target = targets[h];
      g.key = keys[h];
      g.hook_index = static_cast<int64_t>(h);
      if (stream) {
        g.input_slot = stream_slot(hook);
        g.target_slot = g.target.empty() ? g.input_slot : stream_slot(g.target);
      }
      std::vector<SaeSpec> specs;
      for (size_t i = 0; i < specs_of(h).size(); ++i) {
        const int64_t u = first_unit[h] + static_cast<int64_t>(i);
        const SaeRunSpec& rs = specs_of(h)[i];
        SaeSpec s;
        s.name = rs.folder_name();
        s.config = rs.config(m.d, g.target.empty() ? 0 : target_manifests[h].d);  // validated against these widths
        s.l1_coefficient = rs.l1;
        s.seed_index = static_cast<int64_t>(i);  // the same initialisation whichever process trains it
        if (group_of_unit(u) != my_group) continue;
        specs.push_back(s);
        g.units.push_back(u);
      }
      if (specs.empty()) continue;
      g.manifest = m;
      g.target_manifest = target_manifests[h];
      if (!stream) {
        g.store = std::make_unique<ActivationStore>(ActivationStore::open(dir.string()));
        std::vector<const ActivationStore*> read = {g.store.get()};
        if (!g.target.empty()) {
          g.target_store = std::make_unique<ActivationStore>(ActivationStore::open((fs::path(options.store) / g.target).string()));
          read.push_back(g.target_store.get());
        }
        g.batches = std::make_unique<ShuffledBatches>(read, to.batch_size, options.buffer_shards,
                                                      static_cast<uint64_t>(options.seed));
      }
      g.trainer = std::make_unique<SaeTrainer>(specs, to, static_cast<uint64_t>(options.seed));
      g.trainer->set_replicas(replicas);
      int64_t widest = 0;  // SAEs of a group may differ in expansion: row i uses its first d_sae entries
      for (const auto& sp : specs) widest = std::max(widest, sp.config.d_sae);
      g.fired = torch::zeros({static_cast<int64_t>(specs.size()), widest}, torch::kFloat64);
      groups.push_back(std::move(g));
    }
  });
  // Density over the last 20% of the steps (at least one): the features' settled behaviour.
  const int64_t count_from = to.steps - std::max<int64_t>(1, to.steps / 5);
  json run = options.to_json();
  run["activations"] = fingerprint;
  if (stream) run["stream"] = stream->fingerprint();
  const std::string config_text = run.dump();
  // How the run was launched: provenance only (a resume may use another number of processes).
  json launch = {{"world_size", world_size}, {"data_parallel", dp}, {"module_groups", json::array()}};
  for (int gi = 0; gi < n_groups; ++gi) {
    json ranks = json::array(), saes = json::array();
    for (int r = gi * dp; r < (gi + 1) * dp; ++r) ranks.push_back(r);
    for (int64_t u : units_of_rank[static_cast<size_t>(gi * dp)]) {
      saes.push_back(key_of_unit(u) + "/" + spec_of_unit(u).folder_name());
    }
    launch["module_groups"].push_back({{"ranks", ranks}, {"saes", saes}});
  }
  json run_record = run;
  run_record["launch"] = launch;

  const fs::path ckpt = fs::path(options.out) / "checkpoint.pt";
  const fs::path metrics_path = fs::path(options.out) / "metrics.jsonl";
  const fs::path run_path = fs::path(options.out) / "run.json";
  SaeRunResult result;
  for (int64_t u = 0; u < n_units; ++u) {
    result.sae_dirs.push_back((fs::path(options.out) / key_of_unit(u) / spec_of_unit(u).folder_name())
                                  .string());
  }
  // The rows that initialise the SAEs and calibrate BatchTopK thresholds: the first init_rows.
  std::vector<torch::Tensor> stream_rows;
  auto first_rows = [&](const HookGroup& g, bool target = false) {
    if (target && g.target.empty()) return torch::Tensor();
    if (!stream) {
      const ActivationStore& store = target ? *g.target_store : *g.store;
      return store.rows(0, std::min(options.init_rows, store.rows()));
    }
    if (stream_rows.empty()) stream_rows = stream->first_rows(std::min(options.init_rows, stream->manifests().front().target_rows));
    return stream_rows[static_cast<size_t>(target ? g.target_slot : g.input_slot)];
  };
  int64_t step = 0;
  run_together(*world, "starting the run", [&] {
    if (rank == 0) fs::create_directories(options.out);
    if (fs::exists(ckpt)) {
      step = load_run_checkpoint(ckpt, config_text, groups, stream);
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
      for (auto& g : groups) g.trainer->initialize(first_rows(g), first_rows(g, true));
      if (rank == 0) fs::remove(metrics_path);
    }
    if (rank == 0) write_file_atomic(run_path, run_record.dump(2) + "\n");
  });
  result.resumed_from = step;

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
      torch::Tensor batch, target;
      if (stream) {
        batch = streamed[static_cast<size_t>(g.input_slot)];
        if (!g.target.empty()) target = streamed[static_cast<size_t>(g.target_slot)];
      } else {
        std::vector<torch::Tensor> both = g.batches->next_all();
        batch = both[0];
        if (!g.target.empty()) target = both[1];
      }
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
      for (int64_t u = 0; u < n_units; ++u) {
        metrics << json{{"step", step + 1}, {"hook", key_of_unit(u)}, {"sae", spec_of_unit(u).folder_name()},
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
      save_run_checkpoint(ckpt, config_text, step, groups, leader, *world, units_of_rank, stream);
      last_checkpoint = step;
    }
  }
  if (bar) bar->finish();
  result.steps_done = step;
  if (step < to.steps) {
    result.sae_dirs.clear();
    return result;
  }

  // The last checkpoint is written: Adam's moments are no longer needed, and at GPT-3 width they
  // are the memory the folded copies below need.
  for (auto& g : groups) g.trainer->release_optimizers();
  run_together(*world, "writing the SAE folders", [&] {
    if (!leader) return;
    for (auto& g : groups) {
      const StoreManifest& m = g.manifest;
      // BatchTopK thresholds from the final weights: exactly k active latents per row on average
      // over the calibration rows (the running average of training lags the weights).
      g.trainer->calibrate_thresholds(first_rows(g));
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
