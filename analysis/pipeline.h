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

#include <string>
#include <vector>

namespace saelab {

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
