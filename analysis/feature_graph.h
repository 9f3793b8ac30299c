// Features across layers. For SAEs on consecutive hooks (layer L, then L + 1):
//   cosine edges  per source feature, the next layer's features with the most cosine-similar
//                 decoder directions;
//   causal edges  the effect of ablating the source feature — removing f_i(x) · W_dec,i from the
//                 activation at hook L on every position but BOS — on the next layer's SAE features
//                 at hook L + 1, averaged over the non-BOS positions where the source feature fires
//                 (in contexts where it fires most): effect_j = mean (f_j(clean) − f_j(ablated)), so
//                 a positive effect means the source feature excites feature j.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "analysis/attached_sae.h"
#include "analysis/eval_set.h"

namespace saelab {

/// Held-out contexts `saelab graph` reads unless told otherwise.
constexpr int64_t kGraphContexts = 32;

struct GraphOptions {
  std::string name;
  int64_t similar = 3;
  int64_t ablated_features = 16;
  int64_t contexts = 8;
  int64_t effects = 3;
  int64_t batch_size = 8;

  template <class V>
  void fields(V& v) {
    v("name", name, "SAE folder name chained across the hooks (empty: the first SAE found)", path_name());
    v("similar", similar, "most similar next-layer features per source feature (cosine edges)", at_least(0));
    v("ablated_features", ablated_features, "source features per layer whose ablation is measured (the most frequent)", at_least(0));
    v("ablation_contexts", contexts, "contexts (where the feature fires most) each ablation runs on", at_least(1));
    v("effects", effects, "strongest causal edges kept per ablated feature", at_least(0));
    v("batch_size", batch_size, "contexts per forward pass", at_least(1));
  }
  void validate() const;
};

struct FeatureEdge {
  std::string kind;  ///< "cosine" or "ablation"
  std::string source_sae, target_sae;
  int64_t source = 0, target = 0;
  double weight = 0;  ///< cosine similarity, or the mean ablation effect
};

struct FeatureGraph {
  std::vector<FeatureEdge> edges;
  nlohmann::json to_json() const;
};

/// `chain` lists SAEs on consecutive layers in order (e.g. one SAE per residual stream); edges go
/// from each SAE to the next.
FeatureGraph build_feature_graph(HookedModel& hooked, const std::vector<AttachedSae>& chain, const EvalSet& eval_set,
                                 const GraphOptions& options);

/// The SAEs named `name` (their folder name; empty: the first SAE's) in the order the forward pass
/// reaches their hooks. Throws when none is so named.
std::vector<AttachedSae> graph_chain(const HookedModel& hooked, const std::vector<AttachedSae>& saes,
                                     const std::string& name);

/// Effect of ablating feature `source` of `from` at positions 1.. of `tokens` [b, T] (position 0,
/// BOS, untouched) on the features of `to`: the mean over positions ≥ 1 where the source fires of
/// f_to(clean) − f_to(ablated) [d_sae of `to`], and the number of such positions. Contexts are run
/// `batch` at a time.
std::pair<torch::Tensor, int64_t> ablation_effect(HookedModel& hooked, const AttachedSae& from, int64_t source,
                                                  const AttachedSae& to, const torch::Tensor& tokens, int64_t batch = 4);

}  // namespace saelab
