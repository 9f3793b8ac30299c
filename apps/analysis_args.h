// Flags shared by the analysis subcommands (eval, top, graph, steer): the model, the SAEs and the
// held-out contexts.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "analysis/attached_sae.h"
#include "analysis/eval_set.h"
#include "apps/common.h"

namespace saelab {

struct AnalysisArgs {
  std::string model = default_model_dir();
  std::string saes = "runs/saes";
  bool allow_other_model = false;
  EvalSetOptions eval_set;

  void add_to(CLI::App* cmd, int64_t default_contexts) {
    eval_set.contexts = default_contexts;
    cmd->add_option("--model", model, "model folder with model.json")->capture_default_str();
    cmd->add_option("--saes", saes, "SAE folder(s), comma-separated; a folder is searched for cfg.json below it")
        ->capture_default_str();
    cmd->add_flag("--allow-other-model", allow_other_model, "use SAEs whose metadata names another model file");
    cmd->add_option("--corpus", eval_set.corpus, "brown, brown:DIR, text:PATH or jsonl:PATH")->capture_default_str();
    cmd->add_option("--split", eval_set.split, "train, validation or test")->capture_default_str();
    cmd->add_option("--contexts", eval_set.contexts, "held-out contexts")->capture_default_str();
    cmd->add_option("--context-length", eval_set.context_length, "context length incl. BOS (0: the model's)")
        ->capture_default_str();
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

/// The model, its hooked version and the attached SAEs, opened once per command.
struct AnalysisSession {
  LanguageModel lm;
  std::unique_ptr<HookedModel> hooked;
  std::vector<AttachedSae> saes;

  static AnalysisSession open(const AnalysisArgs& args, const std::vector<std::string>& dirs) {
    AnalysisSession s{LanguageModel::open(args.model), nullptr, {}};
    s.hooked = std::make_unique<HookedModel>(s.lm.module(), s.lm.info().hook_aliases);
    s.saes = attach_saes(s.lm, *s.hooked, dirs, args.allow_other_model);
    return s;
  }
};

}  // namespace saelab
