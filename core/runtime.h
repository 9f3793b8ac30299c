// Process-wide runtime settings: threads, denormals, seeding.
#pragma once
#include <cstdint>
#include <string>

namespace saelab {

struct RuntimeOptions {
  /// Intra-op threads for LibTorch; 0 means OMP_NUM_THREADS when set (torchrun sets 1), else one
  /// per hardware core.
  int threads = 0;
  /// Seed for LibTorch's global generator.
  uint64_t seed = 0;
  /// Keep all freed memory in the heap for reuse (training: its big tensors recur every step, and
  /// fresh pages cost more than the work on them), or map every block of 1 MiB and more on its own
  /// and return it when freed (analysis: tensors of varying sizes, whose holes in a heap add up to
  /// gigabytes). The environment variable SAELAB_KEEP_FREED_MEMORY=0 or 1 overrides it.
  bool keep_freed_memory = true;
};

/// Applies the options. Also enables flush-to-zero for denormals: training slows down up to 8x
/// once subnormal floats appear, and OpenMP would otherwise start with a single thread.
void init_runtime(const RuntimeOptions& options);

/// Number of hardware threads the process may use (at least 1).
int hardware_threads();

/// Most intra-op threads init_runtime accepts: 4 × hardware_threads(). More cannot be meant (each
/// thread beyond the cores only adds switching: 1000 threads took 25 s to print one sample here).
int max_threads();

/// Bytes of memory available to start new work (MemAvailable of /proc/meminfo, or the cgroup
/// limit, or SAELAB_MEMORY_LIMIT (e.g. 20G, in 10^9 bytes), whichever is lowest); -1 when unknown.
int64_t available_memory_bytes();

/// Free bytes on the file system holding `path` (or its nearest existing parent); -1 when unknown.
int64_t free_disk_bytes(const std::string& path);

/// Throws before a run starts when it would need more memory than is available: "<what> needs
/// about 38.2 GB of memory but 21.0 GB is available" (`what` names the flag or key to change).
void require_memory(double bytes, const std::string& what);

/// Throws when writing `bytes` below `path` would not fit on its disk.
void require_disk(const std::string& path, double bytes, const std::string& what);

/// "38.2 GB", "512.0 MB".
std::string format_bytes(double bytes);

}  // namespace saelab
