// The storages of a TorchScript archive checked against the sizes its pickles declare.
//
// A TorchScript file (torch.jit.save) is a zip archive: data.pkl and constants.pkl are pickles
// whose tensors name their storage by a persistent id ('storage', torch.<T>Storage, key, device,
// numel), and data/<key> (constants/<key>) holds its bytes. LibTorch's loader takes each record as
// it is and grows a storage that is too short with uninitialised memory when a tensor's view needs
// more, so a file whose storage records were cut short loads and computes on garbage. This check
// reads the persistent ids without building any object and compares each with its record.
#pragma once
#include <string>

namespace saelab {

/// verify_zip_archive (core/files.h), then: every storage that `path`'s data.pkl and constants.pkl
/// name exists and holds exactly numel ×
/// the element size of its type. Errors name the file and the storage: "model file 'm.pt' is
/// damaged: storage 'data/3' holds 40 bytes, but its id declares 64 elements of 4 bytes". A pickle
/// construct the scan does not know ends the scan of that pickle without an error (the loader then
/// reads it as before): the check only adds refusals.
void verify_torch_archive(const std::string& path, const std::string& what);

}  // namespace saelab
