#include <gtest/gtest.h>

#include "core/files.h"
#include "core/json_options.h"
#include "core/progress.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

TEST(Sha256, MatchesThePublishedTestVectors) {
  // FIPS 180-2 appendix B examples.
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256, OfAFileEqualsOfItsBytes) {
  test::TempDir dir;
  const std::string data(100000, 'x');
  write_file_atomic(dir / "f.bin", data);
  EXPECT_EQ(sha256_file(dir / "f.bin"), sha256_hex(data));
}

TEST(AtomicWrite, ReplacesTheFileAndLeavesNoTemporaries) {
  test::TempDir dir;
  write_file_atomic(dir / "sub/a.txt", "first");
  write_file_atomic(dir / "sub/a.txt", "second");
  EXPECT_EQ(read_file(dir / "sub/a.txt", "test file"), "second");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path() / "sub")) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(AtomicWrite, AFailingWriterLeavesTheOldFileIntact) {
  test::TempDir dir;
  write_file_atomic(dir / "a.txt", "old");
  EXPECT_THROW(write_atomic_with(dir / "a.txt",
                                 [](const fs::path& tmp) {
                                   test::write_text(tmp.string(), "partial");
                                   throw std::runtime_error("disk full");
                                 }),
               std::runtime_error);
  EXPECT_EQ(read_file(dir / "a.txt", "test file"), "old");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(ReadFile, NamesTheMissingFile) {
  try {
    read_file("/nonexistent/x.model", "tokenizer model");
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_EQ(std::string(e.msg()), "tokenizer model '/nonexistent/x.model' does not exist");
  }
}

TEST(JsonFields, ReadsKnownKeysAndRejectsUnknownOnes) {
  const json j = json::parse(R"({"steps": 10, "lr": 0.5, "name": "x", "typo": 1})");
  JsonFields f(j, "cfg.json");
  int64_t steps = 0;
  double lr = 0;
  std::string name;
  f.read("steps", steps);
  f.read("lr", lr);
  f.read("name", name);
  EXPECT_EQ(steps, 10);
  EXPECT_EQ(lr, 0.5);
  EXPECT_EQ(name, "x");
  try {
    f.finish();
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_EQ(std::string(e.msg()), "cfg.json: unknown key 'typo' (valid keys: lr, name, steps)");
  }
}

TEST(JsonFields, NamesTheKeyWithTheWrongType) {
  const json j = json::parse(R"({"steps": "ten"})");
  JsonFields f(j, "cfg.json: train");
  int64_t steps = 0;
  try {
    f.read("steps", steps);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_EQ(std::string(e.msg()), "cfg.json: train: key 'steps' must be an integer (got \"ten\")");
  }
}

TEST(LoadJsonFile, ReportsTheParsePosition) {
  test::TempDir dir;
  test::write_text(dir / "bad.json", "{\"a\": 1,,}");
  try {
    load_json_file(dir / "bad.json", "config");
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.msg()).find("config '" + (dir / "bad.json") + "' is not valid JSON (byte 9)"),
              std::string::npos)
        << e.msg();
  }
}

TEST(FormatDuration, WritesHoursMinutesSeconds) {
  EXPECT_EQ(format_duration(5), "5s");
  EXPECT_EQ(format_duration(185), "3m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
}

}  // namespace
}  // namespace saelab
