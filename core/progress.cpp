#include "core/progress.h"

#include <cmath>

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace saelab {

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

namespace {
std::string format_count(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e4) return fmt::format("{:.1f}k", v / 1e3);
  if (v > 0 && v < 10 && v != std::floor(v)) return fmt::format("{:.2g}", v);  // rates below 10/s
  return fmt::format("{:.0f}", v);
}
}  // namespace

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      tty_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_) finish(status_);
}

void Progress::update(int64_t done, const std::string& status) {
  if (start_done_ < 0) start_done_ = done;  // a resumed job measures its rate from here
  done_ = done;
  status_ = status;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= (tty_ ? 0.2 : 10.0)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (!status.empty()) status_ = status;
  draw(true);
}

void Progress::draw(bool final_line) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double counted = static_cast<double>(done_ - std::max<int64_t>(start_done_, 0));
  const double rate = elapsed > 0 ? counted / elapsed : 0.0;
  std::string line = label_;
  if (total_ > 0) {
    const double frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    if (tty_) {
      const int width = 24;
      const int filled = static_cast<int>(frac * width);
      line += " [" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
    }
    line += fmt::format(" {:5.1f}% {}/{} {}", 100.0 * frac, format_count(done_), format_count(total_), unit_);
    const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : -1;
    line += fmt::format(" | {} {}/s | {} elapsed", format_count(rate), unit_, format_duration(elapsed));
    if (!final_line) line += " | ETA " + format_duration(eta);
  } else {
    line += fmt::format(" {} {} | {} {}/s | {} elapsed", format_count(done_), unit_, format_count(rate), unit_,
                        format_duration(elapsed));
  }
  if (!status_.empty()) line += " | " + status_;
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace saelab
