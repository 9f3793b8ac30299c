// The run's checkpoint (sae/run_parts.h): every coder of the run apart, under "unit<u>" (u its
// index among the run's coders), so it does not depend on how many processes wrote it or read it.
#include <cstring>
#include <sstream>

#include "core/files.h"
#include "core/torchscript_storages.h"
#include "sae/run_parts.h"

namespace saelab {

namespace fs = std::filesystem;

namespace {

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

// One coder's state: the trainer's (weights, Adam's moments, counters) and its firing counts.
void write_unit(const HookGroup& g, size_t i, torch::serialize::OutputArchive& one) {
  g.trainer->save_sae_state(i, one);
  one.write("fired", g.fired[static_cast<int64_t>(i)].clone());
  one.write("counted", torch::tensor(g.counted));
}

// The coders of a process other than rank 0, one archive's bytes each under "unit<u>" (u the
// global unit index): only the replica that leads its group sends them.
std::string pack_units(const std::vector<HookGroup>& groups) {
  torch::serialize::OutputArchive pack;
  for (const auto& g : groups) {
    for (size_t i = 0; i < g.units.size(); ++i) {
      torch::serialize::OutputArchive one;
      write_unit(g, i, one);
      pack.write("unit" + std::to_string(g.units[i]), bytes_tensor(archive_bytes(one)));
    }
  }
  return archive_bytes(pack);
}

}  // namespace

void save_run_checkpoint(const fs::path& path, const std::string& config, int64_t step,
                         const std::vector<HookGroup>& groups, const RunLayout& layout, Communicator& world,
                         const ActivationStream* stream) {
  const bool leader = layout.leader();
  const std::vector<std::vector<int64_t>>& units_of_rank = layout.units_of_rank;
  // Rank 0's own coders go into the archive as nested archives, so their tensors are written to
  // the file straight from the trainer's memory: no serialised copy (at GPT-3 width one coder's
  // weights and Adam moments are 14.5 GB). Other processes' coders arrive as bytes.
  const std::vector<std::string> packs =
      world.gather_bytes(leader && world.rank() != 0 ? pack_units(groups) : std::string(), 0,
                         "sending the checkpoint of step " + std::to_string(step));
  if (world.rank() == 0) {
    torch::serialize::OutputArchive archive;
    archive.write("config", c10::IValue(config));
    archive.write("step", torch::tensor(step));
    if (stream) stream->save(archive);
    for (const auto& g : groups) {
      for (size_t i = 0; i < g.units.size(); ++i) {
        torch::serialize::OutputArchive one;
        write_unit(g, i, one);
        archive.write("unit" + std::to_string(g.units[i]), one);
      }
    }
    for (size_t r = 1; r < packs.size(); ++r) {
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
  verify_torch_archive(path, "checkpoint");
  try {
    archive.load_from(path.string());
  } catch (const c10::Error&) {
    TORCH_CHECK(false, "checkpoint '", path.string(), "' is corrupt; delete it to start over");
  }
  c10::IValue saved;
  TORCH_CHECK(archive.try_read("config", saved) && saved.isString(), "checkpoint '", path.string(),
              "' is not a saelab training checkpoint (no run config in it); delete it to start over");
  if (saved.toStringRef() != config) {
    // Name what differs: the options by key, the activations by hook.
    std::string differs;
    try {
      const nlohmann::json was = nlohmann::json::parse(saved.toStringRef()), now = nlohmann::json::parse(config);
      for (const auto& [key, value] : now.items()) {
        if (key == "activations" || (was.contains(key) && was[key] == value)) continue;
        differs += (differs.empty() ? "" : ", ") + key;
      }
      const nlohmann::json &a = was.value("activations", nlohmann::json::array()), &b = now.value("activations", nlohmann::json::array());
      for (size_t i = 0; i < b.size(); ++i) {
        if (i >= a.size() || a[i] != b[i]) differs += (differs.empty() ? "" : ", ") + std::string("the activations of hook '") + b[i].value("hook", std::string("?")) + "'";
      }
    } catch (const std::exception&) {
    }
    TORCH_CHECK(false, "'", path.parent_path().string(), "' holds a training run with different options or activations",
                differs.empty() ? std::string() : " (" + differs + ")", "; use another output folder or delete it");
  }
  torch::Tensor step;
  archive.read("step", step);
  if (stream) stream->load(archive, path.string());
  for (auto& g : groups) {
    for (size_t i = 0; i < g.units.size(); ++i) {
      // Rank 0's coders are nested archives, other processes' the bytes of one.
      const std::string key = "unit" + std::to_string(g.units[i]);
      torch::serialize::InputArchive one;
      if (!archive.try_read(key, one)) {
        torch::Tensor blob;
        TORCH_CHECK(archive.try_read(key, blob) && blob.scalar_type() == torch::kUInt8 && blob.dim() == 1,
                    "checkpoint '", path.string(), "' has no state for SAE ", g.units[i], " (", g.key, "/",
                    g.trainer->saes()[i].spec.name, "); delete it to start over");
        one.load_from(reinterpret_cast<const char*>(blob.data_ptr<uint8_t>()), static_cast<size_t>(blob.numel()));
      }
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

}  // namespace saelab
