#include "study/tradeoff.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>
#include <utility>

namespace saelab {

namespace {

// ---- ordering ----

// NaN sorts after every number so the comparison stays a strict weak order.
bool less_value(double a, double b) {
  if (std::isnan(a)) return false;
  if (std::isnan(b)) return true;
  return a < b;
}

struct Group {
  std::string hook;
  std::string architecture;
  std::vector<TradeoffPoint> points;  ///< sorted by L0
};

struct Panel {
  std::string hook;
  std::vector<Group> groups;
};

// Hooks and architectures keep the order in which the caller first lists them (usually model
// order and the order SAEs were trained), which reads better than sorting names: alphabetical
// order would put blocks.10 before blocks.2.
std::vector<Panel> panels_of(const std::vector<TradeoffPoint>& points) {
  std::vector<Panel> panels;
  std::map<std::string, size_t> hook_index;
  std::map<std::string, size_t> arch_rank;
  for (const TradeoffPoint& p : points) arch_rank.emplace(p.architecture, arch_rank.size());
  for (const TradeoffPoint& p : points) {
    auto [it, added] = hook_index.emplace(p.hook, panels.size());
    if (added) panels.push_back(Panel{p.hook, {}});
    Panel& panel = panels[it->second];
    auto group = std::find_if(panel.groups.begin(), panel.groups.end(),
                              [&](const Group& g) { return g.architecture == p.architecture; });
    if (group == panel.groups.end()) {
      panel.groups.push_back(Group{p.hook, p.architecture, {}});
      group = panel.groups.end() - 1;
    }
    group->points.push_back(p);
  }
  for (Panel& panel : panels) {
    std::stable_sort(panel.groups.begin(), panel.groups.end(), [&](const Group& a, const Group& b) {
      return arch_rank.at(a.architecture) < arch_rank.at(b.architecture);
    });
    for (Group& g : panel.groups) {
      // Stable: points with equal L0 keep the caller's order.
      std::stable_sort(g.points.begin(), g.points.end(), [](const TradeoffPoint& a, const TradeoffPoint& b) {
        return less_value(a.l0, b.l0);
      });
    }
  }
  return panels;
}

// ---- XML ----

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: {
        const auto u = static_cast<unsigned char>(c);
        // Control characters other than tab and newlines are not allowed in XML 1.0 at all.
        if (u < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += '?';
        } else {
          out += c;
        }
      }
    }
  }
  return out;
}

// ---- scales and ticks ----

struct Axis {
  bool log = false;
  double lo = 0, hi = 1;       ///< domain, in log10 units when `log`
  std::vector<double> ticks;   ///< data values (not log10)
};

std::string tick_label(double v) {
  std::string s = fmt::format("{:g}", v);
  return s == "-0" ? "0" : s;
}

// Linear ticks: the domain is widened to multiples of a 1-2-5 step so both ends are labelled,
// choosing among the steps that give 4 to 6 ticks (2.5 only when no 1-2-5 step does).
Axis linear_axis(double lo, double hi) {
  Axis axis;
  if (!(hi > lo)) {
    // One point or equal values: a band around the value instead of a zero-width domain.
    const double d = std::max(std::abs(lo) * 0.5, 1.0);
    hi = lo + d;
    lo = lo >= 0 ? std::max(0.0, lo - d) : lo - d;
  }
  const double span = hi - lo;
  const int top = static_cast<int>(std::floor(std::log10(span)));
  struct Choice {
    double step, first;
    int count;
    bool quarter;
  };
  std::vector<Choice> choices;
  for (const double mantissa : {1.0, 2.0, 2.5, 5.0}) {
    for (int e = top - 2; e <= top + 1; ++e) {
      const double step = mantissa * std::pow(10.0, e);
      const double first = std::floor(lo / step + 1e-9) * step;
      const double last = std::ceil(hi / step - 1e-9) * step;
      const int count = static_cast<int>(std::llround((last - first) / step)) + 1;
      choices.push_back({step, first, count, mantissa == 2.5});
    }
  }
  // The tightest widened domain wastes the least room; ties go to the coarser step.
  const Choice* best = nullptr;
  auto better = [&](const Choice& c) {
    if (best == nullptr) return true;
    const double span_c = c.step * (c.count - 1), span_b = best->step * (best->count - 1);
    if (std::abs(span_c - span_b) > 1e-9 * span_b) return span_c < span_b;
    return c.step > best->step;
  };
  for (const bool allow_quarter : {false, true}) {
    for (const Choice& c : choices) {
      if (c.count >= 4 && c.count <= 6 && (allow_quarter || !c.quarter) && better(c)) best = &c;
    }
    if (best != nullptr) break;
  }
  if (best == nullptr) {
    for (const Choice& c : choices) {
      if (best == nullptr || std::abs(c.count - 5) < std::abs(best->count - 5)) best = &c;
    }
  }
  for (int i = 0; i < best->count; ++i) {
    double v = best->first + i * best->step;
    if (std::abs(v) < best->step * 1e-6) v = 0;
    axis.ticks.push_back(v);
  }
  axis.lo = axis.ticks.front();
  axis.hi = axis.ticks.back();
  return axis;
}

