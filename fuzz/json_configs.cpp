// Every JSON config reader. The first input byte picks the reader (byte % 6; seeds use the digit
// '0'..'5'), the rest is the JSON text:
//   0  SAE training config   read_sae_run_options (sae/train_run.h), as `saelab train --config`
//   1  pipeline config       validate_pipeline_config (study/pipeline.h), as `saelab demo --check`;
//                            a string "model" (top level, also when left out, or in "quick") is replaced by a tiny model
//                            folder (fuzz/fuzz_models.h): the checks against the model run, and the
//                            input cannot make it open files of its choosing
//   2  the same with --quick (the config's "quick" object merged over it)
//   3  LM training config    {"model": GptConfig, "train": LmTrainOptions}, as `saelab train-lm --config`
//   4  capture config        the CaptureOptions keys plus model and out, as `saelab capture --config`
//   5  activation manifest   StoreManifest::from_json (core/activation_store.h)
// The readers of 3 and 4 live inside apps/cmd_train_lm.cpp and apps/cmd_capture.cpp (an
// anonymous namespace of an executable), so they are restated here from the same library calls.
#include <string>

#include "core/activation_store.h"
#include "core/json_options.h"
#include "core/options.h"
#include "fuzz/fuzz_target.h"
#include "fuzz/fuzz_models.h"
#include "fuzz/fuzz_util.h"
#include "models/capture.h"
#include "models/gpt.h"
#include "models/lm_train.h"
#include "sae/train_run.h"
#include "study/pipeline.h"

namespace {

using namespace saelab;

// apps/cmd_capture.cpp's CaptureCommand.
struct CaptureConfig {
  std::string model = SAELAB_SOURCE_DIR "/assets/brown-gpt";
  std::string out = "runs/acts";
  CaptureOptions capture;
  template <class V>
  void fields(V& v) {
    v("model", model, "model folder with model.json");
    v("out", out, "output folder");
    capture.fields(v);
  }
};

void sae_train_config(const json& j) {
  SaeRunOptions o;
  read_sae_run_options(j, "fuzz.json", o);
  o.validate();
  o.to_json();
}

void pipeline_config(const json& j, bool quick) {
  static const std::string model = [] {
    const fuzz::fs::path d = fuzz::fresh_dir("pipeline-model");
    fuzz::write_tiny_model(d);
    return d.string();
  }();
  PipelineOptions o;
  o.config = j;
  if (o.config.is_object()) {
    if (!o.config.contains("model") || o.config["model"].is_string()) o.config["model"] = model;
    json& q = o.config["quick"];
    if (q.is_object() && q.contains("model") && q["model"].is_string()) q["model"] = model;
    if (q.is_null()) o.config.erase("quick");
  }
  o.config_path = "fuzz.json";
  o.quick = quick;
  validate_pipeline_config(o);
}

void lm_train_config(const json& cfg) {
  GptConfig model;
  LmTrainOptions train;
  JsonFields top(cfg, "fuzz.json");
  if (const json* m = top.allow("model")) model = GptConfig::from_json(*m, "fuzz.json: model");
  if (const json* t = top.allow("train")) read_options(*t, "fuzz.json: train", train);
  top.finish();
  model.validate();
  train.validate();
  model.to_json();
  train.to_json();
}

void capture_config(const json& j) {
  CaptureConfig o;
  read_options(j, "fuzz.json", o);
  o.capture.validate();
}

void activation_manifest(const json& j) {
  const StoreManifest m = StoreManifest::from_json(j, "manifest.json");
  // What the writer stores must read back as the same capture.
  StoreManifest back;
  fuzz::must_succeed("reading a rewritten activation manifest",
                     [&] { back = StoreManifest::from_json(m.to_json(), "manifest.json (rewritten)"); });
  fuzz::require(back.same_capture(m) && back.rows == m.rows && back.shards == m.shards,
                "an activation manifest survives to_json / from_json");
}

}  // namespace

SAELAB_FUZZ_TARGET(json_configs) {
  static const bool once = (torch::set_num_threads(1), true);
  (void)once;
  if (size == 0) return 0;
  const int reader = data[0] % 6;
  const std::string text = fuzz::as_string(data + 1, size - 1);
  fuzz::rejecting([&] {
    const json j = parse_json_text(text, "fuzz.json");
    switch (reader) {
      case 0: sae_train_config(j); break;
      case 1: pipeline_config(j, false); break;
      case 2: pipeline_config(j, true); break;
      case 3: lm_train_config(j); break;
      case 4: capture_config(j); break;
      case 5: activation_manifest(j); break;
    }
  });
  return 0;
}
