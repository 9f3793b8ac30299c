// SAEs and transcoders attached to a model: loaded from SAELens directories and checked against the
// model they are used with (the hooks exist, the widths agree, the model file is the one the coder
// was trained on), and spliced into its forward passes.
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
  /// The hook it writes: its own hook for an SAE, the target for a transcoder (metadata hook_name_out).
  std::string hook_out;
  LoadedSae loaded;

  const Sae& sae() const { return loaded.sae; }
  /// Reads one hook and predicts another.
  bool transcoder() const { return hook_out != hook; }
  /// "reads H" for an SAE, "reads H, writes H'" for a transcoder (for tables and pages).
  std::string hooks_text() const;
};

/// What a coder writes for input activations x [..., d_in]: predict(x, encode(x)), in x's dtype
/// (computed in float32).
torch::Tensor coder_output(const Sae& sae, const torch::Tensor& x);

/// Splices coders into the forward passes `scope` runs: the activation at each coder's output hook
/// is replaced by its prediction from the activation at its input hook in the same pass (the
/// input comes first in the model, so an earlier splice reaches it), at every position but the
/// first (BOS) unless `include_bos`. With `with_error` the coder's error (activation − prediction)
/// is added back: the model's own output up to rounding, through the coder's arithmetic. The coders
/// must outlive the scope's passes and write distinct hooks.
void splice_coders(HookScope& scope, const std::vector<const AttachedSae*>& coders, bool include_bos = false,
                   bool with_error = false);

/// `path` itself when it holds cfg.json, else every folder below it that does (sorted). Throws when
/// there is none.
std::vector<std::string> find_sae_dirs(const std::string& path);

/// Loads each SAE and checks it against the model: its hook must resolve, its d_in must equal the
/// hook's width (measured with a probe forward pass), and a model hash recorded in its metadata must
/// equal the model file's (unless `allow_other_model`). Errors name the SAE folder.
std::vector<AttachedSae> attach_saes(LanguageModel& lm, HookedModel& hooked, const std::vector<std::string>& dirs,
                                     bool allow_other_model = false);

}  // namespace saelab
