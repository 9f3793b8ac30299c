#include "analysis/feature_db.h"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <c10/util/Exception.h>
#include <sqlite3.h>

#include <filesystem>
#include <optional>
#include <system_error>
#include <utility>

namespace saelab {

namespace fs = std::filesystem;

namespace {

// Column types follow the header's table list; SQLite's affinity keeps a mistyped value rather
// than rejecting it, so the types document intent and make query() return numbers as numbers.
// examples.context is the index of the context in the evaluation set, examples.doc the id of its
// document (a name such as "ca01", hence TEXT).
constexpr const char* kSchema = R"sql(
CREATE TABLE saes(
  sae TEXT PRIMARY KEY, dir TEXT, hook TEXT, architecture TEXT,
  d_in INTEGER, d_sae INTEGER, tokens_seen INTEGER);
CREATE TABLE features(
  sae TEXT, feature INTEGER, density REAL, mean_activation REAL, max_activation REAL,
  PRIMARY KEY (sae, feature));
CREATE TABLE examples(
  id INTEGER PRIMARY KEY, sae TEXT, feature INTEGER, kind TEXT, rank INTEGER, band INTEGER,
  activation REAL, context INTEGER, position INTEGER, doc TEXT);
CREATE TABLE example_tokens(
  example_id INTEGER, offset INTEGER, token_id INTEGER, token TEXT, activation REAL,
  PRIMARY KEY (example_id, offset)) WITHOUT ROWID;
CREATE TABLE token_features(
  sae TEXT, token_id INTEGER, token TEXT, feature INTEGER, count INTEGER, mean_activation REAL);
CREATE TABLE logit_effects(
  sae TEXT, feature INTEGER, direction TEXT, rank INTEGER, token_id INTEGER, token TEXT,
  effect REAL);
CREATE TABLE explanations(
  sae TEXT, feature INTEGER, explainer TEXT, explanation TEXT, rule TEXT, explain_score REAL,
  score REAL, scored_tokens INTEGER, precision REAL, recall REAL, scorable INTEGER);
CREATE INDEX examples_sae_feature ON examples(sae, feature);
CREATE INDEX token_features_sae_feature ON token_features(sae, feature);
CREATE INDEX token_features_token ON token_features(token);
CREATE INDEX logit_effects_sae_feature ON logit_effects(sae, feature);
CREATE INDEX explanations_sae_feature ON explanations(sae, feature);
)sql";

// The schema's version, in the database's PRAGMA user_version (kFeatureDbSchemaVersion):
//   0  every database written before versions were recorded: no `notes`, no `histograms` (and
//      `example_tokens` with a rowid, which no reader sees);
//   1  `notes` added;
//   2  `histograms` added (each feature's activation histogram).
// create() writes kSchema then the migration, so the tables added since version 0 are written once, here;
// open() migrates an older database in place by adding the tables it lacks (empty: the pages then
// show no histogram and no note); a database of a later version is refused, naming both versions.
constexpr const char* kMigrate = R"sql(
CREATE TABLE IF NOT EXISTS notes(
  topic TEXT PRIMARY KEY, note TEXT);
CREATE TABLE IF NOT EXISTS histograms(
  sae TEXT, feature INTEGER, max REAL, counts TEXT, exact INTEGER, PRIMARY KEY (sae, feature));
)sql";

// kMigrate, then the version it brings a database to.
std::string migration() { return std::string(kMigrate) + "PRAGMA user_version = " + std::to_string(kFeatureDbSchemaVersion) + ";"; }

constexpr int kBusyTimeoutMs = 10000;

std::string describe(const std::string& path) { return "feature database '" + path + "'"; }

// Error messages stay on one line and short even for the multi-statement schema.
std::string one_line(const std::string& sql) {
  std::string out;
  out.reserve(sql.size());
  bool space = false;
  for (char c : sql) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  constexpr size_t kMax = 200;
  if (out.size() > kMax) out = out.substr(0, kMax) + "...";
  return out;
}

