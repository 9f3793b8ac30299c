// File helpers with errors that name the file, and atomic writes (temporary file + rename).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace saelab {

namespace fs = std::filesystem;

/// Reads a whole file; `what` names it in errors ("tokenizer model", "config").
std::string read_file(const fs::path& path, std::string_view what);

/// Throws "<what> '<path>' does not exist" unless `path` is a regular file.
void require_file(const fs::path& path, std::string_view what);

/// Writes `data` to `path` via a temporary file in the same folder and a rename, so readers
/// never see a partial file. Creates the parent folder.
void write_file_atomic(const fs::path& path, std::string_view data);

/// Runs `write(tmp_path)` and renames the result onto `path`; the temporary file is removed if
/// `write` throws. For writers that take a path (torch::save, Module::save).
template <class Writer>
void write_atomic_with(const fs::path& path, Writer&& write);

/// Keeps the lines of a JSON-lines log whose "step" is at most `step` (a resumed run rewrites what
/// came after); a line cut short by a kill is dropped. No-op when the file does not exist.
void truncate_jsonl_steps(const fs::path& path, int64_t step);

/// Lowercase hex SHA-256 of a file's bytes (identifies a model file in manifests and metadata).
std::string sha256_file(const fs::path& path);

/// Lowercase hex SHA-256 of a byte string.
std::string sha256_hex(std::string_view data);

// ---- implementation ----
fs::path temporary_sibling(const fs::path& path);
void commit_temporary(const fs::path& tmp, const fs::path& path);

template <class Writer>
void write_atomic_with(const fs::path& path, Writer&& write) {
  const fs::path tmp = temporary_sibling(path);
  try {
    write(tmp);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  commit_temporary(tmp, path);
}

}  // namespace saelab
