// saelab bench: machine and model throughput, as ratios measured in one run (timings on a shared
// machine are noisy; ratios are what we compare).
#include <chrono>
#include <fstream>

#include "apps/commands.h"
#include "apps/common.h"
#include "core/files.h"
#include "core/torch_version.h"
#include "models/hooked_model.h"
#include "models/model_bundle.h"

namespace saelab {

namespace {

template <class F>
double best_seconds(int repeats, F&& f) {
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// Peak float32 FLOP/s estimate: threads x clock x FLOPs per cycle (two FMA pipes of the widest
// vector width the CPU advertises; AMD cores up to Zen 4 run AVX-512 on 256-bit pipes).
json peak_estimate(int threads) {
  std::ifstream in("/proc/cpuinfo");
  std::string line, vendor, flags;
  double mhz = 0;
  while (std::getline(in, line)) {
    auto value = [&] { return line.substr(line.find(':') + 2); };
    if (vendor.empty() && line.rfind("vendor_id", 0) == 0) vendor = value();
    if (mhz == 0 && line.rfind("cpu MHz", 0) == 0) mhz = std::stod(value());
    if (flags.empty() && line.rfind("flags", 0) == 0) flags = " " + value() + " ";
  }
  const bool avx512 = flags.find(" avx512f ") != std::string::npos;
  const bool fma = flags.find(" fma ") != std::string::npos;
  int per_cycle = fma ? 32 : 8;
  if (avx512 && vendor != "AuthenticAMD") per_cycle = 64;
  const double peak = threads * mhz * 1e6 * per_cycle;
  return {{"threads", threads}, {"clock_mhz", mhz}, {"flops_per_cycle_per_core", per_cycle},
          {"vendor", vendor}, {"avx512", avx512}, {"peak_gflops", peak / 1e9},
          {"formula", "threads x clock x FLOPs/cycle (2 FMA pipes x vector width x 2)"}};
}

// Hooked model against the plain module, measured interleaved in one run.
json bench_hooks(LanguageModel& lm, int64_t batch) {
  torch::NoGradGuard no_grad;
  const int64_t T = lm.info().context_length;
  const int64_t L = lm.info().n_layers;
  HookedModel hooked(lm.module(), lm.info().hook_aliases);
  const torch::Tensor tokens = torch::randint(0, lm.tokenizer().vocab_size(), {batch, T}, torch::kInt64);
  const std::string early = hooked.resolve("blocks.1.hook_resid_pre");
  std::vector<std::string> all_layers;
  for (int64_t i = 0; i < L; ++i) all_layers.push_back(hooked.resolve("blocks." + std::to_string(i) + ".hook_resid_pre"));
  auto plain = [&] { lm.module().forward({tokens}); };
  auto hooks_off = [&] { hooked.forward(tokens); };
  auto capture_all = [&] {
    HookScope s(hooked);
    for (const auto& p : all_layers) s.capture(p);
    s.stop_after_last_hook();
    hooked.forward(tokens);
  };
  auto capture_early = [&] {
    HookScope s(hooked);
    s.capture(early);
    s.stop_after_last_hook();
    hooked.forward(tokens);
  };
  for (int i = 0; i < 3; ++i) {  // warm up the graph executors
    plain();
    hooks_off();
    capture_all();
    capture_early();
  }
  double t_plain = 1e30, t_off = 1e30, t_all = 1e30, t_early = 1e30;
  for (int round = 0; round < 7; ++round) {
    t_plain = std::min(t_plain, best_seconds(1, plain));
    t_off = std::min(t_off, best_seconds(1, hooks_off));
    t_all = std::min(t_all, best_seconds(1, capture_all));
    t_early = std::min(t_early, best_seconds(1, capture_early));
  }
  const double tokens_n = static_cast<double>(batch * T);
  std::printf("hooks: no hook active %.1f%% overhead vs the plain module; capturing all %lld residual streams "
              "runs at %.2fx the plain forward's speed; capturing %s with early stop costs %.2f of a full forward\n",
              100.0 * (t_off / t_plain - 1.0), static_cast<long long>(L), t_plain / t_all, early.c_str(),
              t_early / t_plain);
  return {{"plain_tokens_per_second", tokens_n / t_plain},
          {"hooks_off_tokens_per_second", tokens_n / t_off},
          {"hooks_off_overhead", t_off / t_plain - 1.0},
          {"capture_all_layers_tokens_per_second", tokens_n / t_all},
          {"capture_all_layers_speed_vs_plain", t_plain / t_all},
          {"early_stop_point", early},
          {"early_stop_cost_vs_full_forward", t_early / t_plain},
          {"timing", "best of 7 interleaved rounds after 3 warm-up rounds"}};
}

}  // namespace

void register_bench(CLI::App& app) {
  struct Args {
    std::string model = default_model_dir();
    std::string out = "runs/bench-lm.json";
    int64_t n = 1024;
    int64_t batch = 8;
  };
  static Args args;
  CLI::App* cmd = app.add_subcommand("bench", "matmul vs peak, BLAS check, model tokens/s, hook overhead, capture speed, early stop");
  cmd->add_option("--model", args.model, "model folder with model.json")->capture_default_str();
  cmd->add_option("--out", args.out, "JSON file for the figures")->capture_default_str();
  cmd->add_option("--n", args.n, "matrix size for the matmul check")->capture_default_str();
  cmd->add_option("--batch", args.batch, "contexts per forward pass")->capture_default_str();
  cmd->callback([] {
    start_command();
    torch::NoGradGuard no_grad;
    const int64_t n = args.n;
    const int threads = torch::get_num_threads();
    torch::manual_seed(0);
    const torch::Tensor a = torch::randn({n, n}), b = torch::randn({n, n});
    torch::Tensor c = torch::mm(a, b);
    const double t_blas = best_seconds(5, [&] { c = torch::mm(a, b); });
    // The naive reference: the textbook i-j-k triple loop (a dot product per output element),
    // over the same data, one thread.
    torch::Tensor naive = torch::zeros({n, n});
    const float* pa = a.data_ptr<float>();
    const float* pb = b.data_ptr<float>();
    float* pc = naive.data_ptr<float>();
    const double t_naive = best_seconds(1, [&] {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
          float sum = 0;
          for (int64_t k = 0; k < n; ++k) sum += pa[i * n + k] * pb[k * n + j];
          pc[i * n + j] = sum;
        }
    });
    const double max_diff = (naive - c).abs().max().item<double>();
    const double flops = 2.0 * static_cast<double>(n) * n * n;
    json peak = peak_estimate(threads);
    const double gflops = flops / t_blas / 1e9;
    json out = {{"matmul", {{"n", n}, {"gflops", gflops}, {"naive_gflops", flops / t_naive / 1e9},
                            {"speedup_over_naive", t_naive / t_blas}, {"max_abs_diff_vs_naive", max_diff},
                            {"fraction_of_peak", gflops / peak["peak_gflops"].get<double>()}}},
                {"peak_estimate", peak},
                {"libtorch", torch_version::libtorch_version()}};
    std::printf("matmul %lldx%lld: %.1f GFLOP/s = %.0f%% of an estimated %.0f GFLOP/s peak (%d threads)\n",
                static_cast<long long>(n), static_cast<long long>(n), gflops,
                100.0 * out["matmul"]["fraction_of_peak"].get<double>(), peak["peak_gflops"].get<double>(), threads);
    std::printf("naive triple loop: %.2f GFLOP/s; BLAS is %.1fx faster (max |diff| %.2e)\n", flops / t_naive / 1e9,
                t_naive / t_blas, max_diff);

    LanguageModel lm = LanguageModel::open(args.model);
    const int64_t T = lm.info().context_length;
    const torch::Tensor tokens = torch::randint(0, lm.tokenizer().vocab_size(), {args.batch, T}, torch::kInt64);
    lm.logits(tokens);
    lm.logits(tokens);
    const double t_fwd = best_seconds(5, [&] { lm.logits(tokens); });
    const double tps = static_cast<double>(args.batch * T) / t_fwd;
    out["model_forward"] = {{"model", args.model}, {"batch", args.batch}, {"context_length", T},
                            {"tokens_per_second", tps}};
    std::printf("model forward (%s, batch %lld x %lld): %.0f tokens/s\n", lm.info().name.c_str(),
                static_cast<long long>(args.batch), static_cast<long long>(T), tps);
    out["hooks"] = bench_hooks(lm, args.batch);
    write_file_atomic(args.out, out.dump(2) + "\n");
    std::printf("wrote %s\n", args.out.c_str());
    TORCH_CHECK(max_diff < 1e-2 * std::sqrt(static_cast<double>(n)), "BLAS result differs from the naive product by ",
                max_diff);
    TORCH_CHECK(t_naive / t_blas >= 10.0, "matrix products run only ", t_naive / t_blas,
                "x faster than a naive loop: LibTorch is on the reference BLAS (install libopenblas0-openmp)");
  });
}

}  // namespace saelab