[[noreturn]] void fail(const std::string& where, const std::string& message, const std::string& sql) {
  TORCH_CHECK(false, where, ": ", message, " (in: ", one_line(sql), ")");
}

// SQLiteCpp's exceptions carry SQLite's message alone; ours add the database and the statement.
template <class F>
auto checked(const std::string& where, const std::string& sql, F&& f) {
  try {
    return f();
  } catch (const SQLite::Exception& e) {
    fail(where, e.what(), sql);
  }
}

}  // namespace

struct FeatureDb::Connection {
  Connection(const std::string& file, int flags, int busy_timeout_ms, const std::string& path)
      : db(file, flags, busy_timeout_ms), where(describe(path)) {}
  SQLite::Database db;
  std::string where;  // "feature database '<path>'", for errors
  bool closed = false;  // set when the FeatureDb commits or goes; statements that outlive it refuse
};

// ---- FeatureDb ----

FeatureDb FeatureDb::create(const std::string& path) {
  FeatureDb db;
  db.path_ = path;
  // One writer per database: a second `saelab top` on the same file fails here, naming the first.
  db.lock_ = std::make_shared<RunLock>(RunLock::file(path, "feature database"));
  const std::string tmp = path + ".tmp";
  std::error_code ec;
  fs::remove(tmp, ec);
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    TORCH_CHECK(!ec, describe(path), ": cannot create folder '", parent.string(), "': ", ec.message());
  }
  try {
    db.connection_ = std::make_shared<Connection>(tmp, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, 0, path);
  } catch (const SQLite::Exception& e) {
    fs::remove(tmp, ec);
    TORCH_CHECK(false, describe(path), ": cannot create '", tmp, "': ", e.what());
  }
  // From here on the destructor removes the temporary file if anything below throws.
  db.tmp_path_ = tmp;
  // No journal file and no fsync: the file is only renamed into place once complete, so a crash can
  // only lose the temporary file, never corrupt a database that looks finished. The journal stays
  // in memory (not OFF) so that a transaction that throws rolls back cleanly.
  db.exec("PRAGMA journal_mode=MEMORY; PRAGMA synchronous=OFF;");
  db.transaction([&] {
    db.exec(kSchema);
    db.exec(migration());
  });
  return db;
}

std::string feature_db_summary(const std::string& path) {
  try {
    SQLite::Database db(path, SQLite::OPEN_READONLY);
    SQLite::Statement q(db, "SELECT sae FROM saes ORDER BY sae");
    std::vector<std::string> names;
    while (q.executeStep()) names.push_back(q.getColumn(0).getString());
    std::string out = std::to_string(names.size()) + (names.size() == 1 ? " SAE" : " SAEs");
    for (size_t i = 0; i < names.size() && i < 3; ++i) out += (i == 0 ? ": " : ", ") + names[i];
    if (names.size() > 3) out += ", …";
    return out;
  } catch (const std::exception& e) {
    return std::string("not a saelab feature database: ") + e.what();
  }
}

FeatureDb FeatureDb::open(const std::string& path) {
  std::error_code ec;
  TORCH_CHECK(fs::exists(path, ec), describe(path), " does not exist");
  FeatureDb db;
  db.path_ = path;
  try {
    // A reader (e.g. the CLI) may hold the file while a writer adds rows; wait instead of failing.
    db.connection_ = std::make_shared<Connection>(path, SQLite::OPEN_READWRITE, kBusyTimeoutMs, path);
  } catch (const SQLite::Exception& e) {
    TORCH_CHECK(false, describe(path), ": cannot open: ", e.what());
  }
  db.check_schema();
  return db;
}

int64_t FeatureDb::schema_version() {
  const std::string sql = "PRAGMA user_version";
  Connection& c = live(sql);
  return checked(c.where, sql, [&] { return static_cast<int64_t>(c.db.execAndGet(sql).getInt64()); });
}

