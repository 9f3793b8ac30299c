// Steering: generate with the activation at the SAE's hook changed along the feature's decoder
// direction W_dec,i on every position but BOS (position 0, which SAEs are neither trained nor
// evaluated on; include_bos changes that), for a list of strengths, next to the unsteered
// continuation. Two modes:
//   add    x + α W_dec,i. α is in units of the feature's activation: adding α W_dec,i is what an
//          activation of α would contribute to the reconstruction (the SAELens convention).
//   clamp  x + (c · max_i − f_i(x)) W_dec,i: the feature's activation in the SAE's reconstruction
//          is set to c times its maximum activation (from the feature database), the error term
//          kept (Anthropic's Golden Gate method). c is relative to each feature's own scale, so
//          effects are comparable across features; c = 0 ablates the feature.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "analysis/attached_sae.h"
#include "analysis/logit_effects.h"
#include "models/generate.h"

namespace saelab {

/// The prompt `saelab steer` and the study's steering stage use unless told otherwise.
inline constexpr const char* kSteerPrompt = "The jury said that";

struct SteerOptions {
  std::vector<double> alphas = {0, 4, 8, 16};
  std::string mode = "add";
  bool include_bos = false;
  GenerateOptions generate;
  int64_t promoted_tokens = 20;

  template <class V>
  void fields(V& v) {
    v("alphas", alphas, "steering strengths: add: α in feature-activation units (0: the hooked model with a zero vector); clamp: c, multiples of the feature's max activation", non_empty());
    v("mode", mode, "add (x + α W_dec) or clamp (the feature's activation set to c × its max activation)");
    v("include_bos", include_bos, "steer position 0 (BOS) too");
    generate.fields(v);
    v("promoted_tokens", promoted_tokens, "the feature's top promoted tokens that count as on topic for the promoted share", at_least(1));
  }
  void validate() const;
};

struct SteerSample {
  double alpha = 0;               ///< the strength: α (add) or c (clamp)
  std::vector<int64_t> ids;       ///< generated ids
  std::string text;               ///< prompt + continuation
  double feature_activation = 0;  ///< mean activation of the feature on the generated positions
  double promoted_share = 0;      ///< fraction of generated tokens among the feature's top promoted tokens
};

struct SteerResult {
  std::string sae, hook, prompt, mode;
  bool include_bos = false;
  double max_activation = 0;
  int64_t feature = 0;
  SteerSample unsteered;
  std::vector<SteerSample> samples;  ///< one per α
  nlohmann::json to_json() const;
  /// Unsteered and steered continuations side by side (one block per α), with the measures.
  std::string side_by_side() const;
};

/// The hook that steers `feature` with `strength` (α or c) in `options.mode`; `max_activation` is
/// the feature's maximum activation (clamp mode needs it positive). Activations are [b, T, d].
/// The hook refers to `sae`, which must outlive it. A transcoder's hook goes at its output hook,
/// and clamp mode reads the feature's activation from the input hook: `input_of` returns the
/// input activation of the pass (e.g. HookScope::captured of the input hook).
HookFn steering_hook(const Sae& sae, int64_t feature, double strength, double max_activation,
                     const SteerOptions& options, std::function<torch::Tensor()> input_of = nullptr);

/// Steers coder `a` in the passes `scope` runs: each feature with its strength (and max activation,
/// for clamp), one after the other, at the hook the coder writes (an SAE's own hook; a
/// transcoder's target, whose clamp mode reads the feature from the input hook).
void install_steering(HookScope& scope, const AttachedSae& a, const std::vector<int64_t>& features,
                      const std::vector<double>& strengths, const std::vector<double>& max_activations,
                      const SteerOptions& options);

/// `max_activation`: the feature's maximum activation, e.g. from the feature database (needed
/// in clamp mode only).
SteerResult steer(LanguageModel& lm, HookedModel& hooked, const AttachedSae& sae, int64_t feature,
                  const std::string& prompt, const Unembedding& unembedding, const SteerOptions& options,
                  double max_activation = 0);

}  // namespace saelab
