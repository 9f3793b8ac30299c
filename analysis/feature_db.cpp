#include "analysis/feature_db.h"

#include <c10/util/Exception.h>
#include <sqlite3.h>

#include <filesystem>
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
  PRIMARY KEY (example_id, offset));
CREATE TABLE token_features(
  sae TEXT, token_id INTEGER, token TEXT, feature INTEGER, count INTEGER, mean_activation REAL);
CREATE TABLE logit_effects(
  sae TEXT, feature INTEGER, direction TEXT, rank INTEGER, token_id INTEGER, token TEXT,
  effect REAL);
CREATE TABLE explanations(
  sae TEXT, feature INTEGER, explainer TEXT, explanation TEXT, rule TEXT, explain_score REAL,
  score REAL, scored_tokens INTEGER);
CREATE INDEX examples_sae_feature ON examples(sae, feature);
CREATE INDEX token_features_sae_feature ON token_features(sae, feature);
CREATE INDEX token_features_token ON token_features(token);
CREATE INDEX logit_effects_sae_feature ON logit_effects(sae, feature);
CREATE INDEX explanations_sae_feature ON explanations(sae, feature);
)sql";

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

std::string errmsg(sqlite3* db) {
  const char* m = db != nullptr ? sqlite3_errmsg(db) : nullptr;
  return m != nullptr ? m : "out of memory";
}

// Closes the connection and deletes a temporary file that was never committed.
void release(sqlite3*& db, std::string& tmp_path) {
  // close_v2 rather than close: a Statement that outlives its database must neither keep the
  // connection open forever nor crash when it finalizes later; the handle closes with it.
  if (db != nullptr) sqlite3_close_v2(db);
  db = nullptr;
  if (!tmp_path.empty()) {
    std::error_code ec;
    fs::remove(tmp_path, ec);
    tmp_path.clear();
  }
}

}  // namespace

// ---- FeatureDb ----

FeatureDb FeatureDb::create(const std::string& path) {
  FeatureDb db;
  db.path_ = path;
  const std::string tmp = path + ".tmp";
  std::error_code ec;
  fs::remove(tmp, ec);
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    TORCH_CHECK(!ec, describe(path), ": cannot create folder '", parent.string(), "': ", ec.message());
  }
  sqlite3* handle = nullptr;
  const int rc = sqlite3_open_v2(tmp.c_str(), &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    const std::string msg = errmsg(handle);
    sqlite3_close(handle);
    fs::remove(tmp, ec);
    TORCH_CHECK(false, describe(path), ": cannot create '", tmp, "': ", msg);
  }
  // From here on the destructor removes the temporary file if anything below throws.
  db.db_ = handle;
  db.tmp_path_ = tmp;
  // No journal and no fsync: the file is only renamed into place once complete, so a crash can
  // only lose the temporary file, never corrupt a database that looks finished.
  db.exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;");
  db.exec(kSchema);
  return db;
}

FeatureDb FeatureDb::open(const std::string& path) {
  std::error_code ec;
  TORCH_CHECK(fs::exists(path, ec), describe(path), " does not exist");
  FeatureDb db;
  db.path_ = path;
  sqlite3* handle = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &handle, SQLITE_OPEN_READWRITE, nullptr);
  if (rc != SQLITE_OK) {
    const std::string msg = errmsg(handle);
    sqlite3_close(handle);
    TORCH_CHECK(false, describe(path), ": cannot open: ", msg);
  }
  db.db_ = handle;
  // A reader (e.g. the CLI) may hold the file while a writer adds rows; wait instead of failing.
  sqlite3_busy_timeout(handle, 10000);
  return db;
}

