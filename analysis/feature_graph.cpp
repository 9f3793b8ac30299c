#include "analysis/feature_graph.h"

#include <algorithm>
#include <filesystem>
#include <map>

namespace saelab {

void GraphOptions::validate() const { check_fields(*this, "graph options"); }

std::vector<AttachedSae> graph_chain(const HookedModel& hooked, const std::vector<AttachedSae>& saes,
                                     const std::string& name) {
  TORCH_CHECK(!saes.empty(), "the feature graph needs SAEs (none given)");
  const std::string chosen = name.empty() ? std::filesystem::path(saes.front().dir).filename().string() : name;
  std::map<std::string, size_t> order;
  for (size_t i = 0; i < hooked.hook_points().size(); ++i) order[hooked.hook_points()[i]] = i;
  std::vector<AttachedSae> chain;
  for (const auto& a : saes) {
    if (std::filesystem::path(a.dir).filename() == chosen) chain.push_back(a);
  }
  TORCH_CHECK(!chain.empty(), "graph name '", chosen, "' names no SAE");
  std::sort(chain.begin(), chain.end(),
            [&](const AttachedSae& a, const AttachedSae& b) { return order.at(hooked.resolve(a.hook)) < order.at(hooked.resolve(b.hook)); });
  return chain;
}

nlohmann::json FeatureGraph::to_json() const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : edges) {
    list.push_back({{"kind", e.kind}, {"source", {{"sae", e.source_sae}, {"feature", e.source}}},
                    {"target", {{"sae", e.target_sae}, {"feature", e.target}}}, {"weight", e.weight}});
  }
  return {{"format_version", 1}, {"edges", list}};
}

std::pair<torch::Tensor, int64_t> ablation_effect(HookedModel& hooked, const AttachedSae& from, int64_t source,
                                                  const AttachedSae& to, const torch::Tensor& tokens, int64_t batch) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(from.hook != to.hook, "ablation_effect: the two SAEs share hook ", from.hook);
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(1) >= 2, "ablation_effect: tokens must be [b, T >= 2] (got ", tokens.sizes(), ")");
  TORCH_CHECK(batch > 0, "ablation_effect: batch must be positive (got ", batch, ")");
  const Sae& s1 = from.sae();
  const Sae& s2 = to.sae();
  const torch::Tensor w = s1.param("W_dec").detach()[source];  // [d_out]
  // Position 0 is BOS, which SAEs are neither trained nor evaluated on: it is not ablated, and
  // its effect is not measured. Contexts go `batch` at a time, the differences summed: memory is
  // that of one batch's codes, whatever the number of contexts.
  const int64_t T = tokens.size(1);
  torch::Tensor sum = torch::zeros({s2.config().d_sae}, torch::kFloat64);
  int64_t n = 0;
  for (int64_t s = 0; s < tokens.size(0); s += batch) {
    const torch::Tensor toks = tokens.narrow(0, s, std::min(batch, tokens.size(0) - s));
    torch::Tensor fires, clean, ablated;  // fires [b, T − 1]: the source's activation in the clean run
    {
      const ActivationCache cache = hooked.run_with_cache(toks, {from.hook, to.hook});
      fires = s1.encode(cache[from.hook].narrow(1, 1, T - 1).to(torch::kFloat32)).select(-1, source);
      clean = s2.encode(cache[to.hook].narrow(1, 1, T - 1).to(torch::kFloat32));
    }
    const torch::Tensor mask = fires > 0;
    const int64_t fired = mask.sum().item<int64_t>();
    if (fired == 0) continue;
    {
      // The source's contribution f·w is taken out where it is written: an SAE's own hook, a
      // transcoder's target (its code read from the input hook of the same pass).
      HookScope scope(hooked);
      if (from.transcoder()) scope.capture(from.hook);
      scope.replace(from.hook_out, [&](const torch::Tensor& x) {
        const torch::Tensor in = from.transcoder() ? scope.captured(from.hook) : x;
        const torch::Tensor f = s1.encode(in.narrow(1, 1, T - 1).to(torch::kFloat32)).select(-1, source);  // [b, T − 1]
        torch::Tensor out = x.clone();
        out.narrow(1, 1, T - 1).sub_((f.unsqueeze(-1) * w).to(x.dtype()));
        return out;
      });
      scope.capture(to.hook);
      scope.stop_after_last_hook();
      hooked.forward(toks);
      ablated = s2.encode(scope.captured(to.hook).narrow(1, 1, T - 1).to(torch::kFloat32));
    }
    sum += (clean - ablated).index({mask}).to(torch::kFloat64).sum(0);  // over the firing positions
    n += fired;
  }
  if (n == 0) return {torch::zeros({s2.config().d_sae}), 0};
  return {(sum / static_cast<double>(n)).to(torch::kFloat32), n};
}

