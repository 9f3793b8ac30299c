// Max-activating texts per feature: streams contexts through the model and SAE(s) and keeps, per
// feature, the top-k activating positions in a bounded heap, a uniform reservoir of its firing
// positions (sampled by activation quantile at the end, as sae_vis does), its density, and which
// tokens it fires on. Memory depends on d_sae and the options, not on the number of tokens.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "analysis/attached_sae.h"
#include "analysis/eval_set.h"

namespace saelab {

class FeatureDb;

/// Held-out contexts `saelab top` and the study's top stage read unless told otherwise.
constexpr int64_t kTopContexts = 256;

struct TopOptions {
  int64_t top_k = 20;
  int64_t quantile_bands = 4;
  int64_t per_band = 3;
  int64_t reservoir = 200;
  int64_t context_before = 12;
  int64_t context_after = 4;
  int64_t batch_size = 8;
  int64_t features_per_token = 10;
  int64_t histogram_bins = 20;
  int64_t seed = 0;

  template <class V>
  void fields(V& v) {
    v("top_k", top_k, "top-activating examples kept per feature", at_least(1));
    v("quantile_bands", quantile_bands, "quantile bands of the firing distribution", at_least(0));
    v("per_band", per_band, "examples sampled per quantile band", at_least(0));
    v("reservoir", reservoir, "firing positions kept per feature (uniform reservoir) to sample the bands from", at_least(1));
    v("context_before", context_before, "tokens shown before an example's position", at_least(0));
    v("context_after", context_after, "tokens shown after an example's position", at_least(0));
    v("batch_size", batch_size, "contexts per forward pass", at_least(1));
    v("features_per_token", features_per_token, "per token, the features recorded as firing on it most often", at_least(1));
    v("histogram_bins", histogram_bins, "bins of each feature's activation histogram, from 0 to its max", in_range(1, 200));
    v("seed", seed, "seed of the reservoirs", at_least(0));
  }
  void validate() const;
};

struct FeatureExample {
  float activation = 0;
  int32_t context = 0, position = 0;
  std::string kind;  ///< "top" or "quantile"
  int32_t rank = 0;  ///< rank among the top examples, or index within the band
  int32_t band = -1; ///< quantile band (0: lowest), −1 for top examples
  int32_t first = 0; ///< position of window[0] in the context
  std::vector<float> window;  ///< the feature's activation on positions first … first + window.size() − 1
};

struct FeatureSummary {
  int64_t fires = 0;
  double density = 0, mean_activation = 0, max_activation = 0;
  /// Firings per equal-width bin of (0, max_activation] (histogram_bins of them): counted on the
  /// reservoir and scaled to `fires`, so exact when the feature fired at most `reservoir` times
  /// (histogram_exact) and a uniform sample's estimate otherwise. Empty for a feature that never fired.
  std::vector<double> histogram;
  bool histogram_exact = false;
  std::vector<FeatureExample> examples;  ///< top ones by rank, then quantile samples by band
};

struct TokenFeature {
  int64_t token = 0, feature = 0, count = 0;
  double mean_activation = 0;
};

struct SaeTopResult {
  int64_t tokens = 0;
  std::vector<FeatureSummary> features;  ///< [d_sae]
  std::vector<TokenFeature> token_features;
};

/// Runs every context of `eval_set` (BOS positions excluded) through the model once for all SAEs,
/// then once more to read the example windows.
std::vector<SaeTopResult> find_top_activations(HookedModel& hooked, const std::vector<AttachedSae>& saes,
                                               const EvalSet& eval_set, const TopOptions& options);

/// Writes saes, features, examples, example_tokens and token_features rows.
void write_top_activations(FeatureDb& db, const std::vector<AttachedSae>& saes, const std::vector<SaeTopResult>& results,
                           const EvalSet& eval_set, const Tokenizer& tokenizer);

}  // namespace saelab
