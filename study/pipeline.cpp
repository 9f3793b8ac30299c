#include "study/pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <filesystem>
#include <map>

#include "analysis/attached_sae.h"
#include "analysis/feature_db.h"
#include "analysis/feature_graph.h"
#include "analysis/feature_queries.h"
#include "analysis/logit_effects.h"
#include "analysis/session.h"
#include "analysis/steering.h"
#include "study/report.h"
#include "study/stages.h"
#include "core/fault.h"
#include "core/files.h"
#include "core/json_options.h"
#include "core/activation_store.h"
#include "core/runtime.h"
#include "models/capture.h"
#include "sae/train_run.h"

namespace saelab {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string resolve_path(const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  return (fs::path(SAELAB_SOURCE_DIR) / p).string();
}

// Everything the stages need, read strictly from the config.
struct Plan {
  std::string model = SAELAB_SOURCE_DIR "/assets/brown-gpt";
  std::string out = "runs/demo";
  CaptureOptions capture;         // every hook the study captures: the SAEs' and the transcoders'
  std::vector<std::string> sae_hooks;  // capture.hooks as configured: one SAE group each, the chain
  bool stream = false;  // train.source "model": train on the capture's plan streamed from the model
  SaeRunOptions train;
  StudyEvalOptions eval;
  StudyTopOptions top;
  InterpretOptions explain;
  GraphOptions graph;
  StudySteerOptions steer;
  ReportOptions report;
};

json section(const json& cfg, const char* key) {
  return cfg.contains(key) ? cfg.at(key) : json::object();
}

Plan read_plan(const PipelineOptions& options) {
  const std::string& where = options.config_path;
  TORCH_CHECK(options.config.is_object(), where, ": the pipeline config must be a JSON object");
  json cfg = options.config;
  const json quick = cfg.contains("quick") ? cfg.at("quick") : json();
  cfg.erase("quick");
  if (options.quick) {
    TORCH_CHECK(quick.is_object(), where, ": --quick needs a \"quick\" object in the config");
    cfg.merge_patch(quick);
  }
  Plan p;
  JsonFields top_level(cfg, where);
  top_level.read("model", p.model);
  top_level.read("out", p.out);
  for (const char* key : kStudyStages) {
    const json* s = top_level.allow(key);
    TORCH_CHECK(!s || s->is_object(), where, ": key '", key, "' must be an object");
  }
  top_level.finish();
  p.model = resolve_path(p.model);
  if (!options.out.empty()) p.out = options.out;
  auto at = [&](const char* key) { return where + ": " + key; };
  read_options(section(cfg, "capture"), at("capture"), p.capture);
  TORCH_CHECK(!p.capture.hooks.empty(), where, ": capture.hooks must list at least one hook");
  p.capture.validate();
  json train = section(cfg, "train");
  TORCH_CHECK(!train.contains("store") && !train.contains("out"), where,
              ": train.store and train.out are set by the pipeline; remove them");
  if (train.is_object() && train.contains("source")) {
    const json& source = train.at("source");
    TORCH_CHECK(source == "store" || source == "model", where,
                ": train.source must be \"store\" (capture to disk, then train) or \"model\" (stream the capture's plan "
                "from the model into training), got ", source.dump());
    p.stream = source == "model";
    train.erase("source");
  }
  read_sae_run_options(train, at("train"), p.train);
  p.train.validate();
  // Transcoders: train.hooks[i] → train.targets[i], captured beside the SAEs' hooks.
  p.sae_hooks = p.capture.hooks;
  TORCH_CHECK(p.train.hooks.size() == p.train.targets.size(), where,
              ": train.hooks are the transcoders' inputs and train.targets their outputs; give one target per hook (",
              p.train.hooks.size(), " hooks, ", p.train.targets.size(), " targets)");
  for (const auto& list : {p.train.hooks, p.train.targets}) {
    for (const auto& h : list) {
      if (std::find(p.capture.hooks.begin(), p.capture.hooks.end(), h) == p.capture.hooks.end()) p.capture.hooks.push_back(h);
    }
  }
  read_options(section(cfg, "eval"), at("eval"), p.eval);
  p.eval.set.validate();
  p.eval.eval.validate();
  read_options(section(cfg, "top"), at("top"), p.top);
  p.top.set.validate();
  p.top.top.validate();
  read_options(section(cfg, "explain"), at("explain"), p.explain);
  p.explain.validate();
  read_options(section(cfg, "graph"), at("graph"), p.graph);
  p.graph.validate();
  read_options(section(cfg, "steer"), at("steer"), p.steer);
  p.steer.steer.validate();
  read_options(section(cfg, "report"), at("report"), p.report);
  return p;
}

// What needs the model to know: every hook exists and carries [batch, pos, d]; every context fits
// the model; every k fits its SAE's width; graph.name names an SAE of the config; steer.layer is a
// hook of the chain; the capture fits on the disk. `--check` and a run both call this before any
// work starts.
void check_plan_against_model(const Plan& p, const std::string& where, LanguageModel& lm, HookedModel& hooked) {
  auto fail = [&](const std::string& key, const std::string& why) { TORCH_CHECK(false, where, ": ", key, ": ", why); };
  std::vector<int64_t> widths;
  for (const auto& h : p.capture.hooks) {
    std::vector<int64_t> shape;
    try {
      shape = hooked.hook_shape(h);
    } catch (const c10::Error& e) {
      fail("capture.hooks", e.msg());
    }
    if (shape.size() != 3) fail("capture.hooks", "hook '" + h + "' does not carry a [batch, pos, d] activation");
    widths.push_back(shape[2]);
  }
  const int64_t n_ctx = lm.info().context_length;
  for (const auto& [key, ctx] : {std::pair<const char*, int64_t>{"capture.context_length", p.capture.context_length},
                                 {"eval.context_length", p.eval.set.context_length},
                                 {"top.context_length", p.top.set.context_length}}) {
    if (ctx > n_ctx) fail(key, std::to_string(ctx) + " is longer than the model's context_length " + std::to_string(n_ctx));
  }
  std::vector<std::string> names;
  for (const auto& s : p.train.saes) names.push_back(s.folder_name());
  std::vector<const SaeRunSpec*> specs;
  for (const auto& s : p.train.saes) specs.push_back(&s);
  for (const auto& s : p.train.transcoders) specs.push_back(&s);
  for (const SaeRunSpec* sp : specs) {
    const SaeRunSpec& s = *sp;
    if (!uses_k(parse_architecture(s.architecture))) continue;
    for (size_t i = 0; i < widths.size(); ++i) {
      const int64_t d_sae = s.expansion * widths[i];
      if (s.k > d_sae) {
        fail("train", "SAE '" + s.folder_name() + "': k " + std::to_string(s.k) + " exceeds its d_sae " +
                          std::to_string(d_sae) + " (expansion " + std::to_string(s.expansion) + " x d " +
                          std::to_string(widths[i]) + " at " + p.capture.hooks[i] + ")");
      }
      try {
        s.config(widths[i]);  // e.g. matryoshka widths that do not nest into this d_sae
      } catch (const c10::Error& e) {
        fail("train", e.msg());
      }
    }
  }
  if (!p.graph.name.empty() && std::find(names.begin(), names.end(), p.graph.name) == names.end()) {
    std::string all;
    for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
    fail("graph.name", "'" + p.graph.name + "' is none of the SAEs trained (" + all + ")");
  }
  if (p.steer.layer >= static_cast<int64_t>(p.sae_hooks.size())) {
    fail("steer.layer", std::to_string(p.steer.layer) + " is past the chain of " +
                            std::to_string(p.sae_hooks.size()) + " hooks (0 to " +
                            std::to_string(p.sae_hooks.size() - 1) + ")");
  }
  // The logit lens the top and steer stages read logit effects through, found before any work.
  try {
    (void)find_unembedding(lm);
  } catch (const c10::Error& e) {
    fail("model", e.msg());
  }
  if (p.stream) return;  // nothing goes to disk
  const double value_bytes = static_cast<double>(c10::elementSize(store_dtype(p.capture.dtype)));
  double need = 0;
  for (int64_t d : widths) need += static_cast<double>(p.capture.tokens) * (static_cast<double>(d) * value_bytes + 24.0);
  require_disk(p.out, need, where + ": capture.tokens " + std::to_string(p.capture.tokens));
}

// Stage bookkeeping: OUT/stages/<name>.json holds {"key", "started" | "done"}.
class Stages {
 public:
  Stages(const fs::path& out, std::string model_sha) : dir_(out / "stages"), model_sha_(std::move(model_sha)) {
    fs::create_directories(dir_);
  }

