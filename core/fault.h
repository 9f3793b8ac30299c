// Fault injection for tests: the environment variable SAELAB_FAULT=<point>:<n> makes the process
// kill itself with SIGKILL when it reaches the named point for the n-th time, so a test can stop a
// run at an exact place (for example right after a shard is listed) instead of racing a timer.
// With SAELAB_FAULT_RANK=<r> only the process whose RANK is r does (torchrun gives every process
// the same environment), and with SAELAB_FAULT_ATTEMPT=<a> only in torchrun's restart attempt a
// (TORCHELASTIC_RESTART_COUNT; 0 is the first), so a restarted group runs clean. Without the variable a fault point costs one getenv per call.
#pragma once
#include <cstdint>

namespace saelab {

/// Reports that `point` has been reached for the `count`-th time (1-based); SIGKILLs the process
/// when SAELAB_FAULT names this point and count.
void fault_point(const char* point, int64_t count);

}  // namespace saelab
