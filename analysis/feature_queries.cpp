#include "analysis/feature_queries.h"

#include "core/json_options.h"

namespace saelab {

namespace {

// The statement's first row, read by `read`, then the statement reset for its next use.
template <class T, class Read>
std::optional<T> first_row(FeatureDb::Statement& q, Read read) {
  std::optional<T> out;
  if (q.next()) out = read(q);
  while (q.next()) {
  }
  return out;
}

}  // namespace

std::optional<double> FeatureQueries::max_activation(const std::string& sae, int64_t feature) {
  if (!max_activation_) {
    max_activation_.emplace(db_.prepare("SELECT max_activation FROM features WHERE sae = ? AND feature = ?"));
  }
  max_activation_->bind(1, sae).bind(2, feature);
  return first_row<double>(*max_activation_, [](FeatureDb::Statement& q) { return q.column_double(0); });
}

std::optional<std::string> FeatureQueries::explanation(const std::string& sae, int64_t feature) {
  if (!explanation_) {
    explanation_.emplace(db_.prepare("SELECT explanation FROM explanations WHERE sae = ? AND feature = ?"));
  }
  explanation_->bind(1, sae).bind(2, feature);
  return first_row<std::string>(*explanation_, [](FeatureDb::Statement& q) { return q.column_text(0); });
}

std::optional<FeatureQueries::Histogram> FeatureQueries::histogram(const std::string& sae, int64_t feature) {
  if (!histogram_) histogram_.emplace(db_.prepare("SELECT max, counts, exact FROM histograms WHERE sae = ? AND feature = ?"));
  histogram_->bind(1, sae).bind(2, feature);
  return first_row<Histogram>(*histogram_, [&](FeatureDb::Statement& q) {
    Histogram h;
    h.max = q.column_double(0);
    const nlohmann::json counts = parse_json_text(q.column_text(1), db_.path() + ": histogram of " + sae + " #" + std::to_string(feature));
    TORCH_CHECK(counts.is_array(), db_.path(), ": the histogram of ", sae, " #", feature, " is not a list of counts");
    for (const auto& c : counts) {
      TORCH_CHECK(c.is_number(), db_.path(), ": the histogram of ", sae, " #", feature, " holds a non-number");
      h.counts.push_back(c.get<double>());
    }
    h.exact = q.column_int(2) != 0;
    return h;
  });
}

std::vector<FeatureQueries::Explained> FeatureQueries::best_explained(const std::string& sae, int64_t limit,
                                                                      double max_density) {
  auto q = db_.prepare(
      "SELECT e.feature, f.max_activation FROM explanations e JOIN features f ON f.sae = e.sae AND f.feature = e.feature "
      "WHERE e.sae = ? AND f.density < ? ORDER BY e.score DESC, e.feature LIMIT ?");
  q.bind(1, sae).bind(2, max_density).bind(3, limit);
  std::vector<Explained> out;
  while (q.next()) out.push_back({q.column_int(0), q.column_double(1)});
  return out;
}

}  // namespace saelab
