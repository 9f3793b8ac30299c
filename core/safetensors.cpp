#include "core/safetensors.h"

#include "core/json_options.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/files.h"

namespace saelab {

namespace {

struct DtypeInfo {
  const char* name;
  torch::Dtype dtype;
  int64_t size;
};

const DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8}, {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

}  // namespace

const torch::Tensor& SafetensorsFile::at(const std::string& name) const {
  auto it = tensors.find(name);
  TORCH_CHECK(it != tensors.end(), "safetensors file '", path, "' has no tensor '", name, "'");
  return it->second;
}

std::string safetensors_dtype_name(torch::Dtype dtype) {
  for (const auto& d : kDtypes)
    if (d.dtype == dtype) return d.name;
  TORCH_CHECK(false, "dtype ", dtype, " cannot be written to safetensors");
}

torch::Dtype safetensors_dtype(const std::string& name, const std::string& where) {
  const DtypeInfo* d = find_dtype(name);
  TORCH_CHECK(d != nullptr, where, ": unknown dtype '", name, "'");
  return d->dtype;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  int64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    TORCH_CHECK(name != "__metadata__", "a tensor cannot be named __metadata__");
    TORCH_CHECK(!header.contains(name), "tensor name '", name, "' appears twice");
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    const int64_t bytes = c.numel() * static_cast<int64_t>(c.element_size());
    header[name] = {{"dtype", safetensors_dtype_name(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string head = header.dump();
  while ((head.size() + 8) % 8 != 0) head.push_back(' ');
  std::string prefix;
  const uint64_t n = head.size();
  for (int i = 0; i < 8; ++i) prefix.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  prefix += head;
  // Streamed tensor by tensor: no copy of the file in memory (a GPT-3-width SAE is ~5 GB).
  write_atomic_stream(path, [&](const ByteSink& sink) {
    sink(prefix.data(), prefix.size());
    for (const auto& c : data) sink(c.data_ptr(), static_cast<size_t>(c.numel() * c.element_size()));
  });
}

namespace {

// One tensor of a validated header: its dtype, shape and byte range within the data section.
struct TensorEntry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

// The 8-byte header length of a file of `file_size` bytes whose first bytes are `prefix` (at
// least 8), checked against the file.
uint64_t header_length(const char* prefix, uint64_t file_size, const std::string& where) {
  TORCH_CHECK(file_size >= 8, "safetensors file '", where, "' is truncated (", file_size, " bytes)");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(prefix[i])) << (8 * i);
  TORCH_CHECK(n <= file_size - 8, "safetensors file '", where, "': header length ", n,
              " runs past the end of the file (", file_size, " bytes)");
  TORCH_CHECK(n <= (100u << 20), "safetensors file '", where, "': header length ", n, " exceeds 100 MB");
  return n;
}

// Validates the JSON header against a data section of `data_size` bytes: known dtypes, shapes
// whose size matches the byte ranges, ranges inside the section and not overlapping.
std::vector<TensorEntry> parse_header(std::string_view text, uint64_t data_size, const std::string& where,
                                      std::map<std::string, std::string>& metadata) {
  const nlohmann::json header = parse_json_text(text, "safetensors file '" + where + "': header");
  TORCH_CHECK(header.is_object(), "safetensors file '", where, "': header is not a JSON object");
  std::vector<TensorEntry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& e = it.value();
    if (name == "__metadata__") {
      TORCH_CHECK(e.is_object(), "safetensors file '", where, "': __metadata__ must be an object of strings");
      for (auto m = e.begin(); m != e.end(); ++m) {
        TORCH_CHECK(m.value().is_string(), "safetensors file '", where, "': metadata '", m.key(), "' is not a string");
        metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string entry = "safetensors file '" + where + "': tensor '" + name + "'";
    TORCH_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"), entry,
                " needs dtype, shape and data_offsets");
    TORCH_CHECK(e["dtype"].is_string(), entry, ": dtype is not a string");
    const DtypeInfo* dt = find_dtype(e["dtype"].get<std::string>());
    TORCH_CHECK(dt != nullptr, entry, ": unknown dtype '", e["dtype"].get<std::string>(), "'");
    TORCH_CHECK(e["shape"].is_array(), entry, ": shape is not a list");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& s : e["shape"]) {
      TORCH_CHECK(s.is_number_unsigned() || (s.is_number_integer() && s.get<int64_t>() >= 0), entry,
                  ": shape holds a negative or non-integer size");
      const uint64_t v = s.get<uint64_t>();
      TORCH_CHECK(v == 0 || numel <= (uint64_t(1) << 62) / v, entry, ": shape is too large");
      numel *= v;
      shape.push_back(static_cast<int64_t>(v));
    }
    const auto& off = e["data_offsets"];
    TORCH_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), entry,
                ": data_offsets must be two non-negative integers");
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    TORCH_CHECK(begin <= end && end <= data_size, entry, ": data_offsets [", begin, ", ", end,
                "] fall outside the data section of ", data_size, " bytes");
    TORCH_CHECK(numel <= data_size / static_cast<uint64_t>(dt->size), entry, ": shape ", shape, " of ", dt->name,
                " needs more bytes than the file's data section of ", data_size, " holds");
    TORCH_CHECK(end - begin == numel * static_cast<uint64_t>(dt->size), entry, ": shape ", shape, " of ",
                dt->name, " needs ", numel * dt->size, " bytes but data_offsets give ", end - begin);
    entries.push_back({name, dt, shape, begin, end});
  }
  std::vector<size_t> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto range = [&](size_t i) { return std::make_pair(entries[i].begin, entries[i].end); };
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return range(a) < range(b); });
  for (size_t i = 1; i < order.size(); ++i) {
    const auto prev = range(order[i - 1]), cur = range(order[i]);
    TORCH_CHECK(cur.first >= prev.second || cur.first == cur.second || prev.first == prev.second,
                "safetensors file '", where, "': tensors '", entries[order[i - 1]].name, "' and '",
                entries[order[i]].name, "' overlap");
  }
  return entries;
}

