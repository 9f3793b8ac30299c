// saelab bench-dist: data-parallel SAE training steps under torchrun (JSON from rank 0). Run it at
// 1 and at 2 processes (scripts/bench-dist does both) for the scaling efficiency.
#include <chrono>

#include "apps/commands.h"
#include "apps/common.h"
#include "core/distributed.h"
#include "core/files.h"
#include "core/runtime.h"
#include "sae/trainer.h"

namespace saelab {

namespace {

struct BenchDistOptions {
  int64_t d_in = 512;
  int64_t d_sae = 16384;
  int64_t k = 32;
  int64_t batch = 4096;
  int64_t steps = 6;
  int64_t warmup = 2;

  template <class V>
  void fields(V& v) {
    v("d_in", d_in, "input width", at_least(1));
    v("d_sae", d_sae, "latents", at_least(1));
    v("k", k, "TopK's k", at_least(1));
    v("batch", batch, "global batch: rows per step over all processes", at_least(1));
    v("steps", steps, "timed steps", at_least(1));
    v("warmup", warmup, "untimed steps first", at_least(0));
  }
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

void register_bench_dist(CLI::App& app) {
  static BenchDistOptions options;
  static std::string out;
  CLI::App* cmd = app.add_subcommand("bench-dist", "data-parallel TopK training step under torchrun (time, all-reduce share)");
  static OptionFlags<BenchDistOptions> flags(cmd, &options);
  cmd->add_option("--out", out, "also write the JSON here (rank 0)");
  cmd->callback([] {
    start_command(true, true);
    flags.apply();
    const std::shared_ptr<Communicator> world = world_communicator();
    const int64_t n = world->size();
    TORCH_CHECK(options.batch >= n, "--batch ", options.batch, " must be at least the number of processes (", n, ")");
    require_memory(4.0 * static_cast<double>(options.d_sae) *
                       (8.0 * static_cast<double>(options.d_in) + 6.0 * static_cast<double>(options.batch / n + 1)),
                   "bench-dist with --d-in " + std::to_string(options.d_in) + " --d-sae " + std::to_string(options.d_sae));
    SaeSpec spec;
    spec.name = "topk";
    spec.config.architecture = Architecture::kTopK;
    spec.config.d_in = options.d_in;
    spec.config.d_sae = options.d_sae;
    spec.config.k = options.k;
    spec.config.validate();
    SaeTrainOptions to;
    to.steps = options.steps + options.warmup;
    to.batch_size = options.batch;
    to.lr_warmup_steps = 0;
    SaeTrainer trainer({spec}, to, 0);
    trainer.set_replicas(world);
    // Every process draws the same global batches and keeps its contiguous share of the rows.
    torch::Generator gen = at::detail::createCPUGenerator(1);
    const torch::Tensor sample = torch::randn({1024, options.d_in}, gen);
    trainer.initialize(sample);
    const int64_t lo = options.batch * world->rank() / n, hi = options.batch * (world->rank() + 1) / n;
    std::vector<torch::Tensor> batches;
    for (int64_t s = 0; s < to.steps; ++s) batches.push_back(torch::randn({options.batch, options.d_in}, gen).narrow(0, lo, hi - lo).contiguous());
    double step_s = 0;
    for (int64_t s = 0; s < to.steps; ++s) {
      world->barrier("the start of a step");
      const auto t = std::chrono::steady_clock::now();
      trainer.step(batches[static_cast<size_t>(s)]);
      if (s >= options.warmup) step_s += seconds_since(t);
    }
    step_s /= static_cast<double>(options.steps);
    // The all-reduce alone, on a buffer of the gradients' size (all parameters and a flag each).
    int64_t numel = 0, params = 0;
    for (const auto& [name, p] : trainer.saes()[0].sae->parameters()) {
      numel += p.numel();
      ++params;
    }
    torch::Tensor buffer = torch::ones({numel + params}, torch::kFloat32);
    double reduce_s = 0;
    for (int64_t s = 0; s < options.steps; ++s) {
      world->barrier("the start of an all-reduce");
      const auto t = std::chrono::steady_clock::now();
      world->all_reduce_sum(buffer, "the timed all-reduce");
      reduce_s += seconds_since(t);
    }
    reduce_s /= static_cast<double>(options.steps);
    // The slowest process sets the pace.
    torch::Tensor times = torch::zeros({2 * n}, torch::kFloat64);
    times[world->rank()] = step_s;
    times[n + world->rank()] = reduce_s;
    world->all_reduce_sum(times, "gathering the timings");
    if (world->rank() != 0) return;
    const double step_max = times.narrow(0, 0, n).max().item<double>();
    const double reduce_max = times.narrow(0, n, n).max().item<double>();
    const json r = {{"processes", n},
                    {"threads_per_process", torch::get_num_threads()},
                    {"d_in", options.d_in},
                    {"d_sae", options.d_sae},
                    {"k", options.k},
                    {"global_batch", options.batch},
                    {"rows_per_process", options.batch / n},
                    {"step_s", step_max},
                    {"all_reduce_s", n > 1 ? reduce_max : 0.0},
                    {"all_reduce_bytes", 4 * (numel + params)},
                    {"all_reduce_share", n > 1 ? reduce_max / step_max : 0.0}};
    const std::string text = r.dump(2) + "\n";
    std::fputs(text.c_str(), stdout);
    if (!out.empty()) write_file_atomic(out, text);
  });
}

}  // namespace saelab
