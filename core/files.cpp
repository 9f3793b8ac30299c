#include "core/files.h"

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
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
      if (nlohmann::json::parse(line).value("step", INT64_MAX) <= step) kept += line + "\n";
    } catch (const nlohmann::json::exception&) {
      // a line cut short by a kill
    }
  }
  write_file_atomic(path, kept);
}

}  // namespace saelab