void FeatureDb::check_schema() {
  const int64_t version = schema_version();
  TORCH_CHECK(version <= kFeatureDbSchemaVersion, describe(path_), " has schema version ", version,
              "; this saelab reads versions up to ", kFeatureDbSchemaVersion,
              " (a newer saelab wrote it: use that one, or rerun `saelab top` to rewrite it)");
  if (version == kFeatureDbSchemaVersion) return;
  // Version 0 may also be some other SQLite file: saelab's has its saes and features tables.
  const std::string probe = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('saes', 'features')";
  Connection& c = live(probe);
  const int64_t tables = checked(c.where, probe, [&] { return static_cast<int64_t>(c.db.execAndGet(probe).getInt64()); });
  TORCH_CHECK(tables == 2, describe(path_), " is not a saelab feature database (it has no 'saes' and 'features' tables)");
  transaction([&] { exec(migration()); });
}

FeatureDb::FeatureDb(FeatureDb&& other) noexcept { *this = std::move(other); }

FeatureDb& FeatureDb::operator=(FeatureDb&& other) noexcept {
  if (this != &other) {
    close();
    connection_ = std::move(other.connection_);
    path_ = std::move(other.path_);
    tmp_path_ = std::exchange(other.tmp_path_, std::string());
    lock_ = std::move(other.lock_);
  }
  return *this;
}

FeatureDb::~FeatureDb() { close(); }

// Closes the connection (once no Statement holds it) and deletes a temporary file never committed.
void FeatureDb::close() noexcept {
  if (connection_ != nullptr) {
    // A query left mid-way keeps its read lock, and an implicit transaction commits only when the
    // last running statement finishes; reset them so neither outlives the FeatureDb.
    sqlite3* handle = connection_->db.getHandle();
    for (sqlite3_stmt* s = sqlite3_next_stmt(handle, nullptr); s != nullptr; s = sqlite3_next_stmt(handle, s)) {
      if (sqlite3_stmt_busy(s) != 0) sqlite3_reset(s);
    }
    connection_->closed = true;
    connection_.reset();
  }
  if (!tmp_path_.empty()) {
    std::error_code ec;
    fs::remove(tmp_path_, ec);
    tmp_path_.clear();
  }
}

FeatureDb::Connection& FeatureDb::live(const std::string& sql) {
  TORCH_CHECK(connection_ != nullptr, describe(path_), " is closed (in: ", one_line(sql), ")");
  return *connection_;
}

void FeatureDb::exec(const std::string& sql) {
  Connection& c = live(sql);
  checked(c.where, sql, [&] { c.db.exec(sql); });
}

void FeatureDb::transaction(const std::function<void()>& write) {
  Connection& c = live("BEGIN");
  std::optional<SQLite::Transaction> guard;  // rolls back in its destructor unless committed
  checked(c.where, "BEGIN", [&] { guard.emplace(c.db); });
  write();
  checked(c.where, "COMMIT", [&] { guard->commit(); });
}

FeatureDb::Statement FeatureDb::prepare(const std::string& sql) {
  live(sql);
  return Statement(connection_, sql);
}

