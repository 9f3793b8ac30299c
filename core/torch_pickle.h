// Reading a torch.save() file of tensors without Python (dictionary_learning's ae.pt).
//
// torch.save writes a zip archive: <name>/data.pkl (a pickle) and <name>/data/<key> (the raw bytes
// of each storage). LibTorch's own pickle_load cannot read an OrderedDict state dict (the
// `_metadata` attribute it carries), and a general unpickler would run whatever the file names.
// This reader understands only what a dict of tensors needs: dicts and OrderedDicts, tuples and
// lists, numbers, strings, None, and the two tensor rebuild functions with their storage types.
// Any other Python object is refused, naming it; nothing from the file is ever called.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

namespace saelab {

struct TorchPickle {
  /// Entries of the top-level dict that are tensors (contiguous CPU tensors owning their memory).
  std::map<std::string, torch::Tensor> tensors;
  /// Entries that are not tensors, with what they are ("an int", "a dict of 4 entries", ...).
  std::map<std::string, std::string> others;
};

/// The dtype of a storage type as torch's picklers name it in a persistent id ("torch.FloatStorage"
/// → float32); false for a name it does not know. Shared by this reader and the TorchScript
/// archive check (core/torchscript_storages.h).
bool torch_storage_dtype(const std::string& name, torch::Dtype* dtype);

/// Reads a torch.save() archive whose top-level object is a dict with string keys. Errors name the
/// file: not a zip archive (the legacy pre-1.6 format), damaged, an object other than the allowed
/// ones, a tensor whose shape and strides reach outside its storage.
TorchPickle load_torch_pickle(const std::string& path, const std::string& what);

}  // namespace saelab
