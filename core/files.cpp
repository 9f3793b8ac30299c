#include "core/files.h"

#include "core/json_options.h"

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <fstream>
#include <random>
#include <sstream>

namespace saelab {

std::string read_file(const fs::path& path, std::string_view what) {
  require_file(path, what);
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.good(), what, " '", path.string(), "' cannot be opened: ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  TORCH_CHECK(!in.bad(), what, " '", path.string(), "' could not be read: ", std::strerror(errno));
  return ss.str();
}

void require_file(const fs::path& path, std::string_view what) {
  std::error_code ec;
  TORCH_CHECK(fs::exists(path, ec), what, " '", path.string(), "' does not exist");
  TORCH_CHECK(fs::is_regular_file(path, ec), what, " '", path.string(), "' is not a regular file");
}

fs::path temporary_sibling(const fs::path& path) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  std::random_device rd;
  return fs::path(path.string() + ".tmp." + std::to_string(getpid()) + "." + std::to_string(rd() % 1000000));
}

void commit_temporary(const fs::path& tmp, const fs::path& path) {
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    TORCH_CHECK(false, "cannot write '", path.string(), "': rename failed: ", ec.message());
  }
}

void write_file_atomic(const fs::path& path, std::string_view data) {
  write_atomic_with(path, [&](const fs::path& tmp) {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    TORCH_CHECK(f != nullptr, "cannot write '", path.string(), "': ", std::strerror(errno));
    const size_t written = std::fwrite(data.data(), 1, data.size(), f);
    const bool ok = written == data.size() && std::fflush(f) == 0 && fsync(fileno(f)) == 0;
    const int err = errno;
    std::fclose(f);
    TORCH_CHECK(ok, "cannot write '", path.string(), "': ", std::strerror(err));
  });
}

void write_atomic_stream(const fs::path& path, const std::function<void(const ByteSink&)>& produce) {
  write_atomic_with(path, [&](const fs::path& tmp) {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    TORCH_CHECK(f != nullptr, "cannot write '", path.string(), "': ", std::strerror(errno));
    int err = 0;
    const ByteSink sink = [&](const void* data, size_t n) -> size_t {
      if (err == 0 && n > 0 && std::fwrite(data, 1, n, f) != n) err = errno != 0 ? errno : EIO;
      return n;
    };
    try {
      produce(sink);
    } catch (...) {
      std::fclose(f);
      throw;
    }
    if (err == 0 && (std::fflush(f) != 0 || fsync(fileno(f)) != 0)) err = errno;
    std::fclose(f);
    TORCH_CHECK(err == 0, "cannot write '", path.string(), "': ", std::strerror(err));
  });
}

// ---- SHA-256: OpenSSL's EVP digest ----
namespace {

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    TORCH_CHECK(ctx_ != nullptr && EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1,
                "OpenSSL could not start a SHA-256 digest");
  }
  void update(const void* data, size_t n) {
    TORCH_CHECK(EVP_DigestUpdate(ctx_.get(), data, n) == 1, "OpenSSL SHA-256 update failed");
  }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    TORCH_CHECK(EVP_DigestFinal_ex(ctx_.get(), digest, &size) == 1, "OpenSSL SHA-256 final failed");
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < size; ++i) {
      out.push_back(digits[digest[i] >> 4]);
      out.push_back(digits[digest[i] & 0xf]);
    }
    return out;
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

}  // namespace

std::string sha256_hex(std::string_view data) {
  Sha256 s;
  s.update(data.data(), data.size());
  return s.hex();
}

std::string sha256_file(const fs::path& path) {
  require_file(path, "file");
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.good(), "file '", path.string(), "' cannot be opened");
  Sha256 s;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    s.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  return s.hex();
}

void truncate_jsonl_steps(const fs::path& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      const nlohmann::json j = parse_json_text(line, path.string());
      if (j.is_object() && j.value("step", INT64_MAX) <= step) kept += line + "\n";
    } catch (const std::exception&) {
      // a line cut short by a kill
    }
  }
  write_file_atomic(path, kept);
}

}  // namespace saelab

namespace saelab {

void check_path_name(std::string_view name, std::string_view what) {
  auto fail = [&](const char* why) {
    std::string shown(name.substr(0, 60));
    for (char& c : shown) {
      if (static_cast<unsigned char>(c) < 0x20) c = '?';
    }
    TORCH_CHECK(false, what, " must be a plain file name (", why, "), got '", shown, name.size() > 60 ? "...'" : "'");
  };
  if (name.empty()) fail("it is empty");
  if (name.size() > 100) fail("more than 100 characters");
  if (name.front() == '.' || name.front() == '-') fail("it may not start with '.' or '-'");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::strchr("._-+=,@", c) != nullptr;
    if (!ok || c == '\0') fail("letters, digits and . _ - + = , @ only");
  }
}

