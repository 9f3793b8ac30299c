// The study's report: one self-contained HTML page (no network, no CDN; opens from disk) with an
// overview table per SAE, the L0 / loss-recovered plot, density histograms and a feature browser
// (top-activating contexts with per-token highlighting, quantile samples, promoted / suppressed
// tokens, explanation and score, related features in the neighbouring layers, steering samples),
// searchable by token or explanation and sortable by density or score.
//
// All data is embedded as JSON (with "<" escaped, so no text can close the script element) and
// every corpus string is put on the page with textContent, never parsed as HTML.
//
// The page is study/assets/report.html, .css and .js, compiled into the binary at build time
// (study/assets/report_assets.h) and inlined into index.html with the data.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

#include "core/options.h"

namespace saelab {

struct ReportOptions {
  int64_t features_per_sae = 48;

  template <class V>
  void fields(V& v) {
    v("features_per_sae", features_per_sae, "features shown per SAE: those explained first, then the most frequent", at_least(1));
  }
};

struct ReportInputs {
  std::string title = "saelab report";
  std::string eval_json, tradeoff_svg, features_db, interp_json, graph_json, steering_json;
  std::string study_dir = "DIR";  // named in the report's hint to open every feature with saelab serve
  ReportOptions options;
};

/// Writes DIR/index.html (atomically) from the stage outputs; missing optional inputs (graph,
/// steering) leave their sections empty.
void write_report(const ReportInputs& inputs, const std::string& dir);

class FeatureDb;

/// One feature as the report's browser and saelab serve show it, read from the feature database:
/// density and activations, explanation and score, top and quantile examples with their tokens,
/// promoted and suppressed tokens, and its edges in `graph` (graph.json, or null).
class FeatureRecords {
 public:
  explicit FeatureRecords(FeatureDb& db);
  nlohmann::json get(const std::string& sae, int64_t feature, const nlohmann::json& graph);

 private:
  FeatureDb& db_;
  bool has_precision_ = false;
  std::string logit_note_;
};

/// The page's data as JSON text with every "<" written as \u003c (safe inside a script element).
std::string script_safe_json(const std::string& json_text);

}  // namespace saelab