torch::Tensor empty_tensor(const TensorEntry& e) {
  return torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype->dtype));
}

}  // namespace

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& where) {
  SafetensorsFile f;
  f.path = where;
  const uint64_t n = header_length(bytes.data(), bytes.size(), where);
  const uint64_t data_start = 8 + n;
  for (const TensorEntry& e : parse_header(std::string_view(bytes).substr(8, n), bytes.size() - data_start, where, f.metadata)) {
    torch::Tensor t = empty_tensor(e);
    if (e.end > e.begin) std::memcpy(t.data_ptr(), bytes.data() + data_start + e.begin, e.end - e.begin);
    f.tensors[e.name] = t;
  }
  return f;
}

// Read tensor by tensor from the file: the file is never held in memory beside its tensors (an
// activation shard at GPT-3 width is 1.6 GB, an SAE's weights 4.8 GB). Tensor `into` (when given)
// is read into `dest` instead of a tensor of its own.
static SafetensorsFile read_safetensors(const std::string& path, const std::string* into, const torch::Tensor* dest) {
  require_file(path, "safetensors file");
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "safetensors file '", path, "' cannot be opened: ", std::strerror(errno));
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(std::max<std::streamoff>(0, in.tellg()));
  in.seekg(0);
  char prefix[8] = {};
  if (size >= 8) in.read(prefix, 8);
  TORCH_CHECK(size < 8 || in, "safetensors file '", path, "' could not be read: ", std::strerror(errno));
  const uint64_t n = header_length(prefix, size, path);
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  TORCH_CHECK(in, "safetensors file '", path, "': its header could not be read");
  SafetensorsFile f;
  f.path = path;
  const uint64_t data_start = 8 + n;
  bool found = into == nullptr;
  for (const TensorEntry& e : parse_header(text, size - data_start, path, f.metadata)) {
    torch::Tensor t;
    if (into != nullptr && e.name == *into) {
      TORCH_CHECK(dest->sizes().vec() == e.shape && dest->scalar_type() == e.dtype->dtype && dest->is_contiguous(),
                  "safetensors file '", path, "': tensor '", e.name, "' is ", e.dtype->name, " ", e.shape,
                  ", expected ", safetensors_dtype_name(dest->scalar_type()), " ", dest->sizes());
      t = *dest;
      found = true;
    } else {
      t = empty_tensor(e);
    }
    if (e.end > e.begin) {
      in.seekg(static_cast<std::streamoff>(data_start + e.begin));
      in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
      TORCH_CHECK(in, "safetensors file '", path, "': cannot read tensor '", e.name, "' (the file changed or is unreadable)");
    }
    if (into == nullptr || e.name != *into) f.tensors[e.name] = t;
  }
  TORCH_CHECK(found, "safetensors file '", path, "' has no tensor '", *into, "'");
  return f;
}

SafetensorsFile load_safetensors(const std::string& path) { return read_safetensors(path, nullptr, nullptr); }

SafetensorsFile load_safetensors_into(const std::string& path, const std::string& name, const torch::Tensor& dest) {
  return read_safetensors(path, &name, &dest);
}

}  // namespace saelab
