#include "core/npz.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <regex>
#include <vector>

namespace saelab {

namespace {

uint64_t le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string read_range(std::ifstream& f, uint64_t offset, uint64_t n, const std::string& path) {
  std::string out(n, '\0');
  f.seekg(static_cast<std::streamoff>(offset));
  f.read(out.data(), static_cast<std::streamsize>(n));
  TORCH_CHECK(f.good() || (f.eof() && static_cast<uint64_t>(f.gcount()) == n), path, ": truncated (wanted ", n,
              " bytes at offset ", offset, ")");
  return out;
}

std::string inflate_raw(const std::string& in, uint64_t size, const std::string& where) {
  std::string out(size, '\0');
  z_stream z{};
  TORCH_CHECK(inflateInit2(&z, -MAX_WBITS) == Z_OK, where, ": zlib could not start");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_FINISH);
  const uint64_t produced = z.total_out;
  inflateEnd(&z);
  TORCH_CHECK(rc == Z_STREAM_END && produced == size, where, ": damaged deflate data");
  return out;
}

// One .npy array (format versions 1–3) as a float32 tensor.
torch::Tensor parse_npy(const std::string& b, const std::string& where) {
  TORCH_CHECK(b.size() >= 10 && b.compare(0, 6, "\x93NUMPY") == 0, where, ": not a .npy array");
  const auto* u = reinterpret_cast<const unsigned char*>(b.data());
  const int major = u[6];
  TORCH_CHECK(major >= 1 && major <= 3, where, ": .npy format version ", major, " is not supported");
  const size_t len_bytes = major == 1 ? 2 : 4;
  const uint64_t header_len = le(u + 8, static_cast<int>(len_bytes));
  const size_t start = 8 + len_bytes;
  TORCH_CHECK(start + header_len <= b.size(), where, ": .npy header runs past the data");
  const std::string header = b.substr(start, header_len);
  std::smatch m;
  TORCH_CHECK(std::regex_search(header, m, std::regex("'descr':\\s*'([<>|=]?)([fiu])([0-9]+)'")), where,
              ": .npy header has no dtype I read (", header.substr(0, 80), ")");
  const std::string order = m[1].str(), kind = m[2].str();
  const int width = std::stoi(m[3].str());
  TORCH_CHECK(order != ">", where, ": big-endian arrays are not supported");
  TORCH_CHECK(kind == "f" && (width == 2 || width == 4 || width == 8), where, ": dtype ", kind, width,
              " is not a float16/32/64 array");
  const bool fortran = std::regex_search(header, std::regex("'fortran_order':\\s*True"));
  TORCH_CHECK(std::regex_search(header, m, std::regex("'shape':\\s*\\(([0-9,\\s]*)\\)")), where, ": .npy header has no shape");
  std::vector<int64_t> shape;
  const std::string dims = m[1].str();
  const std::regex number("[0-9]+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number); it != std::sregex_iterator(); ++it) {
    TORCH_CHECK(it->str().size() < 12, where, ": an absurd dimension in the shape");
    shape.push_back(std::stoll(it->str()));
  }
  int64_t n = 1;
  for (int64_t d : shape) {
    TORCH_CHECK(d == 0 || n <= (int64_t{1} << 40) / d, where, ": the shape is absurdly large");
    n *= d;
  }
  const size_t data_at = start + header_len;
  TORCH_CHECK(b.size() - data_at == static_cast<size_t>(n) * static_cast<size_t>(width), where, ": holds ",
              b.size() - data_at, " data bytes but its shape needs ", n * width);
  const torch::Dtype dtype = width == 2 ? torch::kFloat16 : width == 4 ? torch::kFloat32 : torch::kFloat64;
  std::vector<int64_t> stored = shape;
  if (fortran) std::reverse(stored.begin(), stored.end());
  torch::Tensor t = torch::empty(stored, torch::TensorOptions().dtype(dtype));
  if (n > 0) std::memcpy(t.data_ptr(), b.data() + data_at, static_cast<size_t>(n) * static_cast<size_t>(width));
  if (fortran && t.dim() > 1) {
    std::vector<int64_t> perm(static_cast<size_t>(t.dim()));
    for (int64_t i = 0; i < t.dim(); ++i) perm[static_cast<size_t>(i)] = t.dim() - 1 - i;
    t = t.permute(perm);
  }
  return t.to(torch::kFloat32).contiguous();
}

}  // namespace

