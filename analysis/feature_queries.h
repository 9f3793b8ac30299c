// Typed reads of the feature database (analysis/feature_db.h) that several commands and pages ask:
// each question is written once, here, against the schema it belongs to.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "analysis/feature_db.h"

namespace saelab {

class FeatureQueries {
 public:
  /// Reads `db`, which must outlive this object; statements are prepared on first use and reused.
  explicit FeatureQueries(FeatureDb& db) : db_(db) {}

  /// The feature's largest activation over the texts `top` read; nullopt when the database has no
  /// row for it (another SAE's database, or `top` not run on this SAE).
  std::optional<double> max_activation(const std::string& sae, int64_t feature);

  /// The feature's explanation; nullopt when it was not explained.
  std::optional<std::string> explanation(const std::string& sae, int64_t feature);

  struct Histogram {
    double max = 0;              ///< the feature's max activation: bins split (0, max] evenly
    std::vector<double> counts;  ///< firings per bin
    bool exact = false;          ///< false: estimated from a uniform sample of the firings
  };
  /// The feature's activation histogram; nullopt for a feature that never fired, or a database
  /// made before histograms were recorded.
  std::optional<Histogram> histogram(const std::string& sae, int64_t feature);

  struct Explained {
    int64_t feature = 0;
    double max_activation = 0;
  };
  /// The `limit` best-explained features of `sae` by annotation-alignment score, among those firing
  /// on less than `max_density` of tokens (dense features explain little however well they score).
  std::vector<Explained> best_explained(const std::string& sae, int64_t limit, double max_density);

 private:
  FeatureDb& db_;
  std::optional<FeatureDb::Statement> max_activation_, explanation_, histogram_;
};

}  // namespace saelab
