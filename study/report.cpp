#include "study/report.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "analysis/evaluate.h"
#include "analysis/feature_db.h"
#include "analysis/feature_queries.h"
#include "analysis/interpret.h"
#include "core/files.h"
#include "core/json_options.h"
#include "study/assets/report_assets.h"

namespace saelab {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json load_optional(const std::string& path, const char* what) {
  if (path.empty() || !fs::exists(path)) return json();
  return load_json_file(path, what);
}

// Per SAE: the features shown (explained first, by score, then the most frequent).
json features_of(FeatureDb& db, const std::string& sae, long long limit, const json& graph) {
  std::vector<int64_t> ids;
  std::set<int64_t> seen;
  {
    auto q = db.prepare("SELECT feature FROM explanations WHERE sae = ? ORDER BY score DESC");
    q.bind(1, sae);
    while (q.next()) {
      const int64_t f = q.column_int(0);
      if (static_cast<long long>(ids.size()) < limit && seen.insert(f).second) ids.push_back(f);
    }
    auto d = db.prepare("SELECT feature FROM features WHERE sae = ? AND density > 0 ORDER BY density DESC");
    d.bind(1, sae);
    while (d.next()) {
      const int64_t f = d.column_int(0);
      if (static_cast<long long>(ids.size()) < limit && seen.insert(f).second) ids.push_back(f);
    }
  }
  FeatureRecords records(db);
  json out = json::array();
  for (int64_t f : ids) out.push_back(records.get(sae, f, graph));
  return out;
}

// The page: report.html with report.css, report.js and the data in its placeholders. Only the
// skeleton is searched, so a placeholder's text inside the data or the script stays as it is.
std::string assemble_page(const std::string& data_json) {
  const std::string skeleton = kReportHtml;
  struct Part {
    std::string placeholder, text;
    size_t at = std::string::npos;
  };
  std::vector<Part> parts = {{"@STYLE@", kReportCss}, {"@SCRIPT@", kReportJs}, {"@DATA@", script_safe_json(data_json)}};
  for (auto& p : parts) {
    p.at = skeleton.find(p.placeholder);
    TORCH_CHECK(p.at != std::string::npos && skeleton.find(p.placeholder, p.at + 1) == std::string::npos,
                "study/assets/report.html must hold ", p.placeholder, " exactly once");
  }
  std::sort(parts.begin(), parts.end(), [](const Part& a, const Part& b) { return a.at < b.at; });
  std::string page;
  size_t from = 0;
  for (const auto& p : parts) {
    page.append(skeleton, from, p.at - from).append(p.text);
    from = p.at + p.placeholder.size();
  }
  return page.append(skeleton, from, std::string::npos);
}

}  // namespace

FeatureRecords::FeatureRecords(FeatureDb& db) : db_(db) {
  // A database written before explanations had precision, recall and scorable still renders.
  for (const auto& c : db.query("SELECT name FROM pragma_table_info('explanations')")) {
    has_precision_ = has_precision_ || c.value("name", std::string()) == "precision";
  }
  // Which tokens the logit effects leave out (a migrated database of version 0 has no note).
  for (const auto& n : db.query("SELECT note FROM notes WHERE topic = 'logit_effects'")) {
    logit_note_ = n.value("note", std::string());
  }
}

json FeatureRecords::get(const std::string& sae, int64_t f, const json& graph) {
  auto feat = db_.prepare("SELECT density, mean_activation, max_activation FROM features WHERE sae = ? AND feature = ?");
  auto expl = db_.prepare(has_precision_
                              ? "SELECT explanation, score, precision, recall, scorable FROM explanations WHERE sae = ? AND feature = ?"
                              : "SELECT explanation, score FROM explanations WHERE sae = ? AND feature = ?");
  auto exs = db_.prepare(
      "SELECT id, kind, rank, band, activation, context, position, doc FROM examples WHERE sae = ? AND feature = ? "
      "ORDER BY kind DESC, band, rank");
  auto toks = db_.prepare("SELECT offset, token, activation FROM example_tokens WHERE example_id = ? ORDER BY offset");
  auto logits = db_.prepare(
      "SELECT direction, token, effect FROM logit_effects WHERE sae = ? AND feature = ? ORDER BY direction, rank");
  json j = {{"id", f}};
  feat.bind(1, sae).bind(2, f);
  if (feat.next()) {
    j["density"] = feat.column_double(0);
    j["mean"] = feat.column_double(1);
    j["max"] = feat.column_double(2);
    while (feat.next()) {
    }
  }
  expl.bind(1, sae).bind(2, f);
  if (expl.next()) {
    j["explanation"] = expl.column_text(0);
    j["score"] = expl.column_double(1);
    if (has_precision_) {
      j["precision"] = expl.column_double(2);
      j["recall"] = expl.column_double(3);
      j["scorable"] = expl.column_int(4) != 0;
    }
    while (expl.next()) {
    }
  }
  if (const auto h = FeatureQueries(db_).histogram(sae, f)) {
    j["histogram"] = {{"max", h->max}, {"counts", h->counts}, {"exact", h->exact}};
  }
  j["top"] = json::array();
  j["quantiles"] = json::array();
  exs.bind(1, sae).bind(2, f);
  std::vector<json> examples;
  while (exs.next()) {
    examples.push_back({{"id", exs.column_int(0)}, {"kind", exs.column_text(1)}, {"band", exs.column_int(3)},
                        {"act", exs.column_double(4)}, {"doc", exs.column_text(7)}});
  }
  for (auto& e : examples) {
    json tokens = json::array();
    toks.bind(1, e.at("id").get<int64_t>());
    while (toks.next()) tokens.push_back({toks.column_int(0), toks.column_text(1), toks.column_double(2)});
    e["tokens"] = tokens;
    e.erase("id");
    (e.at("kind") == "top" ? j["top"] : j["quantiles"]).push_back(e);
  }
  j["promoted"] = json::array();
  j["suppressed"] = json::array();
  if (!logit_note_.empty()) j["logit_note"] = logit_note_;
  logits.bind(1, sae).bind(2, f);
  while (logits.next()) {
    j[logits.column_text(0)].push_back({logits.column_text(1), logits.column_double(2)});
  }
  j["next"] = json::array();
  j["previous"] = json::array();
  if (graph.is_object()) {
    for (const auto& e : graph.at("edges")) {
      const auto& s = e.at("source");
      const auto& t = e.at("target");
      if (s.at("sae") == sae && s.at("feature") == f) {
        j["next"].push_back({{"sae", t.at("sae")}, {"feature", t.at("feature")}, {"kind", e.at("kind")}, {"weight", e.at("weight")}});
      }
      if (t.at("sae") == sae && t.at("feature") == f) {
        j["previous"].push_back({{"sae", s.at("sae")}, {"feature", s.at("feature")}, {"kind", e.at("kind")}, {"weight", e.at("weight")}});
      }
    }
  }
  return j;
}

