// A model opened for analysis: the model folder, its hooked version and the coders attached to it.
// Every analysis command, the server and the study open their model this one way.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "analysis/attached_sae.h"
#include "models/hooked_model.h"
#include "models/model_bundle.h"

namespace saelab {

struct ModelSession {
  LanguageModel lm;
  std::unique_ptr<HookedModel> hooked;  ///< over lm's module; a pointer so the session can move
  std::vector<AttachedSae> saes;

  /// Opens the model folder (checked against its model.json) with no coders attached.
  static ModelSession open(const std::string& model_dir) {
    ModelSession s{LanguageModel::open(model_dir), nullptr, {}};
    s.hooked = std::make_unique<HookedModel>(s.lm.module(), s.lm.info().hook_aliases);
    return s;
  }
  /// Opens the model and attaches the coders of `dirs` (each checked against the model).
  static ModelSession open(const std::string& model_dir, const std::vector<std::string>& dirs,
                           bool allow_other_model = false) {
    ModelSession s = open(model_dir);
    s.attach(dirs, allow_other_model);
    return s;
  }
  /// Attaches the coders of `dirs`, replacing any attached before.
  void attach(const std::vector<std::string>& dirs, bool allow_other_model = false) {
    saes = attach_saes(lm, *hooked, dirs, allow_other_model);
  }
};

}  // namespace saelab