// Log ticks inside the (slightly padded) data range: powers of ten (every k-th decade for wide
// ranges), else the first per-decade mantissa set giving 4 to 6 ticks.
Axis log_axis(double lo, double hi) {
  Axis axis;
  axis.log = true;
  const double a = std::log10(lo), b = std::log10(hi);
  const double pad = (b - a) * 0.05;
  axis.lo = a - pad;
  axis.hi = b + pad;
  const double vlo = std::pow(10.0, axis.lo) * (1 - 1e-9), vhi = std::pow(10.0, axis.hi) * (1 + 1e-9);
  const int e0 = static_cast<int>(std::floor(axis.lo)) - 1;
  const int e1 = static_cast<int>(std::ceil(axis.hi)) + 1;
  auto ticks_with = [&](const std::vector<double>& mantissas, int decade_step, int phase) {
    std::vector<double> t;
    for (int e = e0; e <= e1; ++e) {
      if ((((e - phase) % decade_step) + decade_step) % decade_step != 0) continue;
      for (const double m : mantissas) {
        const double v = m * std::pow(10.0, e);
        if (v >= vlo && v <= vhi) t.push_back(v);
      }
    }
    return t;
  };
  std::vector<std::vector<double>> candidates;
  for (int k = 1; k <= e1 - e0 && k <= 64; ++k) {
    for (int phase = 0; phase < k; ++phase) candidates.push_back(ticks_with({1}, k, phase));
  }
  const std::vector<std::vector<double>> mantissa_sets = {
      {1, 3}, {1, 5}, {1, 2}, {1, 2, 5}, {1, 2, 3, 5}, {1, 2, 4, 6, 8}, {1, 2, 3, 4, 6, 8},
      {1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9},
  };
  for (const auto& m : mantissa_sets) candidates.push_back(ticks_with(m, 1, 0));
  for (const auto& t : candidates) {
    if (t.size() >= 4 && t.size() <= 6) {
      axis.ticks = t;
      return axis;
    }
  }
  // Rare (about 3.5 decades): 3 or 7 ticks, whichever comes first.
  const auto dist = [](size_t n) { return std::abs(static_cast<int>(n) - 5); };
  for (const auto& t : candidates) {
    if (axis.ticks.empty() || dist(t.size()) < dist(axis.ticks.size())) axis.ticks = t;
  }
  return axis;
}

double axis_fraction(const Axis& axis, double v) {
  const double x = axis.log ? std::log10(v) : v;
  return axis.hi > axis.lo ? (x - axis.lo) / (axis.hi - axis.lo) : 0.5;
}

