#include "analysis/steering.h"

#include <fmt/format.h>

#include <cmath>
#include <set>

namespace saelab {

void SteerOptions::validate() const {
  check_fields(*this, "steering options");
  TORCH_CHECK(!alphas.empty(), "give at least one steering strength (alphas)");
  TORCH_CHECK(mode == "add" || mode == "clamp", "steering mode must be add or clamp (got '", mode, "')");
}

nlohmann::json SteerResult::to_json() const {
  auto one = [](const SteerSample& s) {
    return nlohmann::json{{"alpha", s.alpha}, {"text", s.text}, {"feature_activation", s.feature_activation},
                          {"promoted_share", s.promoted_share}};
  };
  nlohmann::json list = nlohmann::json::array();
  for (const auto& s : samples) list.push_back(one(s));
  nlohmann::json j = {{"sae", sae}, {"hook", hook}, {"feature", feature}, {"prompt", prompt}, {"mode", mode},
                      {"include_bos", include_bos}, {"unsteered", one(unsteered)}, {"steered", list}};
  if (mode == "clamp") j["max_activation"] = max_activation;
  return j;
}

std::string SteerResult::side_by_side() const {
  std::string out = fmt::format("feature {} of {} at {}\nprompt: {}\nmode: {}{}\n\n", feature, sae, hook, prompt,
                                mode == "clamp" ? fmt::format("clamp to c x max activation {:.3g}", max_activation)
                                                : std::string("add alpha x W_dec"),
                                include_bos ? ", BOS steered too" : ", BOS not steered");
  auto block = [&](const std::string& label, const SteerSample& s) {
    out += fmt::format("{:<14} activation {:7.2f}  promoted-token share {:5.1f}%\n  {}\n", label, s.feature_activation,
                       100 * s.promoted_share, s.text);
  };
  block("unsteered", unsteered);
  for (const auto& s : samples) block(fmt::format("{} {:g}", mode == "clamp" ? "c" : "alpha", s.alpha), s);
  return out;
}

HookFn steering_hook(const Sae& sae, int64_t feature, double strength, double max_activation,
                     const SteerOptions& options, std::function<torch::Tensor()> input_of) {
  options.validate();
  TORCH_CHECK(feature >= 0 && feature < sae.config().d_sae, "feature ", feature, " is outside the SAE (d_sae ",
              sae.config().d_sae, ")");
  const bool clamp = options.mode == "clamp";
  TORCH_CHECK(!clamp || (max_activation > 0 && std::isfinite(max_activation)), "clamp steering needs the feature's "
              "maximum activation (positive; got ", max_activation, "): give the feature database of `saelab top`");
  const torch::Tensor direction = sae.param("W_dec").detach()[feature].to(torch::kFloat32);  // [d_out]
  const int64_t first = options.include_bos ? 0 : 1;
  const double target = strength * max_activation;
  return [&sae, feature, direction, first, clamp, strength, target, input_of](const torch::Tensor& x) {
    TORCH_CHECK(x.dim() == 3, "steering expects activations [batch, pos, d] (got ", x.sizes(), ")");
    if (x.size(1) <= first) return x;
    torch::Tensor out = x.clone();
    torch::Tensor part = out.narrow(1, first, x.size(1) - first);
    if (clamp) {
      const torch::Tensor in = input_of ? input_of().narrow(1, first, x.size(1) - first) : part;
      const torch::Tensor f = sae.encode(in.to(torch::kFloat32)).select(-1, feature);  // [b, T']
      part.add_(((target - f).unsqueeze(-1) * direction).to(x.dtype()));
    } else {
      part.add_((direction * strength).to(x.dtype()));
    }
    return out;
  };
}

void install_steering(HookScope& scope, const AttachedSae& a, const std::vector<int64_t>& features,
                      const std::vector<double>& strengths, const std::vector<double>& max_activations,
                      const SteerOptions& options) {
  TORCH_CHECK(features.size() == strengths.size() && features.size() == max_activations.size(),
              "install_steering: one strength and one max activation per feature");
  std::function<torch::Tensor()> input_of;
  if (a.transcoder()) {
    scope.capture(a.hook);
    const HookScope* s = &scope;
    const std::string in = a.hook;
    input_of = [s, in] { return s->captured(in); };
  }
  std::vector<HookFn> hooks;
  for (size_t i = 0; i < features.size(); ++i) {
    hooks.push_back(steering_hook(a.sae(), features[i], strengths[i], max_activations[i], options, input_of));
  }
  scope.replace(a.hook_out, [hooks](const torch::Tensor& x) {
    torch::Tensor y = x;
    for (const auto& h : hooks) y = h(y);
    return y;
  });
}

SteerResult steer(LanguageModel& lm, HookedModel& hooked, const AttachedSae& a, int64_t feature,
                  const std::string& prompt, const Unembedding& unembedding, const SteerOptions& options,
                  double max_activation) {
  options.validate();
  const Sae& sae = a.sae();
  TORCH_CHECK(feature >= 0 && feature < sae.config().d_sae, "feature ", feature, " is outside SAE '", a.name,
              "' (d_sae ", sae.config().d_sae, ")");
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> ids = prompt_ids(lm, prompt);
  const torch::Tensor promoted =
      std::get<1>(feature_logit_effects(sae, unembedding, torch::tensor({feature}, torch::kInt64))[0].topk(
          std::min<int64_t>(options.promoted_tokens, unembedding.W_U.size(1))));
  std::set<int64_t> promoted_set;
  for (int64_t i = 0; i < promoted.size(0); ++i) promoted_set.insert(promoted[i].item<int64_t>());

  // Measures on the full sequence, with the same steering applied (the activation the model sees).
  auto measure = [&](SteerSample& s, double alpha, bool steered) {
    s.text = generated_text(lm, ids, s.ids);
    if (s.ids.empty()) return;
    std::vector<int64_t> all = ids;
    all.insert(all.end(), s.ids.begin(), s.ids.end());
    if (static_cast<int64_t>(all.size()) > lm.info().context_length) all.resize(static_cast<size_t>(lm.info().context_length));
    HookScope scope(hooked);
    if (steered) install_steering(scope, a, {feature}, {alpha}, {max_activation}, options);
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
  r.hook = a.hook_out;
  r.prompt = prompt;
  r.feature = feature;
  r.mode = options.mode;
  r.include_bos = options.include_bos;
  r.max_activation = max_activation;
  r.unsteered.ids = generate(lm, ids, options.generate);
  measure(r.unsteered, 0, false);
  for (double alpha : options.alphas) {
    SteerSample s;
    s.alpha = alpha;
    steering_hook(sae, feature, alpha, max_activation, options);  // checks the options before generating
    s.ids = generate(lm, ids, options.generate, [&](const torch::Tensor& tokens) {
      HookScope scope(hooked);
      install_steering(scope, a, {feature}, {alpha}, {max_activation}, options);
      return lm.logits_from_output(hooked.forward(tokens));
    });
    measure(s, alpha, true);
    r.samples.push_back(std::move(s));
  }
  return r;
}

}  // namespace saelab