  std::string key(const std::string& name, const json& config, const std::vector<std::string>& upstream) {
    json j = {{"stage", name}, {"config", config}, {"model_sha256", model_sha_}, {"upstream", json::array()}};
    for (const auto& u : upstream) j["upstream"].push_back(keys_.at(u));
    const std::string k = sha256_hex(j.dump());
    keys_[name] = k;
    return k;
  }

  // Runs `fn` unless the stage finished with this key. `clear` removes the stage's outputs when
  // an earlier attempt ran with another key.
  StageRecord run(const std::string& name, const std::string& key, const std::function<void()>& clear,
                  const std::function<void()>& fn) {
    const fs::path stamp = dir_ / (name + ".json");
    StageRecord rec{name, false, 0};
    if (fs::exists(stamp)) {
      const json s = load_json_file(stamp.string(), "stage record");
      if (s.value("key", "") == key && s.value("state", "") == "done") {
        std::printf("[%s] cached\n", name.c_str());
        return rec;
      }
      if (s.value("key", "") != key) clear();
    } else {
      clear();
    }
    write_file_atomic(stamp, json{{"key", key}, {"state", "started"}}.dump() + "\n");
    std::printf("[%s] running\n", name.c_str());
    std::fflush(stdout);
    const auto t0 = std::chrono::steady_clock::now();
    // Fault points for the kill tests: the stage's 1-based place in the run's order.
    static const char* const kOrder[] = {"capture", "train", "eval", "top", "graph", "steer", "report"};
    const int64_t index = std::find(std::begin(kOrder), std::end(kOrder), name) - std::begin(kOrder) + 1;
    fault_point("stage_started", index);
    fn();
    // Outputs written, not yet stamped done: the worst moment for a kill.
    fault_point("stage_finishing", index);
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rec.ran = true;
    write_file_atomic(stamp, json{{"key", key}, {"state", "done"}, {"seconds", rec.seconds}}.dump() + "\n");
    std::printf("[%s] done in %.1f s\n", name.c_str(), rec.seconds);
    return rec;
  }

