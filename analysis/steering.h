// Steering: generate with α · W_dec,i added to the activation at the SAE's hook on every position,
// for a list of α, next to the unsteered continuation. α is in units of the feature's activation:
// adding α W_dec,i is what an activation of α would contribute to the reconstruction (the SAELens
// convention; compare α with the feature's maximum activation).
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
  GenerateOptions generate;
  int64_t promoted_tokens = 20;

  template <class V>
  void fields(V& v) {
    v("alphas", alphas, "steering strengths in feature-activation units (0: the hooked model with a zero vector)", non_empty());
    generate.fields(v);
    v("promoted_tokens", promoted_tokens, "the feature's top promoted tokens that count as on topic for the promoted share", at_least(1));
  }
  void validate() const;
};

struct SteerSample {
  double alpha = 0;
  std::vector<int64_t> ids;       ///< generated ids
  std::string text;               ///< prompt + continuation
  double feature_activation = 0;  ///< mean activation of the feature on the generated positions
  double promoted_share = 0;      ///< fraction of generated tokens among the feature's top promoted tokens
};

struct SteerResult {
  std::string sae, hook, prompt;
  int64_t feature = 0;
  SteerSample unsteered;
  std::vector<SteerSample> samples;  ///< one per α
  nlohmann::json to_json() const;
  /// Unsteered and steered continuations side by side (one block per α), with the measures.
  std::string side_by_side() const;
};

SteerResult steer(LanguageModel& lm, HookedModel& hooked, const AttachedSae& sae, int64_t feature,
                  const std::string& prompt, const Unembedding& unembedding, const SteerOptions& options);

}  // namespace saelab
