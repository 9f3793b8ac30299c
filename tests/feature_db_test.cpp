#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "analysis/feature_db.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

namespace fs = std::filesystem;

// The message `f` throws (empty, and a failure, when it does not throw).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return test::exception_message(e);
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

// One row in every table, written the way the pipeline writes: prepared statements in a
// transaction, plus plain SQL.
void fill_every_table(FeatureDb& db) {
  db.exec("BEGIN");
  db.prepare("INSERT INTO saes VALUES (?, ?, ?, ?, ?, ?, ?)")
      .bind(1, "gpt2-l6-topk")
      .bind(2, "runs/l6/topk")
      .bind(3, "blocks.6.hook_resid_post")
      .bind(4, "topk")
      .bind(5, int64_t{768})
      .bind(6, int64_t{24576})
      .bind(7, int64_t{5'000'000'000})
      .run();
  FeatureDb::Statement features = db.prepare("INSERT INTO features VALUES (?, ?, ?, ?, ?)");
  for (int64_t f = 0; f < 3; ++f) {
    features.bind(1, "gpt2-l6-topk").bind(2, f).bind(3, 0.01 * (f + 1)).bind(4, 0.5).bind(5, 2.25).run();
  }
  // The quantile example has a band, the top example none (NULL).
  db.exec(
      "INSERT INTO examples (id, sae, feature, kind, rank, band, activation, context, position, doc) VALUES "
      "(1, 'gpt2-l6-topk', 2, 'top', 0, NULL, 3.5, 17, 1, 'ca01'), "
      "(2, 'gpt2-l6-topk', 2, 'quantile', 0, 3, 0.75, 4, 2, 'cb02')");
  db.prepare("INSERT INTO example_tokens VALUES (?, ?, ?, ?, ?)")
      .bind(1, int64_t{1})
      .bind(2, int64_t{-1})
      .bind(3, int64_t{262})
      .bind(4, "the")
      .bind(5, 0.0)
      .run();
  db.exec("INSERT INTO example_tokens VALUES (1, 0, 3797, ' cat', 3.5)");
  db.exec("INSERT INTO token_features VALUES ('gpt2-l6-topk', 262, 'the', 2, 40, 1.25)");
  db.exec("INSERT INTO logit_effects VALUES ('gpt2-l6-topk', 2, 'promoted', 0, 3797, ' cat', 0.875)");
  db.prepare("INSERT INTO explanations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
      .bind(1, "gpt2-l6-topk")
      .bind(2, int64_t{2})
      .bind(3, "rule")
      .bind(4, "the token \"cat\" & friends")
      .bind(5, "{\"tokens\": [\" cat\"]}")
      .bind(6, 0.5)
      .bind(7, 0.625)
      .bind(8, int64_t{200})
      .bind(9, 0.75)
      .bind(10, 0.5)
      .bind(11, int64_t{1})
      .run();
  db.exec("COMMIT");
}

TEST(FeatureDb, KeepsRowsOfEveryTableWithTheirTypesAfterCommitAndReopen) {
  test::TempDir dir;
  // The parent folder does not exist yet: create() makes it.
  const std::string path = dir / "out/features.sqlite";
  {
    FeatureDb db = FeatureDb::create(path);
    EXPECT_EQ(db.path(), path);
    fill_every_table(db);
    EXPECT_FALSE(fs::exists(path)) << "the database must not appear before commit()";
    EXPECT_TRUE(fs::exists(path + ".tmp"));
    db.commit();
  }
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  FeatureDb db = FeatureDb::open(path);
  const nlohmann::json saes = db.query("SELECT * FROM saes");
  ASSERT_EQ(saes.size(), 1u);
  EXPECT_EQ(saes[0]["sae"], "gpt2-l6-topk");
  EXPECT_EQ(saes[0]["dir"], "runs/l6/topk");
  EXPECT_EQ(saes[0]["hook"], "blocks.6.hook_resid_post");
  EXPECT_EQ(saes[0]["architecture"], "topk");
  ASSERT_TRUE(saes[0]["d_sae"].is_number_integer());
  EXPECT_EQ(saes[0]["d_in"].get<int64_t>(), 768);
  EXPECT_EQ(saes[0]["d_sae"].get<int64_t>(), 24576);
  EXPECT_EQ(saes[0]["tokens_seen"].get<int64_t>(), 5'000'000'000);

  const nlohmann::json features = db.query("SELECT feature, density, max_activation FROM features ORDER BY feature");
  ASSERT_EQ(features.size(), 3u);
  for (int64_t f = 0; f < 3; ++f) {
    EXPECT_EQ(features[f]["feature"].get<int64_t>(), f);
    ASSERT_TRUE(features[f]["density"].is_number_float());
    EXPECT_DOUBLE_EQ(features[f]["density"].get<double>(), 0.01 * (f + 1));
    EXPECT_DOUBLE_EQ(features[f]["max_activation"].get<double>(), 2.25);
  }

  const nlohmann::json examples = db.query("SELECT * FROM examples ORDER BY id");
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_EQ(examples[0]["kind"], "top");
  EXPECT_TRUE(examples[0]["band"].is_null());
  EXPECT_EQ(examples[0]["context"].get<int64_t>(), 17);
  EXPECT_EQ(examples[0]["doc"], "ca01");
  EXPECT_EQ(examples[1]["kind"], "quantile");
  EXPECT_EQ(examples[1]["band"].get<int64_t>(), 3);
  EXPECT_DOUBLE_EQ(examples[1]["activation"].get<double>(), 0.75);

  // offset is an SQL keyword but usable as a column name; negative offsets come before the position.
  const nlohmann::json tokens = db.query("SELECT offset, token, activation FROM example_tokens ORDER BY offset");
  ASSERT_EQ(tokens.size(), 2u);
  EXPECT_EQ(tokens[0]["offset"].get<int64_t>(), -1);
  EXPECT_EQ(tokens[0]["token"], "the");
  ASSERT_TRUE(tokens[0]["activation"].is_number_float());
  EXPECT_EQ(tokens[1]["token"], " cat");

  const nlohmann::json token_features = db.query("SELECT * FROM token_features");
  ASSERT_EQ(token_features.size(), 1u);
  EXPECT_EQ(token_features[0]["count"].get<int64_t>(), 40);
  EXPECT_DOUBLE_EQ(token_features[0]["mean_activation"].get<double>(), 1.25);

  const nlohmann::json effects = db.query("SELECT * FROM logit_effects");
  ASSERT_EQ(effects.size(), 1u);
  EXPECT_EQ(effects[0]["direction"], "promoted");
  EXPECT_EQ(effects[0]["token_id"].get<int64_t>(), 3797);
  EXPECT_DOUBLE_EQ(effects[0]["effect"].get<double>(), 0.875);

  const nlohmann::json explanations = db.query("SELECT * FROM explanations");
  ASSERT_EQ(explanations.size(), 1u);
  EXPECT_EQ(explanations[0]["explanation"], "the token \"cat\" & friends");
  EXPECT_EQ(explanations[0]["rule"], "{\"tokens\": [\" cat\"]}");
  EXPECT_DOUBLE_EQ(explanations[0]["score"].get<double>(), 0.625);
  EXPECT_EQ(explanations[0]["scored_tokens"].get<int64_t>(), 200);
  EXPECT_DOUBLE_EQ(explanations[0]["precision"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(explanations[0]["recall"].get<double>(), 0.5);
  EXPECT_EQ(explanations[0]["scorable"].get<int64_t>(), 1);

  {
    // Prepared queries step through rows and can run again after the last one.
    FeatureDb::Statement select =
        db.prepare("SELECT feature, density, sae FROM features WHERE feature >= ? ORDER BY feature");
    select.bind(1, int64_t{1});
    std::vector<int64_t> seen;
    while (select.next()) {
      seen.push_back(select.column_int(0));
      EXPECT_GT(select.column_double(1), 0.0);
      EXPECT_EQ(select.column_text(2), "gpt2-l6-topk");
    }
    EXPECT_EQ(seen, (std::vector<int64_t>{1, 2}));
    EXPECT_TRUE(select.next());
  }

  // An opened database takes more rows in place; commit() only closes it.
  db.exec("INSERT INTO saes (sae, architecture) VALUES ('second', 'gated')");
  db.commit();
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(FeatureDb::open(path).query("SELECT sae FROM saes").size(), 2u);
}

TEST(FeatureDb, DroppedWithoutCommitLeavesNoFileBehind) {
  test::TempDir dir;
  const std::string path = dir / "features.sqlite";
  {
    FeatureDb db = FeatureDb::create(path);
    fill_every_table(db);
    // Moving keeps one owner: only the last one closes and deletes the temporary file.
    FeatureDb moved = std::move(db);
    EXPECT_TRUE(fs::exists(path + ".tmp"));
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(FeatureDb, ErrorsNameTheDatabaseAndTheProblem) {
  test::TempDir dir;
  const std::string path = dir / "features.sqlite";
  FeatureDb db = FeatureDb::create(path);

  EXPECT_THROWS_WITH(db.exec("SELEC 1"), path, "syntax error", "SELEC 1");
  EXPECT_THROWS_WITH(db.query("SELEC feature FROM features"), path, "syntax error");
  EXPECT_THROWS_WITH(db.prepare("SELECT nope FROM features"), path, "no such column");

  // A failed insert leaves the statement usable for the next row.
  FeatureDb::Statement insert = db.prepare("INSERT INTO saes (sae) VALUES (?)");
  insert.bind(1, "a").run();
  EXPECT_THROWS_WITH(insert.bind(1, "a").run(), "UNIQUE");
  insert.bind(1, "b").run();
  EXPECT_EQ(db.query("SELECT sae FROM saes").size(), 2u);

  const std::string missing_path = dir / "missing.sqlite";
  EXPECT_THROWS_WITH(FeatureDb::open(missing_path), "feature database '" + missing_path + "' does not exist");
}

TEST(FeatureDb, AnswersWhichFeaturesFireMostOnAToken) {
  test::TempDir dir;
  const std::string path = dir / "features.sqlite";
  {
    FeatureDb db = FeatureDb::create(path);
    db.exec("BEGIN");
    FeatureDb::Statement insert = db.prepare("INSERT INTO token_features VALUES ('s', ?, ?, ?, ?, ?)");
    struct Row {
      int64_t token_id;
      const char* token;
      int64_t feature, count;
    };
    // "cat" has the largest counts overall, so a query that ignored the token would be caught.
    const std::vector<Row> rows = {
        {262, "the", 5, 40}, {262, "the", 9, 75}, {262, "the", 2, 10}, {262, "the", 11, 60},
        {3797, "cat", 5, 100}, {3797, "cat", 7, 90}, {3797, "cat", 9, 80},
    };
    for (const Row& r : rows) {
      insert.bind(1, r.token_id).bind(2, r.token).bind(3, r.feature).bind(4, r.count).bind(5, 1.0).run();
    }
    db.exec("COMMIT");
    db.commit();
  }
  FeatureDb db = FeatureDb::open(path);
  const nlohmann::json top =
      db.query("SELECT feature FROM token_features WHERE token = 'the' ORDER BY count DESC LIMIT 2");
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0]["feature"].get<int64_t>(), 9);
  EXPECT_EQ(top[1]["feature"].get<int64_t>(), 11);
}

TEST(FeatureDb, TransactionKeepsRowsWhenItReturnsAndRollsThemBackWhenItThrows) {
  test::TempDir dir;
  const std::string path = dir / "features.sqlite";
  {
    FeatureDb db = FeatureDb::create(path);
    db.transaction([&] { db.exec("INSERT INTO saes (sae) VALUES ('kept')"); });
    const auto failing_writer = [&] {
      db.prepare("INSERT INTO saes (sae) VALUES (?)").bind(1, "rolled back").run();
      throw std::runtime_error("the writer failed");
    };
    EXPECT_THROWS_WITH(db.transaction(failing_writer), "the writer failed");
    // A statement that fails inside takes the rows written before it along.
    const auto failing_insert = [&] {
      db.exec("INSERT INTO saes (sae) VALUES ('also rolled back')");
      db.exec("INSERT INTO saes (sae) VALUES ('kept')");
    };
    EXPECT_THROWS_WITH(db.transaction(failing_insert), path, "UNIQUE");
    EXPECT_THROWS_WITH(db.transaction([&] { db.transaction([] {}); }), path, "within a transaction", "BEGIN");
    EXPECT_EQ(db.query("SELECT sae FROM saes"), nlohmann::json::parse(R"([{"sae": "kept"}])"));
    // No transaction was left open, or commit() would refuse.
    db.commit();
  }
  // A database opened in place (its journal on disk) rolls back the same way.
  FeatureDb db = FeatureDb::open(path);
  const auto failing_delete = [&] {
    db.exec("DELETE FROM saes");
    throw std::runtime_error("stop");
  };
  EXPECT_THROWS_WITH(db.transaction(failing_delete), "stop");
  EXPECT_EQ(db.query("SELECT sae FROM saes").size(), 1u);
}

TEST(FeatureDb, CommitRefusesInsideAnOpenTransaction) {
  test::TempDir dir;
  const std::string path = dir / "features.sqlite";
  FeatureDb db = FeatureDb::create(path);
  db.exec("BEGIN");
  db.exec("INSERT INTO saes (sae) VALUES ('a')");
  EXPECT_THROWS_WITH(db.commit(), path, "commit() inside an open transaction");
  EXPECT_FALSE(fs::exists(path));
  db.exec("COMMIT");
  db.commit();
  EXPECT_EQ(FeatureDb::open(path).query("SELECT sae FROM saes").size(), 1u);
}

TEST(FeatureDb, AQueryLeftMidwayHoldsBackNeitherRowsNorLocks) {
  test::TempDir dir;
  const std::string path = dir / "features.sqlite";
  {
    FeatureDb db = FeatureDb::create(path);
    db.exec("INSERT INTO saes (sae) VALUES ('a'), ('b')");
    db.commit();
  }
  FeatureDb db = FeatureDb::open(path);
  FeatureDb::Statement select = db.prepare("SELECT sae FROM saes ORDER BY sae");
  ASSERT_TRUE(select.next());  // one row still to come
  db.exec("INSERT INTO saes (sae) VALUES ('c')");
  db.commit();
  // Another connection sees the row and writes at once: a read lock left behind would make it wait
  // out the busy timeout and fail with "database is locked".
  FeatureDb other = FeatureDb::open(path);
  other.exec("INSERT INTO saes (sae) VALUES ('d')");
  EXPECT_EQ(other.query("SELECT sae FROM saes").size(), 4u);
  EXPECT_THROWS_WITH(select.next(), path, "is closed", "SELECT sae FROM saes ORDER BY sae");
}

TEST(FeatureDb, AStatementThatOutlivesItsDatabaseRefusesToRunAndIsDestroyedSafely) {
  test::TempDir dir;
  const std::string path = dir / "features.sqlite";
  std::optional<FeatureDb::Statement> insert;
  {
    FeatureDb db = FeatureDb::create(path);
    insert.emplace(db.prepare("INSERT INTO saes (sae) VALUES (?)"));
    insert->bind(1, "a").run();
  }  // dropped without commit()
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_THROWS_WITH(insert->bind(1, "b"), path, "is closed", "INSERT INTO saes (sae) VALUES (?)");
  insert.reset();

  // After commit() it cannot write into the published database either.
  std::optional<FeatureDb::Statement> late;
  {
    FeatureDb db = FeatureDb::create(path);
    late.emplace(db.prepare("INSERT INTO saes (sae) VALUES ('late')"));
    db.commit();
  }
  EXPECT_THROWS_WITH(late->run(), path, "is closed");
  late.reset();
  EXPECT_EQ(FeatureDb::open(path).query("SELECT sae FROM saes").size(), 0u);

  // A moved-from statement says so instead of crashing.
  FeatureDb db = FeatureDb::open(path);
  FeatureDb::Statement from = db.prepare("SELECT sae FROM saes");
  FeatureDb::Statement to = std::move(from);
  EXPECT_FALSE(to.next());
  EXPECT_THROWS_WITH(from.next(), "moved from");
}

TEST(FeatureDb, ErrorsAreOneLineNamingTheFileAndTheShortenedStatement) {
  test::TempDir dir;
  const std::string path = dir / "features.sqlite";
  FeatureDb db = FeatureDb::create(path);

  std::string sql = "SELECT feature,\n       density\nFROM nope\nWHERE feature IN (0";
  for (int i = 1; i < 100; ++i) sql += ", " + std::to_string(i);
  sql += ")";
  const std::string message = error_of([&] { db.exec(sql); });
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  const std::string head = "feature database '" + path + "': no such table: nope (in: ";
  EXPECT_EQ(message.rfind(head + "SELECT feature, density FROM nope WHERE feature IN (0, 1, 2", 0), 0u) << message;
  // one_line keeps 200 characters of the statement.
  EXPECT_EQ(message.size(), head.size() + 200 + 4) << message;
  EXPECT_EQ(message.substr(message.size() - 4), "...)") << message;

  EXPECT_THROWS_WITH(db.prepare("INSERT INTO saes (sae) VALUES (?)").bind(2, "x"), path, "binding parameter 2",
                     "column index out of range", "(in: INSERT INTO saes (sae) VALUES (?))");
  EXPECT_THROWS_WITH(db.prepare("SELECT sae FROM saes").column_text(0), path, "(in: SELECT sae FROM saes)");
  EXPECT_THROWS_WITH(db.prepare("SELECT 1").run(), path, "statement returns rows; use next()");
  EXPECT_THROWS_WITH(db.prepare("  -- nothing but a comment"), path, "no SQL statement");

  // A file that is not a database is named on first use.
  const std::string not_db = dir / "notes.sqlite";
  test::write_text(not_db, "these are notes, not a database\n");
  EXPECT_THROWS_WITH(FeatureDb::open(not_db).query("SELECT * FROM saes"), "feature database '" + not_db + "'",
                     "file is not a database");
  // A folder that cannot be made.
  test::write_text(dir / "blocker", "");
  EXPECT_THROWS_WITH(FeatureDb::create(dir / "blocker/features.sqlite"), "cannot create folder");

  db.commit();
  EXPECT_THROWS_WITH(db.exec("SELECT 1"), path, "is closed", "SELECT 1");
  EXPECT_THROWS_WITH(db.commit(), path, "already closed");
}

TEST(FeatureDb, RecordsItsSchemaVersionMigratesVersionZeroAndRefusesALaterOne) {
  test::TempDir dir;
  const std::string current = dir / "current.sqlite";
  FeatureDb::create(current).commit();
  EXPECT_EQ(FeatureDb::open(current).schema_version(), kFeatureDbSchemaVersion);

  // A database as saelab wrote it before versions were recorded: no notes table, user_version 0.
  const std::string old = dir / "old.sqlite";
  {
    FeatureDb db = FeatureDb::create(old);
    db.exec("DROP TABLE notes; DROP TABLE histograms; PRAGMA user_version = 0;");
    db.exec("INSERT INTO saes (sae, hook, d_sae) VALUES ('blocks.1.input/topk', 'blocks.1.input', 8)");
    db.commit();
  }
  {
    FeatureDb db = FeatureDb::open(old);
    EXPECT_EQ(db.schema_version(), kFeatureDbSchemaVersion);
    EXPECT_EQ(db.query("SELECT sae, d_sae FROM saes"),
              nlohmann::json::parse(R"([{"sae": "blocks.1.input/topk", "d_sae": 8}])"));
    EXPECT_TRUE(db.query("SELECT note FROM notes").empty());
    EXPECT_TRUE(db.query("SELECT counts FROM histograms").empty());
    db.exec("INSERT INTO notes (topic, note) VALUES ('logit_effects', 'all tokens ranked')");
    db.commit();
  }
  EXPECT_EQ(FeatureDb::open(old).query("SELECT note FROM notes").size(), 1u);
  // Version 1 (notes, no histograms) gains the histograms table.
  const std::string v1 = dir / "v1.sqlite";
  {
    FeatureDb db = FeatureDb::create(v1);
    db.exec("DROP TABLE histograms; PRAGMA user_version = 1;");
    db.commit();
  }
  EXPECT_EQ(FeatureDb::open(v1).schema_version(), kFeatureDbSchemaVersion);
  EXPECT_TRUE(FeatureDb::open(v1).query("SELECT counts FROM histograms").empty());

  // A later saelab's database is refused, naming both versions.
  const std::string later = dir / "later.sqlite";
  {
    FeatureDb db = FeatureDb::create(later);
    db.exec("PRAGMA user_version = 7");
    db.commit();
  }
  EXPECT_THROWS_WITH(FeatureDb::open(later), "feature database '" + later + "'", "has schema version 7",
                     "reads versions up to " + std::to_string(kFeatureDbSchemaVersion));

  // Some other SQLite file is not taken for an old saelab database.
  const std::string other = dir / "other.sqlite";
  {
    FeatureDb db = FeatureDb::create(other);
    db.exec("DROP TABLE saes; DROP TABLE features; PRAGMA user_version = 0;");
    db.commit();
  }
  EXPECT_THROWS_WITH(FeatureDb::open(other), "feature database '" + other + "'", "is not a saelab feature database");
}

TEST(FeatureDb, OpenWaitsForABusyDatabaseInsteadOfFailing) {
  test::TempDir dir;
  const std::string path = dir / "features.sqlite";
  FeatureDb::create(path).commit();
  const nlohmann::json timeout = FeatureDb::open(path).query("PRAGMA busy_timeout");
  ASSERT_EQ(timeout.size(), 1u);
  EXPECT_EQ(timeout[0]["timeout"].get<int64_t>(), 10000);
}

}  // namespace
}  // namespace saelab