// ---- colours ----

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Known architectures always get the same colour, so figures of different runs compare at a glance.
class Palette {
 public:
  std::string colour(const std::string& architecture) {
    static const std::map<std::string, std::string> kKnown = {
        {"standard", "#1f77b4"}, {"gated", "#2ca02c"}, {"topk", "#d62728"},
        {"batchtopk", "#ff7f0e"}, {"jumprelu", "#9467bd"},
    };
    static const std::array<const char*, 5> kExtra = {"#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
    const auto known = kKnown.find(lower(architecture));
    if (known != kKnown.end()) return known->second;
    auto [it, added] = unknown_.emplace(architecture, unknown_.size());
    return kExtra[it->second % kExtra.size()];
  }

 private:
  std::map<std::string, size_t> unknown_;
};

std::string num(double v) { return fmt::format("{:.2f}", v); }

}  // namespace

std::string tradeoff_table(const std::vector<TradeoffPoint>& points) {
  const std::array<std::string, 5> header = {"hook", "architecture", "name", "L0", "loss recovered"};
  std::vector<std::array<std::string, 5>> rows;
  for (const Panel& panel : panels_of(points)) {
    for (const Group& g : panel.groups) {
      for (const TradeoffPoint& p : g.points) {
        rows.push_back({p.hook, p.architecture, p.name, fmt::format("{:.1f}", p.l0),
                        fmt::format("{:.3f}", p.loss_recovered)});
      }
    }
  }
  std::array<size_t, 5> width{};
  for (size_t c = 0; c < 5; ++c) {
    width[c] = header[c].size();
    for (const auto& r : rows) width[c] = std::max(width[c], r[c].size());
  }
  // Text columns align left and numbers right, so every line has the same length.
  auto line = [&](const std::array<std::string, 5>& cells) {
    std::string out;
    for (size_t c = 0; c < 5; ++c) {
      if (c > 0) out += "  ";
      const std::string pad(width[c] - cells[c].size(), ' ');
      out += c < 3 ? cells[c] + pad : pad + cells[c];
    }
    return out + "\n";
  };
  std::string out = line(header);
  for (const auto& r : rows) out += line(r);
  return out;
}

