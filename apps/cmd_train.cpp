// saelab train: SAEs on captured activations, many per pass (architectures x sparsity settings,
// for every hook of a capture), each batch of each hook read once for all SAEs on it.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/commands.h"
#include "apps/common.h"
#include "core/activation_store.h"
#include "core/progress.h"
#include "sae/sae_io.h"
#include "sae/trainer.h"

namespace saelab {

namespace {

namespace fs = std::filesystem;

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

template <class T>
std::vector<T> parse_numbers(const std::string& s, const char* flag) {
  std::vector<T> out;
  for (const auto& item : split_list(s)) {
    try {
      out.push_back(static_cast<T>(std::stod(item)));
    } catch (const std::exception&) {
      TORCH_CHECK(false, flag, ": '", item, "' is not a number");
    }
  }
  return out;
}

}  // namespace

void register_train(CLI::App& app) {
  struct Args {
    std::string store = "runs/acts";
    std::string hooks;  // empty: every hook of the capture
    std::string architectures = "topk";
    int64_t expansion = 8;
    std::string k = "32";
    std::string l1 = "1.0";
    std::string out = "runs/saes";
    int64_t init_rows = 8192;
    int64_t seed = 0;
  };
  static Args args;
  static SaeTrainOptions options;
  CLI::App* cmd = app.add_subcommand("train", "train SAEs on captured activations (many per pass)");
  cmd->add_option("--store", args.store, "capture folder (saelab capture --out)")->capture_default_str();
  cmd->add_option("--hooks", args.hooks, "comma-separated hook points of the capture (default: all)");
  cmd->add_option("--architectures", args.architectures, "comma list of standard, gated, topk, batchtopk, jumprelu")
      ->capture_default_str();
  cmd->add_option("--expansion", args.expansion, "d_sae = expansion x d_in")->capture_default_str();
  cmd->add_option("--k", args.k, "comma list of k for topk / batchtopk (one SAE each)")->capture_default_str();
  cmd->add_option("--l1", args.l1, "comma list of sparsity coefficients for standard / gated / jumprelu")
      ->capture_default_str();
  cmd->add_option("--out", args.out, "output folder: OUT/<hook>/<name>/ SAELens directories")->capture_default_str();
  cmd->add_option("--init-rows", args.init_rows, "rows used for the scaling factor and b_dec's geometric median")
      ->capture_default_str();
  cmd->add_option("--seed", args.seed, "seed")->capture_default_str();
  static FlagBinder<SaeTrainOptions> flags(cmd, &options);
  flags.add("--steps", &SaeTrainOptions::steps, "optimizer steps");
  flags.add("--batch-size", &SaeTrainOptions::batch_size, "rows per step");
  flags.add("--lr", &SaeTrainOptions::lr, "Adam learning rate");
  flags.add("--l1-warmup-steps", &SaeTrainOptions::l1_warmup_steps, "sparsity-coefficient warm-up steps");
  flags.add("--dead-window", &SaeTrainOptions::dead_window, "tokens without firing before a latent is dead");
  cmd->callback([] {
    start_command();
    flags.apply();
    options.validate();
    std::vector<std::string> hooks = split_list(args.hooks);
    if (hooks.empty()) {
      TORCH_CHECK(fs::is_directory(args.store), "capture folder '", args.store, "' does not exist (saelab capture --out)");
      for (const auto& e : fs::directory_iterator(args.store)) {
        if (fs::exists(e.path() / "manifest.json")) hooks.push_back(e.path().filename().string());
      }
      std::sort(hooks.begin(), hooks.end());
      TORCH_CHECK(!hooks.empty(), "capture folder '", args.store, "' holds no activation stores");
    }
    struct Group {
      std::string hook;
      std::unique_ptr<ActivationStore> store;
      std::unique_ptr<ShuffledBatches> batches;
      std::unique_ptr<SaeTrainer> trainer;
      torch::Tensor fired;  // [n_saes, d_sae] fire counts over the last 20% of the steps
      int64_t counted = 0;
    };
    std::vector<Group> groups;
    const auto ks = parse_numbers<int64_t>(args.k, "--k");
    const auto l1s = parse_numbers<double>(args.l1, "--l1");
    for (const auto& hook : hooks) {
      Group g;
      g.hook = hook;
      g.store = std::make_unique<ActivationStore>(ActivationStore::open((fs::path(args.store) / hook).string()));
      std::vector<SaeSpec> specs;
      for (const auto& arch : split_list(args.architectures)) {
        SaeSpec base;
        base.config.architecture = arch;
        base.config.d_in = g.store->d();
        base.config.d_sae = args.expansion * g.store->d();
        base.config.validate();
        if (arch == "topk" || arch == "batchtopk") {
          for (int64_t k : ks) {
            SaeSpec s = base;
            s.config.k = k;
            s.name = arch + "-k" + std::to_string(k);
            specs.push_back(s);
          }
        } else {
          for (double l1 : l1s) {
            SaeSpec s = base;
            s.l1_coefficient = l1;
            std::ostringstream name;
            name << arch << "-l1_" << l1;
            s.name = name.str();
            specs.push_back(s);
          }
        }
      }
      g.trainer = std::make_unique<SaeTrainer>(specs, options, static_cast<uint64_t>(args.seed));
      g.trainer->initialize(g.store->rows(0, std::min(args.init_rows, g.store->rows())));
      g.batches = std::make_unique<ShuffledBatches>(*g.store, options.batch_size, 4, static_cast<uint64_t>(args.seed));
      g.fired = torch::zeros({static_cast<int64_t>(specs.size()), specs.front().config.d_sae}, torch::kFloat64);
      groups.push_back(std::move(g));
    }
    fs::create_directories(args.out);
    std::ofstream metrics(fs::path(args.out) / "metrics.jsonl");
    Progress bar("train", options.steps, "step");
    const int64_t count_from = options.steps - std::max<int64_t>(1, options.steps / 5);
    for (int64_t step = 0; step < options.steps; ++step) {
      std::string status;
      for (auto& g : groups) {
        const torch::Tensor batch = g.batches->next();
        const auto stats = g.trainer->step(batch);
        if (step >= count_from) {
          for (size_t i = 0; i < stats.size(); ++i) g.fired[static_cast<int64_t>(i)] += stats[i].fire_counts.to(torch::kFloat64);
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
        status = fmt::format("{} loss {:.3f} fvu {:.3f} L0 {:.1f} dead {:.1f}%", g.trainer->saes()[0].spec.name, s0.loss,
                             s0.fvu, s0.l0, 100 * s0.dead_fraction);
      }
      bar.update(step + 1, status);
    }
    bar.finish();
    for (auto& g : groups) {
      const StoreManifest& m = g.store->manifest();
      for (size_t i = 0; i < g.trainer->saes().size(); ++i) {
        SaeMetadata meta;
        meta.model_name = m.model_name;
        meta.hook_name = m.hook;
        meta.context_size = m.context_length;
        meta.prepend_bos = true;
        meta.model_sha256 = m.model_sha256;
        const torch::Tensor density = (g.fired[static_cast<int64_t>(i)] / std::max<int64_t>(1, g.counted)).clamp_min(1e-10).log10().to(torch::kFloat32);
        const std::string dir = (fs::path(args.out) / g.hook / g.trainer->saes()[i].spec.name).string();
        save_sae(dir, g.trainer->folded(i), meta, density);
        std::printf("wrote %s\n", dir.c_str());
      }
    }
  });
}

}  // namespace saelab
