// safetensors files, read and written by saelab itself (no Debian package exists).
//
// Layout: 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// padded with spaces to a multiple of 8, then the data section; offsets are relative to it.
// The reader checks everything before trusting it: header length within the file, valid JSON,
// known dtypes, shape x dtype size equal to the byte range, ranges inside the data section and not
// overlapping. A bad file gives an error naming the file and the problem, never a crash.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace saelab {

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;   // contiguous CPU tensors owning their memory
  std::map<std::string, std::string> metadata;

  /// The tensor `name`; an error names the file's path when it is missing.
  const torch::Tensor& at(const std::string& name) const;
  std::string path;
};

/// Writes tensors (converted to contiguous CPU) and string metadata atomically.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads and validates a whole file, tensor by tensor (never the whole file in memory at once).
SafetensorsFile load_safetensors(const std::string& path);

/// As load_safetensors, but tensor `name` is read straight into `dest` (contiguous, of its dtype
/// and shape, else an error names the file and both) and left out of the result: a shard's rows
/// land in a buffer without a copy.
SafetensorsFile load_safetensors_into(const std::string& path, const std::string& name, const torch::Tensor& dest);

/// Parses file contents already in memory (`where` names them in errors).
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& where);

/// "F32" ↔ torch dtype; throws on dtypes saelab does not handle.
std::string safetensors_dtype_name(torch::Dtype dtype);
torch::Dtype safetensors_dtype(const std::string& name, const std::string& where);

}  // namespace saelab
