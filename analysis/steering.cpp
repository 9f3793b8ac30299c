#include "analysis/steering.h"

#include <fmt/format.h>

#include <set>

namespace saelab {

void SteerOptions::validate() const {
  TORCH_CHECK(!alphas.empty(), "give at least one steering strength (alphas)");
  TORCH_CHECK(promoted_tokens > 0, "promoted_tokens must be positive (got ", promoted_tokens, ")");
}

nlohmann::json SteerResult::to_json() const {
  auto one = [](const SteerSample& s) {
    return nlohmann::json{{"alpha", s.alpha}, {"text", s.text}, {"feature_activation", s.feature_activation},
                          {"promoted_share", s.promoted_share}};
  };
  nlohmann::json list = nlohmann::json::array();
  for (const auto& s : samples) list.push_back(one(s));
  return {{"sae", sae}, {"hook", hook}, {"feature", feature}, {"prompt", prompt}, {"unsteered", one(unsteered)},
          {"steered", list}};
}

std::string SteerResult::side_by_side() const {
  std::string out = fmt::format("feature {} of {} at {}\nprompt: {}\n\n", feature, sae, hook, prompt);
  auto block = [&](const std::string& label, const SteerSample& s) {
    out += fmt::format("{:<14} activation {:7.2f}  promoted-token share {:5.1f}%\n  {}\n", label, s.feature_activation,
                       100 * s.promoted_share, s.text);
  };
  block("unsteered", unsteered);
  for (const auto& s : samples) block(fmt::format("alpha {:g}", s.alpha), s);
  return out;
}

SteerResult steer(LanguageModel& lm, HookedModel& hooked, const AttachedSae& a, int64_t feature,
                  const std::string& prompt, const Unembedding& unembedding, const SteerOptions& options) {
  options.validate();
  const Sae& sae = a.sae();
  TORCH_CHECK(feature >= 0 && feature < sae.config().d_sae, "feature ", feature, " is outside SAE '", a.name,
              "' (d_sae ", sae.config().d_sae, ")");
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> ids = prompt_ids(lm, prompt);
  const torch::Tensor direction = sae.param("W_dec").detach()[feature];  // [d_in]
  const torch::Tensor promoted =
      std::get<1>(feature_logit_effects(sae, unembedding, torch::tensor({feature}, torch::kInt64))[0].topk(
          std::min<int64_t>(options.promoted_tokens, unembedding.W_U.size(1))));
  std::set<int64_t> promoted_set;
  for (int64_t i = 0; i < promoted.size(0); ++i) promoted_set.insert(promoted[i].item<int64_t>());

  // Measures on the full sequence, with the same steering applied (the activation the model sees).
  auto measure = [&](SteerSample& s, const torch::Tensor& vec) {
    s.text = generated_text(lm, ids, s.ids);
    if (s.ids.empty()) return;
    std::vector<int64_t> all = ids;
    all.insert(all.end(), s.ids.begin(), s.ids.end());
    if (static_cast<int64_t>(all.size()) > lm.info().context_length) all.resize(static_cast<size_t>(lm.info().context_length));
    HookScope scope(hooked);
    if (vec.defined()) scope.add(a.hook, vec);
    scope.capture(a.hook);
    scope.stop_after_last_hook();
    hooked.forward(torch::tensor(all, torch::kInt64).unsqueeze(0));
    const torch::Tensor x = scope.captured(a.hook)[0].to(torch::kFloat32);
    const int64_t first = static_cast<int64_t>(ids.size());
    const int64_t count = static_cast<int64_t>(all.size()) - first;
    if (count > 0) s.feature_activation = sae.encode(x.narrow(0, first, count)).select(1, feature).mean().item<double>();
    int64_t hits = 0;
    for (int64_t t : s.ids) hits += promoted_set.count(t) ? 1 : 0;
    s.promoted_share = static_cast<double>(hits) / static_cast<double>(s.ids.size());
  };

  SteerResult r;
  r.sae = a.name;
  r.hook = a.hook;
  r.prompt = prompt;
  r.feature = feature;
  r.unsteered.ids = generate(lm, ids, options.generate);
  measure(r.unsteered, torch::Tensor());
  for (double alpha : options.alphas) {
    SteerSample s;
    s.alpha = alpha;
    const torch::Tensor vec = (direction * alpha).to(torch::kFloat32);
    s.ids = generate(lm, ids, options.generate, [&](const torch::Tensor& tokens) {
      HookScope scope(hooked);
      scope.add(a.hook, vec);
      return lm.logits_from_output(hooked.forward(tokens));
    });
    measure(s, vec);
    r.samples.push_back(std::move(s));
  }
  return r;
}

}  // namespace saelab