nlohmann::json FeatureDb::query(const std::string& sql) {
  Statement stmt = prepare(sql);
  const SQLite::Statement& s = stmt.live();
  nlohmann::json rows = nlohmann::json::array();
  while (stmt.next()) {
    nlohmann::json row = nlohmann::json::object();
    for (int i = 0; i < s.getColumnCount(); ++i) {
      const SQLite::Column c = s.getColumn(i);
      nlohmann::json& cell = row[c.getName()];
      if (c.isInteger()) {
        cell = c.getInt64();
      } else if (c.isFloat()) {
        cell = c.getDouble();
      } else if (c.isNull()) {
        cell = nullptr;
      } else {
        cell = c.getString();  // TEXT, and BLOB as its bytes (no table here stores blobs)
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

void FeatureDb::commit() {
  TORCH_CHECK(connection_ != nullptr, describe(path_), " is already closed");
  // An open transaction's last rows are not in the file yet; refuse instead of renaming a database
  // that lacks them.
  TORCH_CHECK(sqlite3_get_autocommit(connection_->db.getHandle()) != 0, describe(path_),
              ": commit() inside an open transaction (missing exec(\"COMMIT\"))");
  const std::string tmp = std::exchange(tmp_path_, std::string());
  close();
  if (tmp.empty()) return;
  std::error_code ec;
  fs::rename(tmp, path_, ec);
  if (ec) {
    fs::remove(tmp, ec);  // the old database at path_ stays as it was
    TORCH_CHECK(false, describe(path_), ": cannot rename '", tmp, "' onto it: ", ec.message());
  }
  lock_.reset();
}

// ---- Statement ----

FeatureDb::Statement::Statement(std::shared_ptr<Connection> connection, const std::string& sql)
    : connection_(std::move(connection)) {
  stmt_ = checked(connection_->where, sql, [&] { return std::make_unique<SQLite::Statement>(connection_->db, sql); });
  // An empty string or a lone comment prepares to no statement, which SQLiteCpp only reports when it
  // runs ("needs to be reseted"); getExpandedSQL() is its one public call that throws for it now.
  try {
    stmt_->getExpandedSQL();
  } catch (const SQLite::Exception&) {
    fail(connection_->where, "no SQL statement", sql);
  }
}

FeatureDb::Statement::Statement(Statement&&) noexcept = default;
FeatureDb::Statement::~Statement() = default;

SQLite::Statement& FeatureDb::Statement::live() {
  TORCH_CHECK(stmt_ != nullptr, "feature database statement was moved from");
  TORCH_CHECK(!connection_->closed, connection_->where, " is closed (in: ", one_line(stmt_->getQuery()), ")");
  return *stmt_;
}

template <class T>
FeatureDb::Statement& FeatureDb::Statement::bind_value(int i, const T& v) {
  SQLite::Statement& s = live();
  try {
    s.bind(i, v);
  } catch (const SQLite::Exception& e) {
    fail(connection_->where, "binding parameter " + std::to_string(i) + ": " + e.what(), s.getQuery());
  }
  return *this;
}

FeatureDb::Statement& FeatureDb::Statement::bind(int i, int64_t v) { return bind_value(i, v); }
FeatureDb::Statement& FeatureDb::Statement::bind(int i, double v) { return bind_value(i, v); }
FeatureDb::Statement& FeatureDb::Statement::bind(int i, const std::string& v) { return bind_value(i, v); }

void FeatureDb::Statement::run() {
  SQLite::Statement& s = live();
  std::string error;
  try {
    s.exec();
  } catch (const SQLite::Exception& e) {
    error = s.hasRow() ? "statement returns rows; use next()" : e.what();
  }
  // Reset even after a failure, so that the statement takes the next row.
  s.tryReset();
  s.clearBindings();
  if (!error.empty()) fail(connection_->where, error, s.getQuery());
}

bool FeatureDb::Statement::next() {
  SQLite::Statement& s = live();
  try {
    if (s.executeStep()) return true;
  } catch (const SQLite::Exception& e) {
    s.tryReset();
    fail(connection_->where, e.what(), s.getQuery());
  }
  s.tryReset();  // after the last row, so that the statement can run again (same or new bindings)
  return false;
}

SQLite::Column FeatureDb::Statement::column(int i) {
  SQLite::Statement& s = live();
  return checked(connection_->where, s.getQuery(), [&] { return s.getColumn(i); });
}

int64_t FeatureDb::Statement::column_int(int i) { return column(i).getInt64(); }
double FeatureDb::Statement::column_double(int i) { return column(i).getDouble(); }
std::string FeatureDb::Statement::column_text(int i) { return column(i).getString(); }

}  // namespace saelab
