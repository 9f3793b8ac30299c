// Helpers shared by the tests: paths, temporary folders, running commands, and assertions (error
// text, tolerances relative to the magnitude compared).
#pragma once
#include <gtest/gtest.h>
#include <torch/script.h>

#include <filesystem>
#include <initializer_list>
#include <string>

#include "models/gpt.h"
#include "models/model_bundle.h"
#include "tests/test_config.h"  // SAELAB_PEERS_PYTHON, SAELAB_TEST_PYTHON, SAELAB_TORCHRUN (tests/CMakeLists.txt)

namespace saelab::test {

namespace fs = std::filesystem;

/// The data cache scripts/setup fills (.cache/ in the source tree).
std::string cache_dir();
std::string brown_dir();
std::string gpt2_dir();
std::string saelab_binary();

/// A fresh temporary folder, removed when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  ///< stdout and stderr together
};

/// Runs a shell command and captures its output.
CommandResult run_command(const std::string& command);

void write_text(const std::string& path, const std::string& text);

/// Headless Chromium (Debian's package, installed by scripts/setup): the DOM after scripts ran.
std::string chromium_dom(const std::string& url);
/// A screenshot of `url` into `png`.
void chromium_screenshot(const std::string& url, const std::string& png);
/// The opening <body ...> tag of a DOM dump: the report records script errors (and a hostile
/// payload would record itself) as attributes there.
std::string body_tag(const std::string& dom);
/// How often `what` occurs in `s`.
int count(const std::string& s, const std::string& what);

/// The last non-empty line of a command's output (where saelab prints its one-line errors).
std::string last_line(const std::string& output);

/// Writes acts [n, d] as a complete activation store for `hook` in `dir` (provenance made up).
void write_activation_store(const std::string& dir, const torch::Tensor& acts, const std::string& hook,
                            int64_t shard_rows);

/// Saves `module` (built from `config`) as a model folder with the cached GPT-2 tokenizer
/// (absolute paths) and residual aliases; returns the model.json written.
ModelInfo write_model_folder(torch::jit::Module& module, const GptConfig& config, const std::string& folder);

// ---- assertions ----

/// Whether max|got − want| ≤ rtol·max|want| + atol (over the whole tensor, in float64: float32
/// results differ in the last bits from one CPU to another, and the bound scales with what is
/// compared). Shapes must match. On failure the message gives max|got − want|, max|want| and the
/// bound. Use as EXPECT_TRUE(test::all_close(got, want, 1e-5, 0)).
::testing::AssertionResult all_close(const torch::Tensor& got, const torch::Tensor& want, double rtol, double atol);

/// Whether |a − b| ≤ rtol·|b| + atol; on failure the message gives |a − b|, |b| and the bound.
::testing::AssertionResult near_rel(double a, double b, double rtol, double atol);

/// The text an exception carries: c10::Error::msg() (no backtrace, no context), else what().
std::string exception_message(const std::exception& e);

/// Whether `statement` throws a std::exception whose message (exception_message) contains every
/// one of `substrings`; the failure message shows what was thrown. Used by EXPECT_THROWS_WITH.
template <class F>
::testing::AssertionResult throws_with(F&& statement, const char* statement_text,
                                       std::initializer_list<std::string> substrings) {
  try {
    statement();
  } catch (const std::exception& e) {
    const std::string message = exception_message(e);
    for (const std::string& s : substrings) {
      if (message.find(s) == std::string::npos) {
        return ::testing::AssertionFailure() << statement_text << " threw \"" << message
                                             << "\", which does not contain \"" << s << "\"";
      }
    }
    return ::testing::AssertionSuccess();
  } catch (...) {
    return ::testing::AssertionFailure() << statement_text << " threw something that is not a std::exception";
  }
  ::testing::AssertionResult r = ::testing::AssertionFailure();
  r << statement_text << " did not throw; expected an error containing";
  for (const std::string& s : substrings) r << " \"" << s << "\"";
  return r;
}

}  // namespace saelab::test

/// Expects `statement` to throw an error whose message contains `substring` (and every further
/// substring given: EXPECT_THROWS_WITH(f(), "file 'x'", "is corrupt")); a message compared in full
/// is passed whole. Non-fatal, like EXPECT_*; more context can be streamed after it with <<.
#define EXPECT_THROWS_WITH(statement, ...)                                                             \
  switch (0)                                                                                         \
  case 0:                                                                                            \
  default:                                                                                           \
    if (const ::testing::AssertionResult saelab_throws_with_ =                                       \
            ::saelab::test::throws_with([&]() -> void { statement; }, #statement, {__VA_ARGS__})) \
      ;                                                                                              \
    else                                                                                             \
      ADD_FAILURE() << saelab_throws_with_.message()