 private:
  fs::path dir_;
  std::string model_sha_;
  std::map<std::string, std::string> keys_;
};

std::function<void()> remove_paths(std::vector<fs::path> paths) {
  return [paths] {
    for (const auto& p : paths) fs::remove_all(p);
  };
}

}  // namespace

std::string PipelineResult::summary_table() const {
  std::string out = fmt::format("{:<34} {:>7} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>7}\n", "SAE", "L0", "FVU",
                                "LR0", "LR0*", "KL", "KLscore", "absorb", "dead%", "align r");
  auto number = [](const json& row, const char* key, const char* outer = nullptr) -> std::string {
    const json* r = &row;
    if (outer != nullptr) {
      if (!row.contains(outer)) return "-";
      r = &row.at(outer);
    }
    return r->contains(key) ? fmt::format("{:.3f}", r->at(key).get<double>()) : "-";
  };
  std::string density_source;
  for (const auto& s : summary) {
    const std::string name = s.at("name").get<std::string>();
    out += fmt::format("{:<34} {:>7.1f} {:>6.3f} {:>7} {:>7} {:>7.3f} {:>7} {:>7} {:>6.1f} {:>7}\n",
                       name.size() > 34 ? name.substr(name.size() - 34) : name, s.at("l0").get<double>(),
                       s.at("fvu").get<double>(), number(s, "loss_recovered_vs_zero"),
                       number(s, "loss_recovered_vs_zero", "saelens_convention"), s.at("kl").get<double>(),
                       number(s, "kl_div_score"),
                       s.contains("absorption") && s.at("absorption").value("letters", int64_t{0}) > 0
                           ? number(s, "rate", "absorption")
                           : std::string("-"),
                       100 * s.at("dead_fraction").get<double>(),
                       number(s, "interp_score"));
    if (density_source.empty()) density_source = s.value("density_source", "");
  }
  out += fmt::format("LR0, KL, KLscore: {}\nLR0*: {}\n", kSaelabConvention, kSaelensConvention);
  if (!density_source.empty()) out += "dead%: from " + density_source + " densities\n";
  out += "absorb: first-letter feature absorption rate (lower is better)\n";
  out += fmt::format("align r: {}\n", kAlignmentScoreName);
  return out;
}

