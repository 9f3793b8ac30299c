#include "core/runtime.h"

#include <cmath>
#include <cstdlib>

#include <torch/torch.h>

#include <malloc.h>
#include <sys/statvfs.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <thread>

namespace saelab {

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int max_threads() { return 4 * hardware_threads(); }

static int64_t parse_memory_limit(const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  const std::string unit = end ? std::string(end) : std::string();
  double scale = 0;
  if (unit.empty()) scale = 1;
  if (unit == "K" || unit == "KB") scale = 1e3;
  if (unit == "M" || unit == "MB") scale = 1e6;
  if (unit == "G" || unit == "GB") scale = 1e9;
  if (unit == "T" || unit == "TB") scale = 1e12;
  TORCH_CHECK(end != text.c_str() && scale > 0 && std::isfinite(value) && value > 0 && value * scale < 9e18,
              "SAELAB_MEMORY_LIMIT='", text, "' must be a positive size in bytes, or with K, M, G or T (10^3 … 10^12), e.g. 20G");
  return static_cast<int64_t>(value * scale);
}

int64_t available_memory_bytes() {
  int64_t avail = -1;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    int64_t kb = 0;
    meminfo >> kb;
    if (key == "MemAvailable:") {
      avail = kb * 1024;
      break;
    }
    meminfo.ignore(1 << 10, '\n');
  }
  for (const char* cgroup : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(cgroup);
    int64_t limit = 0;
    if (in >> limit && limit > 0 && (avail < 0 || limit < avail)) avail = limit;
  }
  if (const char* cap = std::getenv("SAELAB_MEMORY_LIMIT"); cap != nullptr && *cap != 0) {
    const int64_t limit = parse_memory_limit(cap);
    if (avail < 0 || limit < avail) avail = limit;
  }
  return avail;
}

int64_t free_disk_bytes(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  while (!p.empty() && !std::filesystem::exists(p, ec) && p.has_parent_path() && p != p.parent_path()) {
    p = p.parent_path();
  }
  struct statvfs st {};
  if (::statvfs(p.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
}

std::string format_bytes(double bytes) {
  char buf[32];
  if (bytes >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
  }
  return buf;
}

void require_memory(double bytes, const std::string& what) {
  const int64_t avail = available_memory_bytes();
  TORCH_CHECK(avail < 0 || bytes <= static_cast<double>(avail), what, " needs about ", format_bytes(bytes),
              " of memory but ", format_bytes(static_cast<double>(avail)), " is available");
}

void require_disk(const std::string& path, double bytes, const std::string& what) {
  const int64_t free = free_disk_bytes(path);
  TORCH_CHECK(free < 0 || bytes <= static_cast<double>(free), what, " needs about ", format_bytes(bytes),
              " of disk in '", path, "' but ", format_bytes(static_cast<double>(free)), " is free");
}

void init_runtime(const RuntimeOptions& options) {
  TORCH_CHECK(options.threads >= 0, "--threads must be >= 0 (got ", options.threads, ")");
  TORCH_CHECK(options.threads <= max_threads(), "--threads ", options.threads, " is more than 4 x the ",
              hardware_threads(), " cores here (at most ", max_threads(), ")");
  int threads = options.threads;
  if (threads == 0 && std::getenv("OMP_NUM_THREADS") != nullptr && *std::getenv("OMP_NUM_THREADS") != 0) {
    // torchrun sets OMP_NUM_THREADS (1 by default) so that its processes share the cores; a value
    // set by hand means the same.
    const std::string v = std::getenv("OMP_NUM_THREADS");
    char* end = nullptr;
    const long n = std::strtol(v.c_str(), &end, 10);
    TORCH_CHECK(end != v.c_str() && *end == 0 && n >= 1 && n <= max_threads(), "OMP_NUM_THREADS='", v,
                "' must be a whole number in 1..", max_threads());
    threads = static_cast<int>(n);
  }
  torch::set_num_threads(threads == 0 ? hardware_threads() : threads);
  at::globalContext().setFlushDenormal(true);
  // glibc serves allocations above 32 MiB with fresh mmaps whose pages fault in on first touch:
  // ~80 ms per [4096, 16384] float tensor here, more than an elementwise pass over it. SAE steps
  // allocate several such tensors, so keep freed memory in the heap for reuse instead.
  bool keep = options.keep_freed_memory;
  if (const char* env = std::getenv("SAELAB_KEEP_FREED_MEMORY"); env != nullptr && *env != 0) {
    TORCH_CHECK(std::string(env) == "0" || std::string(env) == "1", "SAELAB_KEEP_FREED_MEMORY must be 0 or 1 (got '", env, "')");
    keep = std::string(env) == "1";
  }
  if (keep) {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  } else {
    // Every block from 1 MiB up gets its own mapping, returned when freed. glibc's default
    // threshold starts at 128 KiB and rises to the size of each mapped block freed, up to 32 MiB,
    // so the mid-sized tensors of every batch (activations, top-k candidates, nonzero lists) end
    // up in the heap between long-lived small allocations, and the heap only grows: `top` at 64
    // contexts × 1024 on a GPT-2-small-shaped model peaked at 5.0 GB with the default and at
    // 2.0 GB with this (docs/memory.md).
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
  }
  torch::manual_seed(options.seed);
}

}  // namespace saelab