namespace {

std::string g_command_line = "saelab";

std::string now_text() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

bool is_temporary_name(const std::string& name) {
  // "<name>.tmp.<pid>.<n>" (write_atomic_with) or "<name>.tmp" (the feature database's build file)
  const size_t at = name.rfind(".tmp");
  if (at == std::string::npos || at == 0) return false;
  const std::string rest = name.substr(at + 4);
  if (rest.empty()) return true;
  if (rest[0] != '.') return false;
  return rest.find_first_not_of("0123456789.") == std::string::npos;
}

}  // namespace

void set_command_line(int argc, char** argv) {
  std::string line = "saelab";
  for (int i = 1; i < argc; ++i) line += std::string(" ") + argv[i];
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  g_command_line = line;
}

const std::string& command_line() { return g_command_line; }

RunLock::RunLock(const fs::path& lock_file, const std::string& target) : path_(lock_file) {
  for (int attempt = 0;; ++attempt) {
    fd_ = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    TORCH_CHECK(fd_ >= 0, target, ": cannot open the lock file '", lock_file.string(), "': ", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      std::string holder(400, '\0');
      const ssize_t n = ::pread(fd_, holder.data(), holder.size(), 0);
      holder.resize(n > 0 ? static_cast<size_t>(n) : 0);
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
      ::close(fd_);
      fd_ = -1;
      TORCH_CHECK(err != EWOULDBLOCK, target, " is in use by another saelab run (",
                  holder.empty() ? std::string("holder unknown") : holder,
                  "); wait for it to finish or choose another output");
      TORCH_CHECK(false, target, ": cannot lock '", lock_file.string(), "': ", std::strerror(err));
    }
    // Locked; but the holder before may have removed the file between our open and our lock (its
    // release), and then this lock guards nothing: the path must still name the locked file.
    struct stat held{}, named{};
    if (::fstat(fd_, &held) == 0 && ::stat(lock_file.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
        held.st_ino == named.st_ino) {
      break;
    }
    ::close(fd_);
    fd_ = -1;
    TORCH_CHECK(attempt < 100, target, ": the lock file '", lock_file.string(), "' keeps being replaced");
  }
  const std::string me = "pid " + std::to_string(getpid()) + ", since " + now_text() + ": " + command_line() + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    const ssize_t w = ::pwrite(fd_, me.data(), me.size(), 0);
    (void)w;  // the holder's description is informative only
  }
}

RunLock::~RunLock() {
  if (fd_ < 0) return;
  std::error_code ec;
  fs::remove(path_, ec);  // while still locked: see the constructor's check
  ::close(fd_);           // closing the descriptor releases the flock
}

RunLock RunLock::folder(const fs::path& dir, std::string_view what) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  TORCH_CHECK(!ec, what, " '", dir.string(), "' cannot be created: ", ec.message());
  RunLock lock(dir / ".saelab.lock", std::string(what) + " '" + dir.string() + "'");
  remove_stale_temporaries(dir);
  return lock;
}

RunLock RunLock::file(const fs::path& path, std::string_view what) {
  std::error_code ec;
  if (path.has_parent_path()) {
    fs::create_directories(path.parent_path(), ec);
    TORCH_CHECK(!ec, what, " '", path.string(), "': cannot create folder '", path.parent_path().string(), "': ",
                ec.message());
  }
  RunLock lock(fs::path(path.string() + ".lock"), std::string(what) + " '" + path.string() + "'");
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(path.filename().string() + ".tmp", 0) == 0 && is_temporary_name(name)) fs::remove(entry.path(), ec);
  }
  return lock;
}

int remove_stale_temporaries(const fs::path& dir) {
  int removed = 0;
  std::error_code ec;
  std::vector<fs::path> stale;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) && is_temporary_name(it->path().filename().string())) stale.push_back(it->path());
  }
  for (const auto& p : stale) {
    if (fs::remove(p, ec)) ++removed;
  }
  return removed;
}

}  // namespace saelab

