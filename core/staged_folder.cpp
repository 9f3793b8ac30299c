#include "core/staged_folder.h"

#include <c10/util/Exception.h>
#include <unistd.h>

namespace saelab {

namespace fs = std::filesystem;

void write_new_folder(const fs::path& target_in, const std::string& what,
                      const std::function<void(const fs::path& tmp)>& write) {
  const fs::path target = target_in.lexically_normal();
  TORCH_CHECK(!fs::exists(target), what, " '", target_in.string(), "' already exists; it is written as a new folder");
  const fs::path tmp = target.string() + ".tmp." + std::to_string(::getpid());
  fs::remove_all(tmp);
  try {
    fs::create_directories(tmp);
    write(tmp);
    fs::rename(tmp, target);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace saelab
