// The sparsity / fidelity trade-off: L0 against loss recovered for many SAEs of a hook, one line
// per architecture (the comparison in which gated and TopK SAEs were shown to beat the standard SAE).
#pragma once
#include <string>
#include <vector>

namespace saelab {

struct TradeoffPoint {
  std::string hook;
  std::string architecture;
  std::string name;     ///< SAE name (label)
  double l0 = 0;
  double loss_recovered = 0;
};

/// A fixed-width text table, one row per point, grouped by hook then architecture, sorted by L0.
std::string tradeoff_table(const std::vector<TradeoffPoint>& points);

/// A self-contained SVG (no scripts, no external references): one panel per hook, x = L0 (log scale
/// when the L0 values span more than a factor of 4), y = loss recovered, one coloured polyline with
/// markers per architecture, sorted by L0, with axes, ticks and a legend. Labels are XML-escaped.
std::string tradeoff_svg(const std::vector<TradeoffPoint>& points, const std::string& title);

}  // namespace saelab
