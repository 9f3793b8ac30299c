// A new output folder that appears complete or not at all: written under a temporary sibling name
// and renamed into place once everything in it is written.
#pragma once
#include <filesystem>
#include <functional>
#include <string>

namespace saelab {

/// Refuses an existing `target` (naming it as `what`), runs `write(tmp)` to fill a fresh temporary
/// sibling folder, and renames it onto `target`; on any error the temporary folder is removed and
/// the error propagates.
void write_new_folder(const std::filesystem::path& target, const std::string& what,
                      const std::function<void(const std::filesystem::path& tmp)>& write);

}  // namespace saelab