std::map<std::string, torch::Tensor> load_npz(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  TORCH_CHECK(f.is_open(), "cannot open '", path, "'");
  const uint64_t size = static_cast<uint64_t>(f.tellg());
  TORCH_CHECK(size >= 22, path, ": too short to be an .npz (zip) archive");
  // The end-of-central-directory record: in the last 64 kB + 22 bytes.
  const uint64_t tail_len = std::min<uint64_t>(size, 65557);
  const std::string tail = read_range(f, size - tail_len, tail_len, path);
  size_t eocd = std::string::npos;
  for (size_t i = tail.size() - 22 + 1; i-- > 0;) {
    if (tail.compare(i, 4, "PK\x05\x06") == 0) {
      eocd = i;
      break;
    }
  }
  TORCH_CHECK(eocd != std::string::npos, path, ": not a zip archive (no end-of-central-directory record)");
  const auto* e = reinterpret_cast<const unsigned char*>(tail.data() + eocd);
  uint64_t entries = le(e + 10, 2), cd_size = le(e + 12, 4), cd_offset = le(e + 16, 4);
  if (cd_offset == 0xFFFFFFFFu || entries == 0xFFFFu) {  // zip64: the locator sits just before
    TORCH_CHECK(eocd >= 20 && tail.compare(eocd - 20, 4, "PK\x06\x07") == 0, path, ": zip64 locator missing");
    const uint64_t rec = le(reinterpret_cast<const unsigned char*>(tail.data() + eocd - 20 + 8), 8);
    const std::string r = read_range(f, rec, 56, path);
    TORCH_CHECK(r.compare(0, 4, "PK\x06\x06") == 0, path, ": zip64 end record missing");
    const auto* z = reinterpret_cast<const unsigned char*>(r.data());
    entries = le(z + 32, 8), cd_size = le(z + 40, 8), cd_offset = le(z + 48, 8);
  }
  TORCH_CHECK(cd_offset + cd_size <= size && entries < 100000, path, ": damaged central directory");
  const std::string cd = read_range(f, cd_offset, cd_size, path);
  std::map<std::string, torch::Tensor> out;
  size_t at = 0;
  for (uint64_t i = 0; i < entries; ++i) {
    TORCH_CHECK(at + 46 <= cd.size() && cd.compare(at, 4, "PK\x01\x02") == 0, path, ": damaged central directory");
    const auto* c = reinterpret_cast<const unsigned char*>(cd.data() + at);
    const uint64_t method = le(c + 10, 2), name_len = le(c + 28, 2), extra_len = le(c + 30, 2), comment_len = le(c + 32, 2);
    uint64_t comp = le(c + 20, 4), plain = le(c + 24, 4), local = le(c + 42, 4);
    TORCH_CHECK(at + 46 + name_len + extra_len + comment_len <= cd.size(), path, ": damaged central directory");
    const std::string name = cd.substr(at + 46, name_len);
    // zip64 extra field (id 1): the 64-bit values of the fields that read 0xFFFFFFFF, in order.
    for (size_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const auto* h = reinterpret_cast<const unsigned char*>(cd.data() + x);
      const uint64_t id = le(h, 2), len = le(h + 2, 2);
      if (id == 1) {
        const unsigned char* v = h + 4;
        if (plain == 0xFFFFFFFFu) plain = le(v, 8), v += 8;
        if (comp == 0xFFFFFFFFu) comp = le(v, 8), v += 8;
        if (local == 0xFFFFFFFFu) local = le(v, 8);
      }
      x += 4 + len;
    }
    at += 46 + name_len + extra_len + comment_len;
    const std::string where = path + " (" + name + ")";
    TORCH_CHECK(method == 0 || method == 8, where, ": compression method ", method, " (only stored and deflated)");
    TORCH_CHECK(plain <= (uint64_t{1} << 40), where, ": absurd size");
    const std::string lh = read_range(f, local, 30, path);
    TORCH_CHECK(lh.compare(0, 4, "PK\x03\x04") == 0, where, ": damaged local header");
    const auto* l = reinterpret_cast<const unsigned char*>(lh.data());
    const uint64_t data_at = local + 30 + le(l + 26, 2) + le(l + 28, 2);
    TORCH_CHECK(data_at + comp <= size, where, ": data runs past the end of the file");
    std::string bytes = read_range(f, data_at, comp, path);
    if (method == 8) bytes = inflate_raw(bytes, plain, where);
    TORCH_CHECK(bytes.size() == plain, where, ": size mismatch");
    TORCH_CHECK(crc32_z(0, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()) == le(c + 16, 4),
                where, ": CRC-32 mismatch (damaged)");
    std::string key = name;
    if (key.size() > 4 && key.compare(key.size() - 4, 4, ".npy") == 0) key.resize(key.size() - 4);
    out[key] = parse_npy(bytes, where);
  }
  TORCH_CHECK(!out.empty(), path, ": holds no arrays");
  return out;
}

}  // namespace saelab
