// A training run's options: its coders (SaeRunSpec), the grid of them, their validation, and the
// run config's reading.
#include <set>
#include <sstream>

#include "core/json_options.h"
#include "core/options.h"
#include "sae/train_run.h"

namespace saelab {

using nlohmann::json;

std::string SaeRunSpec::folder_name() const {
  if (!name.empty()) return name;
  std::ostringstream s;
  if (uses_k(parse_architecture(architecture))) {
    s << architecture << "-k" << k;
  } else {
    s << architecture << "-l1_" << l1;
  }
  if (skip) s << "-skip";
  return s.str();
}

std::string coder_group_name(const std::string& hook, const std::string& target) {
  return target.empty() || target == hook ? hook : hook + "__" + target;
}

std::string SaeRunOptions::target_of(size_t i) const {
  if (targets.empty()) return "";
  const std::string& t = targets.at(i);
  return t == hooks.at(i) ? std::string() : t;
}

double SaeRunSpec::bandwidth() const {
  return jumprelu_bandwidth > 0 ? jumprelu_bandwidth : default_jumprelu_bandwidth(parse_jumprelu_sparsity(jumprelu_sparsity));
}

SaeConfig SaeRunSpec::config(int64_t d_in, int64_t d_out) const {
  SaeConfig c;
  c.architecture = parse_architecture(architecture);
  c.d_in = d_in;
  TORCH_CHECK(d_out > 0 || !skip, "SAE '", folder_name(), "': skip is for transcoders (give --targets); an SAE's skip "
              "path would learn the identity");
  if (d_out > 0) {
    c.d_out = d_out;
    c.apply_b_dec_to_input = false;
    c.skip = skip;
  }
  c.d_sae = expansion * d_in;
  c.k = k;
  c.jumprelu_bandwidth = bandwidth();
  c.jumprelu_init_threshold = jumprelu_init_threshold;
  c.jumprelu_sparsity = parse_jumprelu_sparsity(jumprelu_sparsity);
  c.jumprelu_tanh_scale = jumprelu_tanh_scale;
  c.pre_act_loss_coefficient = pre_act_loss_coefficient;
  if (c.architecture == Architecture::kMatryoshkaBatchTopK) {
    c.matryoshka_widths = matryoshka_widths;
    if (c.matryoshka_widths.empty()) {
      TORCH_CHECK(matryoshka_levels >= 1 && matryoshka_levels < 31, "SAE '", folder_name(), "': matryoshka_levels must be in 1..30");
      for (int64_t l = matryoshka_levels - 1; l >= 0; --l) c.matryoshka_widths.push_back(c.d_sae >> l);
    }
  }
  try {
    c.validate();
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "SAE '", folder_name(), "' on a hook of width ", d_in, ": ", e.msg());
  }
  return c;
}

void SaeRunOptions::validate() const {
  check_fields(*this, "training run");  // every bound its fields declare, the SAEs' included
  train.validate();
  TORCH_CHECK(!saes.empty(), "give at least one SAE to train (saes)");
  std::set<std::string> names, transcoder_names;
  std::vector<std::pair<const SaeRunSpec*, std::set<std::string>*>> all;
  for (const auto& s : saes) all.emplace_back(&s, &names);
  for (const auto& s : transcoders) all.emplace_back(&s, &transcoder_names);
  for (const auto& [sp, seen] : all) {
    const SaeRunSpec& s = *sp;
    // Checked again against each hook's width when the run starts.
    const Architecture a = parse_architecture(s.architecture);
    parse_jumprelu_sparsity(s.jumprelu_sparsity);
    if (a != Architecture::kMatryoshkaBatchTopK || !s.matryoshka_widths.empty()) {
      SaeConfig c;
      c.architecture = a;
      c.d_in = 1;
      c.d_sae = s.matryoshka_widths.empty() ? std::max<int64_t>(1, s.expansion) * std::max<int64_t>(1, s.k)
                                            : s.matryoshka_widths.back();
      c.k = s.k;
      c.matryoshka_widths = s.matryoshka_widths;
      c.jumprelu_bandwidth = s.bandwidth();
      c.validate();
    }
    // The field's rule is >= 0; a threshold of 0 would start every latent firing.
    TORCH_CHECK(s.jumprelu_init_threshold > 0, "SAE '", s.folder_name(), "': jumprelu_init_threshold must be positive");
    TORCH_CHECK(seen->insert(s.folder_name()).second, "two SAEs are named '", s.folder_name(), "'; give them distinct names");
  }
  TORCH_CHECK(targets.empty() || !hooks.empty(), "targets pairs each of hooks with the hook it predicts: give hooks too");
  TORCH_CHECK(targets.empty() || targets.size() == hooks.size(), "targets names the hook each of hooks predicts: give ",
              hooks.size(), " (got ", targets.size(), ")");
  std::set<std::string> groups;
  for (size_t i = 0; i < hooks.size(); ++i) {
    const std::string key = coder_group_name(hooks[i], target_of(i));
    TORCH_CHECK(groups.insert(key).second, "hook '", key, "' is listed twice");
  }
}

json SaeRunOptions::to_json() const {
  json j = options_json(*this);
  j["format_version"] = 2;  // 2: the checkpoint keeps each SAE apart
  for (size_t i = 0; i < saes.size(); ++i) j["saes"][i]["name"] = saes[i].folder_name();
  for (size_t i = 0; i < transcoders.size(); ++i) j["transcoders"][i]["name"] = transcoders[i].folder_name();
  return j;
}

std::vector<SaeRunSpec> SaeGridOptions::specs() const {
  std::vector<SaeRunSpec> out;
  for (const auto& arch : architectures) {
    SaeRunSpec base;
    base.architecture = arch;
    base.expansion = expansion;
    base.skip = skip;
    if (uses_k(parse_architecture(arch))) {
      for (int64_t one : k) {
        SaeRunSpec s = base;
        s.k = one;
        out.push_back(s);
      }
    } else {
      for (double one : l1) {
        SaeRunSpec s = base;
        s.l1 = one;
        out.push_back(s);
      }
    }
  }
  return out;
}

void read_sae_run_options(const json& config, const std::string& where, SaeRunOptions& o) {
  JsonFields f(config, where);
  SaeGridOptions grid;
  read_options(f, grid);
  const bool grid_given = config.contains("architectures");
  const json* saes = config.contains("saes") ? &config.at("saes") : nullptr;
  TORCH_CHECK(!(saes && grid_given), where, ": give either 'saes' or 'architectures', not both");
  TORCH_CHECK(!saes || (saes->is_array() && !saes->empty()), where, ": 'saes' must be a non-empty array of objects");
  read_options(f, o);
  f.finish();
  if (grid_given) o.saes = grid.specs();
  if (saes) {
    for (size_t i = 0; i < saes->size(); ++i) {
      if (!(*saes)[i].contains("expansion")) o.saes[i].expansion = grid.expansion;
    }
  }
  if (config.contains("transcoders")) {
    const json& t = config.at("transcoders");
    TORCH_CHECK(t.is_array(), where, ": 'transcoders' must be an array of objects");
    for (size_t i = 0; i < t.size(); ++i) {
      if (!t[i].contains("expansion")) o.transcoders[i].expansion = grid.expansion;
    }
  }
}

}  // namespace saelab