FeatureDb::FeatureDb(FeatureDb&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      path_(std::move(other.path_)),
      tmp_path_(std::exchange(other.tmp_path_, std::string())) {}

FeatureDb& FeatureDb::operator=(FeatureDb&& other) noexcept {
  if (this != &other) {
    release(db_, tmp_path_);
    db_ = std::exchange(other.db_, nullptr);
    path_ = std::move(other.path_);
    tmp_path_ = std::exchange(other.tmp_path_, std::string());
  }
  return *this;
}

FeatureDb::~FeatureDb() { release(db_, tmp_path_); }

void FeatureDb::exec(const std::string& sql) {
  TORCH_CHECK(db_ != nullptr, describe(path_), " is closed (in: ", one_line(sql), ")");
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    const std::string msg = err != nullptr ? err : errmsg(db_);
    sqlite3_free(err);
    TORCH_CHECK(false, describe(path_), ": ", msg, " (in: ", one_line(sql), ")");
  }
}

FeatureDb::Statement FeatureDb::prepare(const std::string& sql) {
  TORCH_CHECK(db_ != nullptr, describe(path_), " is closed (in: ", one_line(sql), ")");
  return Statement(db_, sql, describe(path_));
}

nlohmann::json FeatureDb::query(const std::string& sql) {
  TORCH_CHECK(db_ != nullptr, describe(path_), " is closed (in: ", one_line(sql), ")");
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    const std::string msg = errmsg(db_);
    sqlite3_finalize(stmt);
    TORCH_CHECK(false, describe(path_), ": ", msg, " (in: ", one_line(sql), ")");
  }
  // Finalizes on every path, including a throw from the JSON conversion.
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(stmt, &sqlite3_finalize);
  nlohmann::json rows = nlohmann::json::array();
  const int n = sqlite3_column_count(stmt);
  while (true) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      TORCH_CHECK(false, describe(path_), ": ", errmsg(db_), " (in: ", one_line(sql), ")");
    }
    nlohmann::json row = nlohmann::json::object();
    for (int i = 0; i < n; ++i) {
      const char* name = sqlite3_column_name(stmt, i);
      nlohmann::json& cell = row[name != nullptr ? name : std::to_string(i)];
      switch (sqlite3_column_type(stmt, i)) {
        case SQLITE_INTEGER:
          cell = static_cast<int64_t>(sqlite3_column_int64(stmt, i));
          break;
        case SQLITE_FLOAT:
          cell = sqlite3_column_double(stmt, i);
          break;
        case SQLITE_NULL:
          cell = nullptr;
          break;
        default: {  // TEXT, and BLOB as its bytes (no table here stores blobs)
          const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt, i));
          const int bytes = sqlite3_column_bytes(stmt, i);
          cell = p != nullptr ? std::string(p, static_cast<size_t>(bytes)) : std::string();
          break;
        }
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

void FeatureDb::commit() {
  TORCH_CHECK(db_ != nullptr, describe(path_), " is already closed");
  // With the journal off an open transaction cannot be rolled back safely; refuse instead of
  // renaming a database whose last rows may be missing.
  TORCH_CHECK(sqlite3_get_autocommit(db_) != 0, describe(path_),
              ": commit() inside an open transaction (missing exec(\"COMMIT\"))");
  // An implicit transaction commits only when the last running statement finishes, so a query
  // left mid-way (a loop that broke out of next()) would hold back rows written meanwhile.
  for (sqlite3_stmt* s = sqlite3_next_stmt(db_, nullptr); s != nullptr; s = sqlite3_next_stmt(db_, s)) {
    if (sqlite3_stmt_busy(s) != 0) sqlite3_reset(s);
  }
  const int rc = sqlite3_close_v2(db_);
  if (rc != SQLITE_OK) {
    TORCH_CHECK(false, describe(path_), ": cannot close: ", errmsg(db_));
  }
  db_ = nullptr;
  if (tmp_path_.empty()) return;
  std::error_code ec;
  fs::rename(tmp_path_, path_, ec);
  if (ec) {
    // The destructor removes the temporary file; the old database at path_ stays as it was.
    TORCH_CHECK(false, describe(path_), ": cannot rename '", tmp_path_, "' onto it: ", ec.message());
  }
  tmp_path_.clear();
}

// ---- Statement ----

