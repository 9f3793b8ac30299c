// saelab bench-sae: SAE training-step cost as ratios to one encoder GEMM (JSON).
#include "apps/commands.h"
#include "apps/common.h"
#include "core/files.h"
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
    const json r = bench_sae_steps(options);
    const std::string text = r.dump(2) + "\n";
    std::fputs(text.c_str(), stdout);
    if (!out.empty()) write_file_atomic(out, text);
  });
}

}  // namespace saelab
