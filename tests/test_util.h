// Helpers shared by the tests: paths, temporary folders, running commands.
#pragma once
#include <torch/script.h>

#include <filesystem>
#include <string>

#include "models/gpt.h"
#include "models/model_bundle.h"

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

/// The last non-empty line of a command's output (where saelab prints its one-line errors).
std::string last_line(const std::string& output);

/// Writes acts [n, d] as a complete activation store for `hook` in `dir` (provenance made up).
void write_activation_store(const std::string& dir, const torch::Tensor& acts, const std::string& hook,
                            int64_t shard_rows);

/// Saves `module` (built from `config`) as a model folder with the cached GPT-2 tokenizer
/// (absolute paths) and residual aliases; returns the model.json written.
ModelInfo write_model_folder(torch::jit::Module& module, const GptConfig& config, const std::string& folder);

}  // namespace saelab::test
