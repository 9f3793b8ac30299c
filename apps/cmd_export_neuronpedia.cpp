// saelab export-neuronpedia: a feature database in the layout SAEDashboard writes for Neuronpedia.
#include "analysis/neuronpedia_export.h"
#include "apps/commands.h"
#include "apps/common.h"

namespace saelab {

void register_export_neuronpedia(CLI::App& app) {
  static std::string db, out;
  static NeuronpediaExportOptions options;
  CLI::App* cmd = app.add_subcommand("export-neuronpedia",
                                     "write a feature database's features as SAEDashboard's Neuronpedia batch files");
  cmd->add_option("db", db, "feature database (e.g. runs/demo/features.sqlite)")->required();
  cmd->add_option("out", out, "folder to write (must not exist)")->required();
  static OptionFlags<NeuronpediaExportOptions> flags(cmd, &options);
  cmd->callback([] {
    start_command();
    flags.apply();
    const NeuronpediaExportResult r = export_neuronpedia(db, out, options);
    for (const auto& f : r.folders) std::printf("wrote %s\n", f.c_str());
    std::printf("%lld features, %lld skipped (never fired), %lld explanations\n", static_cast<long long>(r.features),
                static_cast<long long>(r.skipped), static_cast<long long>(r.explanations));
  });
}

}  // namespace saelab
