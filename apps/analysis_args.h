// Flags shared by the analysis subcommands (eval, top, graph, steer): the model, the SAEs and the
// held-out contexts.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "analysis/attached_sae.h"
#include "analysis/eval_set.h"
#include "analysis/session.h"
#include "apps/common.h"

namespace saelab {

struct AnalysisArgs {
  std::string model = default_model_dir();
  std::string saes = "runs/saes";
  bool allow_other_model = false;
  EvalSetOptions eval_set;

  explicit AnalysisArgs(int64_t contexts = EvalSetOptions{}.contexts) { eval_set.contexts = contexts; }

  template <class V>
  void fields(V& v) {
    v("model", model, "model folder with model.json");
    v("saes", saes, "SAE folder(s) in any format saelab reads, comma-separated; a folder is searched for cfg.json and ae.pt below it");
    v("allow_other_model", allow_other_model, "use SAEs whose metadata names another model file");
    eval_set.fields(v);
  }

  std::vector<std::string> sae_dirs() const {
    std::vector<std::string> dirs;
    for (const auto& item : split_list(saes)) {
      for (auto& d : find_sae_dirs(item)) dirs.push_back(d);
    }
    TORCH_CHECK(!dirs.empty(), "--saes names no SAE");
    return dirs;
  }
};

}  // namespace saelab
