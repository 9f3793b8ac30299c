// NumPy's .npz archives (np.savez, np.savez_compressed) read with no Python: a zip of .npy files,
// stored or deflated (zlib), with the zip64 records numpy writes for every entry. Arrays of
// float16, float32 and float64 (little-endian), C or Fortran order, as float32 tensors.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

namespace saelab {

/// Every array of `path` by name (without ".npy"). Errors name the file and the entry.
std::map<std::string, torch::Tensor> load_npz(const std::string& path);

}  // namespace saelab