FeatureDb::Statement::Statement(sqlite3* db, const std::string& sql, const std::string& where)
    : db_(db), where_(where) {
  TORCH_CHECK(db_ != nullptr, where_, " is closed (in: ", one_line(sql), ")");
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK) {
    const std::string msg = errmsg(db_);
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
    TORCH_CHECK(false, where_, ": ", msg, " (in: ", one_line(sql), ")");
  }
  // An empty string or a lone comment prepares to no statement; running it would be a silent no-op.
  TORCH_CHECK(stmt_ != nullptr, where_, ": no SQL statement (in: ", one_line(sql), ")");
}

FeatureDb::Statement::Statement(Statement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      stmt_(std::exchange(other.stmt_, nullptr)),
      where_(std::move(other.where_)) {}

FeatureDb::Statement::~Statement() {
  if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

namespace {

std::string statement_sql(sqlite3_stmt* stmt) {
  const char* s = stmt != nullptr ? sqlite3_sql(stmt) : nullptr;
  return s != nullptr ? one_line(s) : std::string();
}

}  // namespace

FeatureDb::Statement& FeatureDb::Statement::bind(int i, int64_t v) {
  TORCH_CHECK(stmt_ != nullptr, where_, ": statement was moved from");
  const int rc = sqlite3_bind_int64(stmt_, i, static_cast<sqlite3_int64>(v));
  TORCH_CHECK(rc == SQLITE_OK, where_, ": binding parameter ", i, ": ", errmsg(db_), " (in: ",
              statement_sql(stmt_), ")");
  return *this;
}

FeatureDb::Statement& FeatureDb::Statement::bind(int i, double v) {
  TORCH_CHECK(stmt_ != nullptr, where_, ": statement was moved from");
  const int rc = sqlite3_bind_double(stmt_, i, v);
  TORCH_CHECK(rc == SQLITE_OK, where_, ": binding parameter ", i, ": ", errmsg(db_), " (in: ",
              statement_sql(stmt_), ")");
  return *this;
}

FeatureDb::Statement& FeatureDb::Statement::bind(int i, const std::string& v) {
  TORCH_CHECK(stmt_ != nullptr, where_, ": statement was moved from");
  // SQLITE_TRANSIENT: SQLite copies the text, so callers may bind temporaries.
  const int rc = sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  TORCH_CHECK(rc == SQLITE_OK, where_, ": binding parameter ", i, ": ", errmsg(db_), " (in: ",
              statement_sql(stmt_), ")");
  return *this;
}

void FeatureDb::Statement::run() {
  TORCH_CHECK(stmt_ != nullptr, where_, ": statement was moved from");
  const int rc = sqlite3_step(stmt_);
  // The message must be read before reset, which may replace it.
  const std::string msg = rc == SQLITE_DONE ? std::string()
                          : rc == SQLITE_ROW ? std::string("statement returns rows; use next()")
                                             : errmsg(db_);
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  TORCH_CHECK(rc == SQLITE_DONE, where_, ": ", msg, " (in: ", statement_sql(stmt_), ")");
}

bool FeatureDb::Statement::next() {
  TORCH_CHECK(stmt_ != nullptr, where_, ": statement was moved from");
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  const std::string msg = rc == SQLITE_DONE ? std::string() : errmsg(db_);
  // Reset so the statement can be stepped again (with the same or new bindings).
  sqlite3_reset(stmt_);
  TORCH_CHECK(rc == SQLITE_DONE, where_, ": ", msg, " (in: ", statement_sql(stmt_), ")");
  return false;
}

int64_t FeatureDb::Statement::column_int(int i) {
  TORCH_CHECK(stmt_ != nullptr, where_, ": statement was moved from");
  return static_cast<int64_t>(sqlite3_column_int64(stmt_, i));
}

double FeatureDb::Statement::column_double(int i) {
  TORCH_CHECK(stmt_ != nullptr, where_, ": statement was moved from");
  return sqlite3_column_double(stmt_, i);
}

std::string FeatureDb::Statement::column_text(int i) {
  TORCH_CHECK(stmt_ != nullptr, where_, ": statement was moved from");
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
  // Bytes must be read after the text conversion, which can change the representation.
  const int bytes = sqlite3_column_bytes(stmt_, i);
  return p != nullptr ? std::string(p, static_cast<size_t>(bytes)) : std::string();
}

}  // namespace saelab
