// The feature database: results of top-activation search, logit effects and auto-interpretation in
// SQLite, so researchers can ask questions with SQL (e.g. which features fire most on a token).
//
// Tables (one database may hold many SAEs):
//   saes(sae TEXT PRIMARY KEY, dir, hook, architecture, d_in, d_sae, tokens_seen)
//   features(sae, feature, density, mean_activation, max_activation, PRIMARY KEY (sae, feature))
//   examples(id INTEGER PRIMARY KEY, sae, feature, kind ('top' | 'quantile'), rank, band, activation,
//            context, position, doc)
//   example_tokens(example_id, offset, token_id, token, activation, PRIMARY KEY (example_id, offset))
//            offset is relative to the example's position (negative before it)
//   token_features(sae, token_id, token, feature, count, mean_activation)
//            for each token, the features that fire on it most often
//   logit_effects(sae, feature, direction ('promoted' | 'suppressed'), rank, token_id, token, effect)
//   explanations(sae, feature, explainer, explanation, rule, explain_score, score, scored_tokens)
// Indices on (sae, feature) everywhere and on token_features(token).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

struct sqlite3;
struct sqlite3_stmt;

namespace saelab {

/// One open database. Writing goes to "<path>.tmp" and `commit()` renames it onto `path`, so a run
/// that fails never leaves a half-written database that looks complete.
class FeatureDb {
 public:
  /// Creates a new database (replacing any at `path` when committed).
  static FeatureDb create(const std::string& path);
  /// Opens an existing database to read or to add tables' rows (writes in place, in transactions).
  static FeatureDb open(const std::string& path);
  FeatureDb(FeatureDb&&) noexcept;
  FeatureDb& operator=(FeatureDb&&) noexcept;
  ~FeatureDb();

  /// Runs SQL with no result (DDL, BEGIN, COMMIT …); errors name the database and the statement.
  void exec(const std::string& sql);

  /// A prepared statement: bind by position (1-based), step, reset.
  class Statement {
   public:
    Statement(sqlite3* db, const std::string& sql, const std::string& where);
    Statement(Statement&&) noexcept;
    ~Statement();
    Statement& bind(int i, int64_t v);
    Statement& bind(int i, double v);
    Statement& bind(int i, const std::string& v);
    /// Executes an insert / update and resets the statement for the next row.
    void run();
    /// Steps a query: true while a row is available.
    bool next();
    int64_t column_int(int i);
    double column_double(int i);
    std::string column_text(int i);

   private:
    sqlite3* db_ = nullptr;
    sqlite3_stmt* stmt_ = nullptr;
    std::string where_;
  };
  Statement prepare(const std::string& sql);

  /// Rows of a query as JSON objects (column name → value); for tests, the report and the CLI.
  nlohmann::json query(const std::string& sql);

  /// Closes the database and, for one made by create(), renames the temporary file onto the path.
  void commit();

  const std::string& path() const { return path_; }

 private:
  FeatureDb() = default;
  sqlite3* db_ = nullptr;
  std::string path_, tmp_path_;
};

}  // namespace saelab
