// File helpers with errors that name the file, and atomic writes (temporary file + rename).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <streambuf>
#include <map>
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

/// Where write_atomic_stream's producer writes: `sink(data, n)` always returns n, even after a
/// failed write (torch's zip writer calls it again from its destructor when a write fails, and a
/// throw there aborts the process: "terminate called after throwing c10::Error").
using ByteSink = std::function<size_t(const void*, size_t)>;

/// Writes the bytes `produce(sink)` emits to `path` atomically (temporary file, fsync, rename).
/// The first failed write (a full disk, a file-size limit) is thrown, naming the file, after
/// `produce` returns; the temporary file is removed and `path` is left as it was. For torch
/// writers: `[&](const ByteSink& s) { archive.save_to(s); }`.
void write_atomic_stream(const fs::path& path, const std::function<void(const ByteSink&)>& produce);

/// A std::streambuf over a ByteSink, for writers that take a std::ostream (Module::save).
class SinkStreambuf : public std::streambuf {
 public:
  explicit SinkStreambuf(const ByteSink& sink) : sink_(sink) {}

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    sink_(s, static_cast<size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) {
      const char ch = traits_type::to_char_type(c);
      sink_(&ch, 1);
    }
    return traits_type::not_eof(c);
  }

 private:
  const ByteSink& sink_;
};

/// Keeps the lines of a JSON-lines log whose "step" is at most `step` (a resumed run rewrites what
/// came after); a line cut short by a kill is dropped. No-op when the file does not exist.
void truncate_jsonl_steps(const fs::path& path, int64_t step);

/// Lowercase hex SHA-256 of a file's bytes (identifies a model file in manifests and metadata).
std::string sha256_file(const fs::path& path);

/// Lowercase hex SHA-256 of a byte string.
std::string sha256_hex(std::string_view data);

/// Throws "<what> must be a plain file name …" unless `name` is one path component that stays in
/// its folder: 1 to 100 characters from letters, digits and . _ - + = , @, not starting with '.' or
/// '-'. Every name from a config or a flag that becomes a file or folder name (SAE names, hook
/// folders, stage names) passes here, so "../../victim" or "/etc" never becomes a path.
void check_path_name(std::string_view name, std::string_view what);

/// An exclusive lock held for the life of a run on its output folder or database (flock on a lock
/// file, released by the kernel however the process ends). A second run on the same target fails
/// at once with a line naming who holds it: "output folder 'runs/saes' is in use by another saelab
/// run (pid 4242, since 2026-12-01 23:50:01: saelab train --out runs/saes)".
class RunLock {
 public:
  /// Locks folder `dir` (created if missing) through `dir/.saelab.lock`, then removes temporary
  /// files a killed run left anywhere below it (no other run can be writing them now).
  static RunLock folder(const fs::path& dir, std::string_view what);
  /// Locks the file `path` (a database) through `<path>.lock` beside it; removes `<path>.tmp.*`.
  static RunLock file(const fs::path& path, std::string_view what);

  RunLock(RunLock&& other) noexcept : fd_(other.fd_), path_(std::move(other.path_)) { other.fd_ = -1; }
  RunLock& operator=(RunLock&&) = delete;
  RunLock(const RunLock&) = delete;
  /// Removes the lock file, then releases the lock: a finished run leaves no lock beside its
  /// output. (A process that opened the file before it was removed finds, once it holds the lock,
  /// that the path names another file or none, and opens the path again.)
  ~RunLock();

 private:
  RunLock(const fs::path& lock_file, const std::string& target);
  int fd_ = -1;
  fs::path path_;
};

/// Removes the temporary files (write_file_atomic's "<name>.tmp.<pid>.<n>") below `dir`; returns
/// how many. Call only while holding the folder's RunLock.
int remove_stale_temporaries(const fs::path& dir);

/// Checks that `path` is a complete zip archive whose stored entries match their CRC-32
/// (TorchScript and torch.save files are zip archives, tensors stored and code deflated; torch's
/// reader checks no CRC of stored entries, so a damaged model.pt would otherwise load and produce
/// garbage; deflated entries are checked by the reader as it inflates them). Throws "<what> '<path>' is damaged:
/// …" naming the entry. Returns every entry's uncompressed size by its name in the archive.
std::map<std::string, uint64_t> verify_zip_archive(const fs::path& path, std::string_view what);

/// Whether `path` is a regular file that starts with a zip archive's "PK" signature (TorchScript
/// files and torch.save archives are zips).
bool starts_like_zip(const fs::path& path);

/// The process's command line ("saelab train --out runs/saes"), recorded by set_command_line.
void set_command_line(int argc, char** argv);
const std::string& command_line();

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
