#include "core/safetensors.h"

#include "core/json_options.h"

#include <nlohmann/json.hpp>

#include <cstring>

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

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& where) {
  SafetensorsFile f;
  f.path = where;
  TORCH_CHECK(bytes.size() >= 8, "safetensors file '", where, "' is truncated (", bytes.size(), " bytes)");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  TORCH_CHECK(n <= bytes.size() - 8, "safetensors file '", where, "': header length ", n,
              " runs past the end of the file (", bytes.size(), " bytes)");
  TORCH_CHECK(n <= (100u << 20), "safetensors file '", where, "': header length ", n, " exceeds 100 MB");
  const nlohmann::json header =
      parse_json_text(std::string_view(bytes).substr(8, n), "safetensors file '" + where + "': header");
  TORCH_CHECK(header.is_object(), "safetensors file '", where, "': header is not a JSON object");
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = bytes.size() - data_start;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::vector<std::string> names_by_range;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& e = it.value();
    if (name == "__metadata__") {
      TORCH_CHECK(e.is_object(), "safetensors file '", where, "': __metadata__ must be an object of strings");
      for (auto m = e.begin(); m != e.end(); ++m) {
        TORCH_CHECK(m.value().is_string(), "safetensors file '", where, "': metadata '", m.key(), "' is not a string");
        f.metadata[m.key()] = m.value().get<std::string>();
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
    torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(dt->dtype));
    if (end > begin) std::memcpy(t.data_ptr(), bytes.data() + data_start + begin, end - begin);
    f.tensors[name] = t;
    ranges.emplace_back(begin, end);
    names_by_range.push_back(name);
  }
  std::vector<size_t> order(ranges.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  for (size_t i = 1; i < order.size(); ++i) {
    const auto& prev = ranges[order[i - 1]];
    const auto& cur = ranges[order[i]];
    TORCH_CHECK(cur.first >= prev.second || cur.first == cur.second || prev.first == prev.second,
                "safetensors file '", where, "': tensors '", names_by_range[order[i - 1]], "' and '",
                names_by_range[order[i]], "' overlap");
  }
  return f;
}

SafetensorsFile load_safetensors(const std::string& path) {
  return parse_safetensors(read_file(path, "safetensors file"), path);
}

}  // namespace saelab
