#include "core/fault.h"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>

namespace saelab {

void fault_point(const char* point, int64_t count) {
  const char* spec = std::getenv("SAELAB_FAULT");
  if (spec == nullptr) return;
  const char* colon = std::strrchr(spec, ':');
  if (colon == nullptr) return;
  if (std::string(spec, colon) != point) return;
  if (std::strtoll(colon + 1, nullptr, 10) != count) return;
  // Under torchrun every process sees the same environment: SAELAB_FAULT_RANK picks one.
  const char* only = std::getenv("SAELAB_FAULT_RANK");
  const char* rank = std::getenv("RANK");
  if (only != nullptr && (rank == nullptr || std::string(only) != rank)) return;
  // ... and SAELAB_FAULT_ATTEMPT one attempt of torchrun's --max_restarts (0: the first).
  const char* attempt = std::getenv("SAELAB_FAULT_ATTEMPT");
  const char* restarts = std::getenv("TORCHELASTIC_RESTART_COUNT");
  if (attempt != nullptr && std::string(attempt) != (restarts != nullptr ? restarts : "0")) return;
  std::raise(SIGKILL);
}

}  // namespace saelab