std::string script_safe_json(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '<') {
      out += "\\u003c";
    } else {
      out += c;
    }
  }
  return out;
}

void write_report(const ReportInputs& in, const std::string& dir) {
  const json eval = load_json_file(in.eval_json, "evaluation results");
  const json interp = load_optional(in.interp_json, "interpretation scores");
  const json graph = load_optional(in.graph_json, "feature graph");
  json steering = load_optional(in.steering_json, "steering results");
  json data = {{"title", in.title}, {"saes", json::array()}, {"features", json::object()}};
  data["plot"] = fs::exists(in.tradeoff_svg) ? read_file(in.tradeoff_svg, "trade-off plot") : std::string();
  FeatureDb db = FeatureDb::open(in.features_db);
  std::string density_note;
  for (const auto& e : eval.at("saes")) {
    json row = e;
    const std::string name = e.at("name").get<std::string>();
    if (interp.is_object() && interp.contains(name)) {
      row["interp_score"] = interp[name]["mean_score"];
      if (interp[name].contains("mean_precision")) row["interp_precision"] = interp[name]["mean_precision"];
      if (interp[name].contains("mean_recall")) row["interp_recall"] = interp[name]["mean_recall"];
    }
    // An absorption that measured no letter (a tokenizer without word-start marks) is no figure.
    if (e.contains("absorption") && e["absorption"].value("letters", int64_t{0}) > 0) {
      row["absorption_rate"] = e["absorption"].value("rate", 0.0);
    }
    if (e.contains("saelens_convention")) {
      row["loss_recovered_saelens"] = e["saelens_convention"].value("loss_recovered_vs_zero", 0.0);
    }
    if (density_note.empty() && e.contains("density_source")) {
      density_note = "dead %: from " + e.value("density_source", std::string()) + " densities" +
                     (e.value("density_tokens", int64_t{0}) > 0 ? " over " + std::to_string(e.value("density_tokens", int64_t{0})) + " tokens" : "") + ".";
    }
    data["saes"].push_back(row);
    data["features"][name] = features_of(db, name, in.options.features_per_sae, graph);
  }
  data["study"] = in.study_dir;
  data["notes"] = json::array({std::string("features: this report holds up to ") + std::to_string(in.options.features_per_sae) +
                                   " features of each SAE, the explained ones by score, then the most frequent; "
                                   "links to others are marked, and saelab serve --study " + in.study_dir +
                                   " shows every feature.",
                               std::string("loss rec., KL, KL score: ") + kSaelabConvention + ".",
                               std::string("loss rec. (SAELens): ") + kSaelensConvention + ".",
                               std::string("absorption: first-letter feature absorption rate (lower is better): how often a letter's main latent is silent where the model represents the letter and other latents carry its direction."),
                               std::string("align r: ") + kAlignmentScoreName + "; rule prec. / rec.: the rule as a detector of the feature firing."});
  if (!density_note.empty()) data["notes"].push_back(density_note);
  // Steering results gain the SAE name on each entry, for the feature pages.
  if (steering.is_object()) {
    for (auto& r : steering["results"]) r["sae"] = steering.value("sae", "");
  }
  data["steering"] = steering;
  fs::create_directories(dir);
  write_file_atomic(fs::path(dir) / "index.html", assemble_page(data.dump()));
}

}  // namespace saelab