// ---- zip integrity: central directory, local headers, CRC-32 of stored entries ----
namespace saelab {

namespace {

uint32_t crc32_update(uint32_t crc, const unsigned char* p, size_t n) {
  static const auto table = [] {
    std::array<std::array<uint32_t, 256>, 4> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
      for (int s = 1; s < 4; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    }
    return t;
  }();
  crc = ~crc;
  while (n >= 4) {  // slicing by four
    crc ^= static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
           static_cast<uint32_t>(p[3]) << 24;
    crc = table[3][crc & 0xff] ^ table[2][(crc >> 8) & 0xff] ^ table[1][(crc >> 16) & 0xff] ^ table[0][crc >> 24];
    p += 4;
    n -= 4;
  }
  while (n-- > 0) crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

class MappedFile {
 public:
  explicit MappedFile(const fs::path& path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return;
    struct stat st {};
    if (::fstat(fd_, &st) == 0 && st.st_size > 0) {
      size_ = static_cast<size_t>(st.st_size);
      void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (m != MAP_FAILED) data_ = static_cast<const unsigned char*>(m);
    }
  }
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  bool ok() const { return fd_ >= 0; }
  const unsigned char* data() const { return data_; }
  size_t size() const { return data_ == nullptr ? 0 : size_; }

 private:
  int fd_ = -1;
  size_t size_ = 0;
  const unsigned char* data_ = nullptr;
};

uint64_t le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

bool starts_like_zip(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  std::ifstream f(path, std::ios::binary);
  char magic[2] = {0, 0};
  f.read(magic, 2);
  return magic[0] == 'P' && magic[1] == 'K';
}

std::map<std::string, uint64_t> verify_zip_archive(const fs::path& path, std::string_view what) {
  require_file(path, what);
  const MappedFile f(path);
  const std::string name = std::string(what) + " '" + path.string() + "'";
  TORCH_CHECK(f.ok(), name, " cannot be opened: ", std::strerror(errno));
  const unsigned char* d = f.data();
  const uint64_t n = f.size();
  auto damaged = [&](const std::string& why) { TORCH_CHECK(false, name, " is damaged: ", why); };
  // End of central directory: the last record of the file, before a comment of up to 64 KiB.
  int64_t eocd = -1;
  for (int64_t i = static_cast<int64_t>(n) - 22; i >= 0 && i >= static_cast<int64_t>(n) - 22 - 65535; --i) {
    if (le(d + i, 4) == 0x06054b50u) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) damaged("no zip end-of-central-directory record (the file is truncated or not a zip archive)");
  uint64_t entries = le(d + eocd + 10, 2), cd_size = le(d + eocd + 12, 4), cd_offset = le(d + eocd + 16, 4);
  if (eocd >= 20 && le(d + eocd - 20, 4) == 0x07064b50u) {  // zip64
    const uint64_t z = le(d + eocd - 20 + 8, 8);
    if (z > n - 56 || le(d + z, 4) != 0x06064b50u) damaged("the zip64 end-of-central-directory record is missing");
    entries = le(d + z + 32, 8);
    cd_size = le(d + z + 40, 8);
    cd_offset = le(d + z + 48, 8);
  }
  if (cd_offset > n || cd_size > n - cd_offset) damaged("the central directory lies outside the file");
  std::map<std::string, uint64_t> sizes;
  uint64_t at = cd_offset;
  for (uint64_t e = 0; e < entries; ++e) {
    if (at + 46 > cd_offset + cd_size || le(d + at, 4) != 0x02014b50u) {
      damaged("central directory entry " + std::to_string(e) + " is malformed");
    }
    const uint64_t method = le(d + at + 10, 2), crc = le(d + at + 16, 4);
    uint64_t csize = le(d + at + 20, 4), usize = le(d + at + 24, 4);
    const uint64_t name_len = le(d + at + 28, 2), extra_len = le(d + at + 30, 2), comment_len = le(d + at + 32, 2);
    uint64_t local = le(d + at + 42, 4);
    if (at + 46 + name_len + extra_len + comment_len > cd_offset + cd_size) damaged("the central directory is cut short");
    const std::string entry(reinterpret_cast<const char*>(d + at + 46), name_len);
    // zip64 sizes and offset, in this order, for the fields that hold 0xFFFFFFFF
    for (uint64_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const uint64_t id = le(d + x, 2), len = le(d + x + 2, 2);
      uint64_t y = x + 4;
      if (id == 1) {
        for (uint64_t* field : {&usize, &csize, &local}) {
          if (*field == 0xFFFFFFFFu && y + 8 <= x + 4 + len) {
            *field = le(d + y, 8);
            y += 8;
          }
        }
      }
      x += 4 + len;
    }
    if (method != 0 && method != 8) damaged("entry '" + entry + "' uses compression method " + std::to_string(method));
    if (local > n - 30 || le(d + local, 4) != 0x04034b50u) damaged("entry '" + entry + "' has no local header");
    const uint64_t data = local + 30 + le(d + local + 26, 2) + le(d + local + 28, 2);
    if (data > n || csize > n - data || (method == 0 && csize != usize)) {
      damaged("entry '" + entry + "' runs past the end of the file (truncated)");
    }
    // Stored entries (the tensors) are checked here; deflated ones (code, pickles) by the reader,
    // which verifies their CRC-32 as it inflates them.
    if (method == 0 && crc32_update(0, d + data, csize) != crc) {
      damaged("entry '" + entry + "' fails its CRC-32 check (corrupted)");
    }
    sizes[entry] = usize;
    at += 46 + name_len + extra_len + comment_len;
  }
  return sizes;
}

}  // namespace saelab
