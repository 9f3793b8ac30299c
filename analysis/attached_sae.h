// SAEs attached to a model: loaded from SAELens directories and checked against the model they are
// used with (the hook exists, the widths agree, the model file is the one the SAE was trained on).
#pragma once
#include <string>
#include <vector>

#include "models/hooked_model.h"
#include "models/model_bundle.h"
#include "sae/sae_io.h"

namespace saelab {

struct AttachedSae {
  std::string name;  ///< "<parent folder>/<SAE folder>" (in a training run: "<hook>/<SAE name>")
  std::string dir;
  std::string hook;  ///< the hook the SAE reads, by its preferred name (HookedModel::preferred_name)
  LoadedSae loaded;

  const Sae& sae() const { return loaded.sae; }
};

/// `path` itself when it holds cfg.json, else every folder below it that does (sorted). Throws when
/// there is none.
std::vector<std::string> find_sae_dirs(const std::string& path);

/// Loads each SAE and checks it against the model: its hook must resolve, its d_in must equal the
/// hook's width (measured with a probe forward pass), and a model hash recorded in its metadata must
/// equal the model file's (unless `allow_other_model`). Errors name the SAE folder.
std::vector<AttachedSae> attach_saes(LanguageModel& lm, HookedModel& hooked, const std::vector<std::string>& dirs,
                                     bool allow_other_model = false);

}  // namespace saelab
