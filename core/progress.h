// Progress reporting for long work: a redrawn bar with rate and ETA on a terminal, plain log
// lines (at most one every few seconds) when stderr is a file or pipe.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace saelab {

class Progress {
 public:
  /// `total` may be 0 when unknown; `unit` names what is counted ("tok", "step").
  Progress(std::string label, int64_t total, std::string unit);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Sets the absolute count done so far and an optional status text (e.g. "loss 3.21").
  void update(int64_t done, const std::string& status = "");
  /// Prints the final line; called by the destructor if not called before.
  void finish(const std::string& status = "");

 private:
  void draw(bool final_line);

  std::string label_;
  int64_t total_;
  std::string unit_;
  int64_t done_ = 0;
  int64_t start_done_ = -1;
  std::string status_;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

/// Formats seconds as "1h02m", "3m05s" or "12s".
std::string format_duration(double seconds);

}  // namespace saelab