void validate_pipeline_config(const PipelineOptions& options) {
  const Plan p = read_plan(options);
  LanguageModel lm = LanguageModel::open(p.model);
  HookedModel hooked(lm.module(), lm.info().hook_aliases);
  check_plan_against_model(p, options.config_path, lm, hooked);
}

PipelineResult run_pipeline(const PipelineOptions& options) {
  const Plan p = read_plan(options);
  const fs::path out = p.out;
  const RunLock lock = RunLock::folder(out, "study folder");
  ModelSession session = ModelSession::open(p.model);
  LanguageModel& lm = session.lm;
  HookedModel& hooked = *session.hooked;
  check_plan_against_model(p, options.config_path, lm, hooked);
  Stages stages(out, sha256_file(lm.model_path()));
  PipelineResult result;
  result.out = out.string();
  const fs::path acts = out / "acts", saes_dir = out / "saes", eval_json = out / "eval.json",
                 plot = out / "tradeoff.svg", db_path = out / "features.sqlite", interp_json = out / "interp.json",
                 graph_json = out / "graph.json", steer_json = out / "steering.json", report_dir = out / "report";

  // 1. capture (streamed into training instead with train.source "model")
  {
    const std::string key = stages.key("capture", options_json(p.capture), {});
    if (!p.stream) {
      result.stages.push_back(stages.run("capture", key, remove_paths({acts}), [&] {
        capture_activations(lm, p.capture, options.cache_dir, acts.string());
      }));
    }
  }
  // 2. train
  {
    json train_key = p.train.to_json();
    if (p.stream) train_key["source"] = {{"model", true}, {"buffer_rows", p.train.buffer_rows}};
    const std::string key = stages.key("train", train_key, {"capture"});
    result.stages.push_back(stages.run("train", key, remove_paths({saes_dir}), [&] {
      SaeRunOptions o = p.train;
      o.store = acts.string();
      o.out = saes_dir.string();
      // One SAE group per configured capture hook, then the transcoder pairs.
      o.hooks = p.sae_hooks;
      o.targets.clear();
      if (!p.train.hooks.empty()) {
        o.targets = p.sae_hooks;
        o.hooks.insert(o.hooks.end(), p.train.hooks.begin(), p.train.hooks.end());
        o.targets.insert(o.targets.end(), p.train.targets.begin(), p.train.targets.end());
      }
      SaeRunResult r;
      if (p.stream) {
        const std::unique_ptr<ActivationStream> stream = open_activation_stream(
            lm, p.capture, options.cache_dir, o.train.batch_size, o.buffer_rows, static_cast<uint64_t>(o.seed));
        r = run_sae_training(o, stream.get());
      } else {
        r = run_sae_training(o);
      }
      TORCH_CHECK(r.complete, "training stopped before its last step");
    }));
  }
  const std::vector<std::string> dirs = find_sae_dirs(saes_dir.string());
  session.attach(dirs);
  const std::vector<AttachedSae>& saes = session.saes;
  // 3. eval
  {
    const std::string key = stages.key("eval", options_json(p.eval), {"train"});
    result.stages.push_back(stages.run("eval", key, remove_paths({eval_json, plot}), [&] {
      const EvalSet set = build_eval_set(lm, p.eval.set, options.cache_dir);
      const EvalReport r = run_eval_stage(session, set, p.eval.eval, eval_json.string(), plot.string());
      std::printf("%s", r.table().c_str());
    }));
  }
  // 4. top activations, logit effects, explanations
  {
    const json cfg = {{"top", options_json(p.top)}, {"explain", options_json(p.explain)}};
    const std::string key = stages.key("top", cfg, {"train"});
    result.stages.push_back(stages.run("top", key, remove_paths({db_path, interp_json}), [&] {
      const EvalSet set = build_eval_set(lm, p.top.set, options.cache_dir);
      const TopStageOptions stage{p.top.top, p.top.logits.tokens, /*explain=*/true, p.explain};
      const auto interp = run_top_stage(session, set, stage, options.cache_dir, db_path.string());
      json scores = json::object();
      for (const auto& r : interp) scores[r.sae] = r.to_json();
      write_file_atomic(interp_json, scores.dump(1) + "\n");
    }));
  }
  // The chain for the graph and steering: one SAE name across the hooks, in forward order.
  std::vector<AttachedSae> chain;
  try {
    chain = graph_chain(hooked, saes, p.graph.name);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, options.config_path, ": ", e.msg());
  }
  // 5. graph
  {
    const std::string key = stages.key("graph", options_json(p.graph), {"train", "eval"});
    result.stages.push_back(stages.run("graph", key, remove_paths({graph_json}), [&] {
      FeatureGraph g;
      if (chain.size() >= 2) {
        const EvalSet set = build_eval_set(lm, p.eval.set, options.cache_dir);
        g = build_feature_graph(hooked, chain, set, p.graph);
      }
      write_file_atomic(graph_json, g.to_json().dump(1) + "\n");
    }));
  }
  // 6. steering: the best-explained features of one SAE of the chain
  {
    // Which SAEs it steers is the chain's (graph.name): part of the key, as the options are.
    json steer_key = options_json(p.steer);
    steer_key["chain"] = json::array();
    for (const auto& a : chain) steer_key["chain"].push_back(a.name);
    const std::string key = stages.key("steer", steer_key, {"top"});
    result.stages.push_back(stages.run("steer", key, remove_paths({steer_json}), [&] {
      TORCH_CHECK(p.steer.layer < static_cast<int64_t>(chain.size()), options.config_path, ": steer.layer ",
                  p.steer.layer, " is past the graph's chain of ", chain.size(), " SAEs");
      const AttachedSae& a = chain.at(static_cast<size_t>(p.steer.layer));
      FeatureDb db = FeatureDb::open(db_path.string());
      const std::vector<FeatureQueries::Explained> features =
          FeatureQueries(db).best_explained(a.name, p.steer.features, /*max_density=*/0.05);
      db.commit();
      const Unembedding u = find_unembedding(lm);
      json list = json::array();
      for (const auto& f : features) {
        const SteerResult r = steer(lm, hooked, a, f.feature, p.steer.prompt, u, p.steer.steer, f.max_activation);
        list.push_back(r.to_json());
      }
      write_file_atomic(steer_json, json{{"sae", a.name}, {"results", list}}.dump(1) + "\n");
    }));
  }
  // 7. report
  {
    const std::string key = stages.key("report", options_json(p.report), {"eval", "top", "graph", "steer"});
    result.stages.push_back(stages.run("report", key, remove_paths({report_dir}), [&] {
      ReportInputs in;
      in.title = "saelab study: " + lm.info().name;
      in.eval_json = eval_json.string();
      in.tradeoff_svg = plot.string();
      in.features_db = db_path.string();
      in.interp_json = interp_json.string();
      in.graph_json = graph_json.string();
      in.steering_json = steer_json.string();
      in.study_dir = p.out;
      in.options = p.report;
      write_report(in, report_dir.string());
    }));
  }
  result.report = (report_dir / "index.html").string();
  const json eval = load_json_file(eval_json.string(), "evaluation");
  const json interp = load_json_file(interp_json.string(), "interpretation");
  result.summary = json::array();
  for (const auto& e : eval.at("saes")) {
    json row = e;
    row.erase("density_histogram");
    if (interp.contains(e.at("name").get<std::string>())) row["interp_score"] = interp[e.at("name").get<std::string>()]["mean_score"];
    result.summary.push_back(row);
  }
  return result;
}

}  // namespace saelab