FeatureGraph build_feature_graph(HookedModel& hooked, const std::vector<AttachedSae>& chain, const EvalSet& eval_set,
                                 const GraphOptions& options) {
  options.validate();
  TORCH_CHECK(chain.size() >= 2, "a feature graph needs SAEs on at least two consecutive hooks");
  torch::NoGradGuard no_grad;
  FeatureGraph g;
  const int64_t n = eval_set.contexts(), B = options.batch_size;
  for (size_t l = 0; l + 1 < chain.size(); ++l) {
    const AttachedSae& a = chain[l];
    const AttachedSae& b = chain[l + 1];
    // Cosine edges between decoder directions.
    const torch::Tensor W1 = a.sae().param("W_dec").detach(), W2 = b.sae().param("W_dec").detach();
    TORCH_CHECK(W1.size(1) == W2.size(1), "SAEs '", a.name, "' and '", b.name, "' live in spaces of different width");
    const int64_t k = std::min(options.similar, W2.size(0));
    if (k > 0) {
      const torch::Tensor cos = torch::matmul(W1 / W1.norm(2, {1}, true).clamp_min(1e-12),
                                              (W2 / W2.norm(2, {1}, true).clamp_min(1e-12)).t());
      auto [vals, idx] = cos.topk(k, 1);
      for (int64_t i = 0; i < W1.size(0); ++i) {
        for (int64_t j = 0; j < k; ++j) {
          g.edges.push_back({"cosine", a.name, b.name, i, idx[i][j].item<int64_t>(), vals[i][j].item<double>()});
        }
      }
    }
    if (options.ablated_features == 0 || options.effects == 0) continue;
    // Which source features fire most, and in which contexts (max activation per context).
    torch::Tensor counts = torch::zeros({a.sae().config().d_sae}, torch::kInt64);
    torch::Tensor ctx_max = torch::zeros({n, a.sae().config().d_sae});
    for (int64_t s = 0; s < n; s += B) {
      const torch::Tensor toks = eval_set.tokens.narrow(0, s, std::min(B, n - s));
      const torch::Tensor f = a.sae().encode(hooked.run_with_cache(toks, {a.hook})[a.hook].to(torch::kFloat32)).narrow(1, 1, toks.size(1) - 1);
      counts += (f > 0).sum(c10::IntArrayRef{0, 1}).to(torch::kInt64);
      ctx_max.narrow(0, s, toks.size(0)).copy_(std::get<0>(f.max(1)));
    }
    const int64_t m = std::min(options.ablated_features, (counts > 0).sum().item<int64_t>());
    const torch::Tensor chosen = std::get<1>(counts.topk(m));
    for (int64_t c = 0; c < m; ++c) {
      const int64_t feat = chosen[c].item<int64_t>();
      const torch::Tensor best = std::get<1>(ctx_max.select(1, feat).topk(std::min(options.contexts, n)));
      const torch::Tensor toks = eval_set.tokens.index_select(0, best);
      auto [effect, positions] = ablation_effect(hooked, a, feat, b, toks, B);
      if (positions == 0) continue;
      auto [vals, idx] = effect.abs().topk(std::min(options.effects, effect.size(0)));
      for (int64_t j = 0; j < vals.size(0); ++j) {
        const int64_t t = idx[j].item<int64_t>();
        if (vals[j].item<double>() == 0) break;
        g.edges.push_back({"ablation", a.name, b.name, feat, t, effect[t].item<double>()});
      }
    }
  }
  return g;
}

}  // namespace saelab
