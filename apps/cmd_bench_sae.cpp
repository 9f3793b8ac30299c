// saelab bench-sae: SAE training-step cost as ratios to one encoder GEMM (JSON).
#include "apps/commands.h"
#include "apps/common.h"
#include "core/files.h"
#include "core/runtime.h"
#include "sae/sae_bench.h"

namespace saelab {

void register_bench_sae(CLI::App& app) {
  static SaeBenchOptions options;
  static std::string out;
  CLI::App* cmd = app.add_subcommand("bench-sae", "SAE step cost: sparse vs dense TopK, standard, vs one encoder GEMM");
  static OptionFlags<SaeBenchOptions> flags(cmd, &options);
  cmd->add_option("--out", out, "also write the JSON here");
  cmd->callback([] {
    start_command();
    flags.apply();
    // Two SAEs (sparse and dense TopK) with weights, gradients and Adam moments, and the batch's
    // [batch, d_sae] tensors: refused before allocating when memory cannot hold them.
    const double d_in = static_cast<double>(options.d_in), d_sae = static_cast<double>(options.d_sae);
    require_memory(2.0 * 4.0 * d_sae * (8.0 * d_in + 6.0 * static_cast<double>(options.batch)),
                   "bench-sae with --d-in " + std::to_string(options.d_in) + " --d-sae " + std::to_string(options.d_sae));
    const json r = bench_sae_steps(options);
    const std::string text = r.dump(2) + "\n";
    std::fputs(text.c_str(), stdout);
    if (!out.empty()) write_file_atomic(out, text);
  });
}

}  // namespace saelab
