#include "core/omp_spin.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace saelab {

void bound_openmp_spinning(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) return;
  const char* bound = std::getenv("SAELAB_SPIN_COUNT");
  std::string count = bound != nullptr && *bound != 0 ? bound : "10000";
  for (char c : count) {
    if (c < '0' || c > '9') {
      std::fprintf(stderr, "saelab: warning: SAELAB_SPIN_COUNT='%s' is not a count of polls; using 10000\n", bound);
      count = "10000";
      break;
    }
  }
  if (setenv("GOMP_SPINCOUNT", count.c_str(), 1) != 0) return;
  execv("/proc/self/exe", argv);  // returns only on failure: the process goes on with the default
  unsetenv("GOMP_SPINCOUNT");
}

}  // namespace saelab
