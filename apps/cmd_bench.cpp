// saelab bench: machine and model throughput, as ratios measured in one run (timings on a shared
// machine are noisy; ratios are what we compare).
#include <chrono>
#include <fstream>

#include "apps/commands.h"
#include "apps/common.h"
#include "core/files.h"
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

}  // namespace

void register_bench(CLI::App& app) {
  struct Args {
    std::string model = default_model_dir();
    std::string out = "runs/bench-lm.json";
    int64_t n = 1024;
    int64_t batch = 8;
  };
  static Args args;
  CLI::App* cmd = app.add_subcommand("bench", "matmul throughput vs peak, BLAS check, model forward tokens/s");
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
    // The naive reference: i-k-j loops over the same data, no blocking, no threads.
    torch::Tensor naive = torch::zeros({n, n});
    const float* pa = a.data_ptr<float>();
    const float* pb = b.data_ptr<float>();
    float* pc = naive.data_ptr<float>();
    const double t_naive = best_seconds(1, [&] {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < n; ++k) {
          const float aik = pa[i * n + k];
          for (int64_t j = 0; j < n; ++j) pc[i * n + j] += aik * pb[k * n + j];
        }
    });
    const double max_diff = (naive - c).abs().max().item<double>();
    const double flops = 2.0 * static_cast<double>(n) * n * n;
    json peak = peak_estimate(threads);
    const double gflops = flops / t_blas / 1e9;
    json out = {{"matmul", {{"n", n}, {"gflops", gflops}, {"naive_gflops", flops / t_naive / 1e9},
                            {"speedup_over_naive", t_naive / t_blas}, {"max_abs_diff_vs_naive", max_diff},
                            {"fraction_of_peak", gflops / peak["peak_gflops"].get<double>()}}},
                {"peak_estimate", peak}};
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
    write_file_atomic(args.out, out.dump(2) + "\n");
    std::printf("wrote %s\n", args.out.c_str());
    TORCH_CHECK(max_diff < 1e-2 * std::sqrt(static_cast<double>(n)), "BLAS result differs from the naive product by ",
                max_diff);
    TORCH_CHECK(t_naive / t_blas >= 10.0, "matrix products run only ", t_naive / t_blas,
                "x faster than a naive loop: LibTorch is on the reference BLAS (install libopenblas0-openmp)");
  });
}

}  // namespace saelab
