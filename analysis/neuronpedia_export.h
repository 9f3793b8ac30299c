// A study's features in the layout SAEDashboard writes for Neuronpedia (its NeuronpediaRunner's
// output, which Neuronpedia's convert-saedashboard-to-neuronpedia-export turns into an import), so
// features found with saelab can be uploaded where people look at them.
//
// For each SAE of the feature database, a folder {model_id}_{sae_set}_{hook}_{d_sae}_{suffix}/, the
// suffix being the SAE's folder name (SAEDashboard's np_sae_id_suffix: a study has several SAEs per
// hook, each its own Neuronpedia source {layer}-{sae_set}__{suffix}), with
//   batch-{k}.json        {"model_id", "layer" (int), "sae_set", "sae_id_suffix", "features": [...]},
//                         features in ascending index, `features_per_batch` a file
//   skipped_indexes.json  the features with no example (they never fired), which Neuronpedia lists empty
//   run_settings.json     how the export was made
//   explanations.jsonl    one Neuronpedia Explanation row per explanation (gzip it into
//                         explanations/batch-0.jsonl.gz of the import folder)
// A feature: feature_index; neuron_alignment_* (the three largest entries of its decoder row, their
// share of the row's L1 norm); neg_str/neg_values and pos_str/pos_values (its logit effects, most
// negative / most positive first); frac_nonzero (density, a fraction); activations: the top
// examples (bin_min = bin_contains = −1, bin_max the feature's maximum), then each quantile band,
// highest first (bin_min/bin_max its examples' range, bin_contains the band's share of all tokens),
// each with the example's tokens, their activations, and qualifying_token_index, the position of the
// example's token among them. Fields saelab does not compute (the correlations, the activation and
// logit histograms, decoder_weights_dist) are written as the empty lists SAEDashboard writes when it
// has none.
#pragma once
#include <string>
#include <vector>

#include "core/options.h"

namespace saelab {

struct NeuronpediaExportOptions {
  std::string model_id;
  std::string sae_set = "saelab";
  int64_t features_per_batch = 128;

  template <class V>
  void fields(V& v) {
    v("model_id", model_id, "Neuronpedia model id (empty: each SAE's model_name)");
    v("sae_set", sae_set, "Neuronpedia source set name", path_name().and_non_empty());
    v("features_per_batch", features_per_batch, "features per batch-k.json file (SAEDashboard: 128)", in_range(1, 100000));
  }
};

struct NeuronpediaExportResult {
  std::vector<std::string> folders;  ///< one per SAE
  int64_t features = 0, skipped = 0, explanations = 0;
};

/// Exports every SAE of the database at `db_path` into `out` (which must not exist; written under a
/// temporary name and renamed when complete).
NeuronpediaExportResult export_neuronpedia(const std::string& db_path, const std::string& out,
                                           const NeuronpediaExportOptions& options);

}  // namespace saelab
