// saelab bench-sae: SAE training-step cost as ratios to one encoder GEMM (JSON).
#include "apps/commands.h"
#include "apps/common.h"
#include "core/files.h"
#include "core/runtime.h"
#include "core/torch_version.h"
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
    // Refused before allocating when memory cannot hold it: the sparse TopK SAE's weights and Adam
    // moments (its gradients stay factored), the other two SAEs' weights, gradients and moments,
    // and a few [batch, d_sae] tensors.
    const double d_in = static_cast<double>(options.d_in), d_sae = static_cast<double>(options.d_sae);
    const double copies = options.topk_only ? 6.0 : 6.0 + 2 * 8.0;
    require_memory(4.0 * d_sae * (copies * d_in + 4.0 * static_cast<double>(options.batch)),
                   "bench-sae with --d-in " + std::to_string(options.d_in) + " --d-sae " + std::to_string(options.d_sae));
    json r = bench_sae_steps(options);
    r["libtorch"] = torch_version::libtorch_version();
    const std::string text = r.dump(2) + "\n";
    std::fputs(text.c_str(), stdout);
    if (!out.empty()) write_file_atomic(out, text);
  });
}

}  // namespace saelab
