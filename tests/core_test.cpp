#include <gtest/gtest-spi.h>
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
  EXPECT_THROWS_WITH(read_file("/nonexistent/x.model", "tokenizer model"),
                     "tokenizer model '/nonexistent/x.model' does not exist");
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
  EXPECT_THROWS_WITH(f.finish(), "cfg.json: unknown key 'typo' (valid keys: lr, name, steps)");
}

TEST(JsonFields, NamesTheKeyWithTheWrongType) {
  const json j = json::parse(R"({"steps": "ten"})");
  JsonFields f(j, "cfg.json: train");
  int64_t steps = 0;
  EXPECT_THROWS_WITH(f.read("steps", steps), "cfg.json: train: key 'steps' must be an integer (got \"ten\")");
}

TEST(LoadJsonFile, ReportsTheParsePosition) {
  test::TempDir dir;
  test::write_text(dir / "bad.json", "{\"a\": 1,,}");
  EXPECT_THROWS_WITH(load_json_file(dir / "bad.json", "config"),
                     "config '" + (dir / "bad.json") + "' is not valid JSON (byte 9: ", "unexpected ','");
}

// The assertion helpers of tests/test_util.h, which every other test relies on.
TEST(TestHelpers, ExpectThrowsWithFailsUnlessTheMessageHoldsEverySubstring) {
  EXPECT_THROWS_WITH(TORCH_CHECK(false, "bad value (got 3)"), "bad value (got 3)");
  EXPECT_THROWS_WITH(throw std::runtime_error("disk full"), "disk", "full");
  EXPECT_NONFATAL_FAILURE(EXPECT_THROWS_WITH((void)0, "x"), "did not throw; expected an error containing \"x\"");
  EXPECT_NONFATAL_FAILURE(EXPECT_THROWS_WITH(TORCH_CHECK(false, "other"), "bad value"),
                          "threw \"other\", which does not contain \"bad value\"");
  EXPECT_NONFATAL_FAILURE(EXPECT_THROWS_WITH(throw std::runtime_error("disk full"), "disk", "empty"),
                          "which does not contain \"empty\"");
  EXPECT_NONFATAL_FAILURE(EXPECT_THROWS_WITH(throw 3, "x"), "threw something that is not a std::exception");
}

TEST(TestHelpers, ToleranceHelpersScaleWithTheMagnitudeCompared) {
  EXPECT_TRUE(test::near_rel(100.0005, 100.0, 1e-5, 0));
  EXPECT_FALSE(test::near_rel(100.002, 100.0, 1e-5, 0));
  EXPECT_TRUE(test::near_rel(1e-9, 0.0, 1e-5, 1e-8));
  EXPECT_FALSE(test::near_rel(std::nan(""), 1.0, 1e-5, 1e-5));
  const torch::Tensor want = torch::tensor({10.0f, -0.001f});  // the bound is 1e-5 · 10: 1e-4 for both entries
  EXPECT_TRUE(test::all_close(want + 5e-5, want, 1e-5, 0));
  const ::testing::AssertionResult off = test::all_close(want + 2e-4, want, 1e-5, 0);
  EXPECT_FALSE(off);
  EXPECT_NE(std::string(off.message()).find("max|want| = 10"), std::string::npos) << off.message();
  EXPECT_FALSE(test::all_close(torch::tensor({std::nanf(""), 0.0f}), want, 1e-5, 1));
  EXPECT_FALSE(test::all_close(want.view({2, 1}), want, 1, 1));
}

TEST(FormatDuration, WritesHoursMinutesSeconds) {
  EXPECT_EQ(format_duration(5), "5s");
  EXPECT_EQ(format_duration(185), "3m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
}

}  // namespace
}  // namespace saelab
