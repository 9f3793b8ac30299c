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
//   explanations(sae, feature, explainer, explanation, rule, explain_score, score, scored_tokens,
//                precision, recall, scorable): score is the annotation-alignment r (autointerp.h)
//   notes(topic TEXT PRIMARY KEY, note): how a table was made, for the pages that show it
//            ("logit_effects": which tokens were left out)
//   histograms(sae, feature, max, counts, exact, PRIMARY KEY (sae, feature)): firings per
//            equal-width bin of (0, max] (counts a JSON array; exact 0: estimated from the reservoir)
// Indices on (sae, feature) everywhere and on token_features(token).
// PRAGMA user_version holds the schema's version (kFeatureDbSchemaVersion); open() migrates an
// older database by adding the tables it lacks and refuses a later one.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace SQLite {
class Column;
class Statement;
}  // namespace SQLite

#include "core/files.h"

namespace saelab {

/// The schema version create() writes and open() reads (PRAGMA user_version).
inline constexpr int64_t kFeatureDbSchemaVersion = 2;

/// What a database at `path` holds, in a few words for a message: "4 SAEs: a, b, c, …", or why it
/// could not be read ("not a saelab feature database: …"). Never throws.
std::string feature_db_summary(const std::string& path);

/// One open database. Writing goes to "<path>.tmp" and `commit()` renames it onto `path`, so a run
/// that fails never leaves a half-written database that looks complete. Errors are one line naming
/// the database file and the statement.
///
/// Example:
///   FeatureDb db = FeatureDb::create("out/features.sqlite");
///   FeatureDb::Statement row = db.prepare("INSERT INTO saes (sae) VALUES (?)");
///   db.transaction([&] { for (const std::string& name : names) row.bind(1, name).run(); });
///   db.commit();
class FeatureDb {
  struct Connection;

 public:
  /// Creates a new database (replacing any at `path` when committed).
  static FeatureDb create(const std::string& path);
  /// Opens an existing database to read or to add tables' rows (writes in place, in transactions).
  /// Waits up to 10 s for another process that holds the file instead of failing at once.
  /// A database of an older schema version is migrated in place; a later version, or an SQLite
  /// file without saelab's tables, is refused in one line naming the file.
  static FeatureDb open(const std::string& path);
  /// The database's schema version (PRAGMA user_version).
  int64_t schema_version();
  FeatureDb(FeatureDb&&) noexcept;
  FeatureDb& operator=(FeatureDb&&) noexcept;
  ~FeatureDb();

  /// Runs SQL with no result (DDL, BEGIN, COMMIT …); errors name the database and the statement.
  void exec(const std::string& sql);

  /// Runs `write` in one transaction: committed when it returns, rolled back when it throws (the
  /// error then propagates). Transactions do not nest.
  void transaction(const std::function<void()>& write);

  /// A prepared statement: bind by position (1-based), step, reset. It works while its database is
  /// open; after commit() or the database's destruction it throws "is closed", and may still be
  /// destroyed safely.
  class Statement {
   public:
    Statement(Statement&&) noexcept;
    ~Statement();
    Statement& bind(int i, int64_t v);
    Statement& bind(int i, double v);
    Statement& bind(int i, const std::string& v);
    /// Executes an insert / update and resets the statement for the next row (also after an error).
    void run();
    /// Steps a query: true while a row is available; after the last row it resets, so the
    /// statement can run again.
    bool next();
    /// Columns (0-based) of the current row; reading without one (next() not called, or false) throws.
    int64_t column_int(int i);
    double column_double(int i);
    std::string column_text(int i);

   private:
    friend class FeatureDb;
    Statement(std::shared_ptr<Connection> connection, const std::string& sql);
    SQLite::Statement& live();
    SQLite::Column column(int i);
    template <class T>
    Statement& bind_value(int i, const T& v);

    // The statement shares the connection so that it is finalized before the connection closes,
    // however long it outlives the FeatureDb (members are destroyed in reverse order).
    std::shared_ptr<Connection> connection_;
    std::unique_ptr<SQLite::Statement> stmt_;
  };
  Statement prepare(const std::string& sql);

  /// Rows of a query as JSON objects (column name → value); for tests, the report and the CLI.
  nlohmann::json query(const std::string& sql);

  /// Closes the database and, for one made by create(), renames the temporary file onto the path.
  /// Refuses inside an open transaction; queries left mid-way are reset first, so they hold back
  /// neither rows nor locks.
  void commit();

  const std::string& path() const { return path_; }

 private:
  FeatureDb() = default;
  Connection& live(const std::string& sql);
  void close() noexcept;
  void check_schema();

  std::shared_ptr<Connection> connection_;  // null once closed
  std::string path_, tmp_path_;
  std::shared_ptr<RunLock> lock_;  // create(): held until the database is committed or dropped
};

}  // namespace saelab
