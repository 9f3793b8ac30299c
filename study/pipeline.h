// The end-to-end study as cached, resumable stages: capture → train → eval → top (texts, logit
// effects, explanations) → graph → steer → report. Described by a JSON config
// (configs/demo.json is the bundled default).
//
// Each stage has a key: the SHA-256 of its own options, the keys of the stages it reads and the
// model file's hash. OUT/stages/<stage>.json records the key of a finished stage; a rerun skips a
// stage whose recorded key matches, so changing one option reruns that stage and what depends on
// it. A stage that was started but not finished with the same key resumes where it stopped
// (capture and training checkpoint themselves; the others are short and start over); one started
// with another key starts from scratch. Every output is written atomically, so an interrupted
// stage never leaves an output that looks finished.
#pragma once
#include <nlohmann/json.hpp>

#include "analysis/eval_set.h"
#include "analysis/evaluate.h"
#include "analysis/logit_effects.h"
#include "analysis/steering.h"
#include "analysis/top_activations.h"

#include <string>
#include <vector>

namespace saelab {

/// The config's stages, in order; each is an object read into the options struct of that stage:
/// capture CaptureOptions, train the keys of a training config (sae/train_run.h, without store and
/// out; "source": "model" streams the capture's plan from the model into training instead of
/// capturing it to disk first), eval StudyEvalOptions, top StudyTopOptions, explain InterpretOptions, graph GraphOptions,
/// steer StudySteerOptions, report ReportOptions.
inline constexpr const char* kStudyStages[] = {"capture", "train", "eval", "top", "explain", "graph", "steer", "report"};

/// The eval stage: the held-out contexts and the evaluation.
struct StudyEvalOptions {
  EvalSetOptions set;
  EvalOptions eval;
  template <class V>
  void fields(V& v) {
    set.fields(v);
    eval.fields(v);
  }
};

/// The top stage: contexts, top activations and logit effects.
struct StudyTopOptions {
  EvalSetOptions set = [] {
    EvalSetOptions o;
    o.contexts = kTopContexts;
    return o;
  }();
  TopOptions top;
  LogitEffectOptions logits;
  template <class V>
  void fields(V& v) {
    set.fields(v);
    top.fields(v);
    logits.fields(v);
  }
};

/// The steer stage: the best-explained features of one SAE of the graph's chain.
struct StudySteerOptions {
  int64_t features = 3;
  int64_t layer = 1;
  std::string prompt = kSteerPrompt;
  SteerOptions steer;
  template <class V>
  void fields(V& v) {
    v("features", features, "features steered: the best explained among those of density below 0.05", at_least(0));
    v("layer", layer, "which SAE of the graph's chain (0: the first hook's)", at_least(0));
    v("prompt", prompt, "prompt continued with and without steering");
    steer.fields(v);
  }
};

struct PipelineOptions {
  /// The config (see configs/demo.json for every key).
  nlohmann::json config;
  /// Where the config came from (errors name it). Its "model" path is relative to the repository,
  /// its "out" to the working directory.
  std::string config_path;
  /// Apply the config's "quick" object over it (fewer tokens, a smaller sweep).
  bool quick = false;
  /// Output folder; empty: the config's "out".
  std::string out;
  /// Data cache (corpora, tokenizer files).
  std::string cache_dir;
};

struct StageRecord {
  std::string name;
  bool ran = false;  ///< false: cached
  double seconds = 0;
};

struct PipelineResult {
  std::string out, report;
  std::vector<StageRecord> stages;
  nlohmann::json summary;  ///< per SAE: architecture, hook, L0, FVU, loss recovered, KL, dead %, auto-interp score
  /// A terminal table of `summary`.
  std::string summary_table() const;
};

/// Checks the config (unknown keys and wrong types name the key) without running anything.
void validate_pipeline_config(const PipelineOptions& options);

PipelineResult run_pipeline(const PipelineOptions& options);

}  // namespace saelab