std::string tradeoff_svg(const std::vector<TradeoffPoint>& points, const std::string& title) {
  // Layout, in pixels: a title band, then per hook a panel with its own axes and legend.
  constexpr double kWidth = 720, kTitleH = 40, kPanelH = 340;
  constexpr double kLeft = 70, kPlotW = 440, kPanelTitleH = 30, kPlotH = 250;
  constexpr double kLegendX = kLeft + kPlotW + 24;

  const std::vector<Panel> panels = panels_of(points);
  const double height = kTitleH + std::max<size_t>(panels.size(), 1) * kPanelH;
  Palette palette;

  std::string svg;
  svg += fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n",
      num(kWidth), num(height));
  svg += "<title>" + xml_escape(title) + "</title>\n";
  svg += "<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  svg += fmt::format("<text x=\"{}\" y=\"26\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">{}</text>\n",
                     num(kWidth / 2), xml_escape(title));
  if (panels.empty()) {
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666666\">no SAEs to plot</text>\n",
                       num(kWidth / 2), num(kTitleH + kPanelH / 2));
  }

  for (size_t pi = 0; pi < panels.size(); ++pi) {
    const Panel& panel = panels[pi];
    const double top = kTitleH + pi * kPanelH;
    const double plot_top = top + kPanelTitleH;
    const double plot_bottom = plot_top + kPlotH;

    // Points that cannot be placed (NaN, infinite) stay in the table but not in the figure.
    auto plottable = [](const TradeoffPoint& p) { return std::isfinite(p.l0) && std::isfinite(p.loss_recovered); };
    double x_min = INFINITY, x_max = -INFINITY, y_min = INFINITY, y_max = -INFINITY;
    for (const Group& g : panel.groups) {
      for (const TradeoffPoint& p : g.points) {
        if (!plottable(p)) continue;
        x_min = std::min(x_min, p.l0);
        x_max = std::max(x_max, p.l0);
        y_min = std::min(y_min, p.loss_recovered);
        y_max = std::max(y_max, p.loss_recovered);
      }
    }
    const bool any = x_min <= x_max;
    if (!any) x_min = x_max = y_min = y_max = 0;
    const bool log_x = any && x_min > 0 && x_max / x_min > 4;
    const Axis x_axis = log_x ? log_axis(x_min, x_max) : linear_axis(x_min, x_max);
    // The points' own band of loss recovered (the demo's sit between 0.8 and 0.96, which a fixed
    // 0 to 1 axis squeezes into a sliver), widened by a twentieth of it on each side.
    const double y_pad = 0.05 * std::max(y_max - y_min, 0.1);
    const Axis y_axis = linear_axis(y_min - y_pad, y_max + y_pad);
    auto px = [&](double v) { return kLeft + axis_fraction(x_axis, v) * kPlotW; };
    auto py = [&](double v) { return plot_bottom - axis_fraction(y_axis, v) * kPlotH; };

    svg += "<g>\n";
    svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{}</text>\n", num(kLeft),
                       num(top + 20), xml_escape(panel.hook));
    // Grid, ticks and labels.
    for (const double t : x_axis.ticks) {
      const double x = px(t);
      svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#e0e0e0\"/>\n", num(x),
                         num(plot_top), num(plot_bottom));
      svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#333333\"/>\n", num(x),
                         num(plot_bottom), num(plot_bottom + 5));
      svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", num(x),
                         num(plot_bottom + 18), tick_label(t));
    }
    for (const double t : y_axis.ticks) {
      const double y = py(t);
      svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#e0e0e0\"/>\n", num(kLeft), num(y),
                         num(kLeft + kPlotW));
      svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#333333\"/>\n", num(kLeft - 5),
                         num(y), num(kLeft));
      svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", num(kLeft - 8), num(y + 4),
                         tick_label(t));
    }
    svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333333\"/>\n",
                       num(kLeft), num(plot_top), num(kPlotW), num(kPlotH));
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", num(kLeft + kPlotW / 2),
                       num(plot_bottom + 40), log_x ? "L0 (log scale)" : "L0");
    svg += fmt::format("<text x=\"{0}\" y=\"{1}\" text-anchor=\"middle\" transform=\"rotate(-90 {0} {1})\">"
                       "loss recovered</text>\n",
                       num(22), num(plot_top + kPlotH / 2));

    // Series, then legend.
    for (size_t gi = 0; gi < panel.groups.size(); ++gi) {
      const Group& g = panel.groups[gi];
      const std::string colour = palette.colour(g.architecture);
      std::string coords;
      for (const TradeoffPoint& p : g.points) {
        if (!plottable(p)) continue;
        if (!coords.empty()) coords += ' ';
        coords += num(px(p.l0)) + "," + num(py(p.loss_recovered));
      }
      svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n", coords, colour);
      for (const TradeoffPoint& p : g.points) {
        if (!plottable(p)) continue;
        // The <title> child is the tooltip browsers show on hover.
        const std::string tip = fmt::format("{}: L0 {:.1f}, loss recovered {:.3f}", p.name, p.l0, p.loss_recovered);
        svg += fmt::format(
            "<circle cx=\"{}\" cy=\"{}\" r=\"4\" fill=\"{}\" stroke=\"#ffffff\"><title>{}</title></circle>\n",
            num(px(p.l0)), num(py(p.loss_recovered)), colour, xml_escape(tip));
      }
      const double ly = plot_top + 10 + gi * 20;
      svg += fmt::format("<line x1=\"{0}\" y1=\"{2}\" x2=\"{1}\" y2=\"{2}\" stroke=\"{3}\" stroke-width=\"2\"/>\n",
                         num(kLegendX), num(kLegendX + 24), num(ly), colour);
      svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"8\" height=\"8\" fill=\"{}\"/>\n", num(kLegendX + 8),
                         num(ly - 4), colour);
      svg += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", num(kLegendX + 30), num(ly + 4),
                         xml_escape(g.architecture));
    }
    if (!any) {
      svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666666\">no finite values</text>\n",
                         num(kLeft + kPlotW / 2), num(plot_top + kPlotH / 2));
    }
    svg += "</g>\n";
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace saelab
