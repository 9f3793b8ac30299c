#include "analysis/interpret.h"

#include <algorithm>
#include <random>
#include <set>

#include "analysis/feature_db.h"
#include "analysis/logit_effects.h"
#include "core/progress.h"
#include "models/corpus.h"

namespace saelab {

void InterpretOptions::validate() const {
  check_fields(*this, "explanation options");
  // batch_size is not a field of its own: top's --batch-size is used (study/stages.h).
  TORCH_CHECK(batch_size > 0, "batch_size must be positive (got ", batch_size, ")");
}

TokenPool token_pool(const EvalSet& e, const Tokenizer& tokenizer) {
  const int64_t n = e.contexts(), T = e.length();
  auto body = [&](const torch::Tensor& t) { return t.narrow(1, 1, T - 1).reshape(-1).contiguous(); };
  TokenPool p;
  p.token = body(e.tokens);
  p.prev_token = body(e.previous_tokens());
  p.tag = body(e.tag);
  p.word_start = body(e.word_start);
  p.genre = e.genre.unsqueeze(1).expand({n, T - 1}).reshape(-1).contiguous();
  p.context = torch::arange(n, torch::kInt64).unsqueeze(1).expand({n, T - 1}).reshape(-1).contiguous();
  p.tag_names = e.tag_names;
  for (const auto& g : e.genre_names) p.genre_names.push_back(brown_genre_name(g).empty() ? g : brown_genre_name(g));
  // BOS decodes to nothing; explanations that name it ("previous token ∈ {…}") say <BOS>.
  p.token_text = [&tokenizer](int64_t id) { return id == tokenizer.bos_id() ? std::string("<BOS>") : display_token(tokenizer, id); };
  return p;
}

std::vector<SaeInterpretation> interpret_saes(HookedModel& hooked, const std::vector<AttachedSae>& saes,
                                              const EvalSet& eval_set, const Tokenizer& tokenizer,
                                              const InterpretOptions& options) {
  options.validate();
  TORCH_CHECK(eval_set.contexts() > 0, "the evaluation set is empty");
  torch::NoGradGuard no_grad;
  const TokenPool pool = token_pool(eval_set, tokenizer);
  const int64_t n = eval_set.contexts(), T = eval_set.length(), B = options.batch_size;
  std::set<std::string> hooks;
  for (const auto& a : saes) hooks.insert(a.hook);
  // Activations of every SAE on every pool token, kept sparse-ish as float32 per SAE: [N, d_sae]
  // would be large, so first count firings, choose features, then gather only their columns.
  std::vector<torch::Tensor> counts(saes.size());
  std::vector<torch::Tensor> chosen(saes.size());
  std::vector<torch::Tensor> acts(saes.size());
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t s = 0; s < n; s += B) {
      const torch::Tensor toks = eval_set.tokens.narrow(0, s, std::min(B, n - s));
      const ActivationCache cache = hooked.run_with_cache(toks, {hooks.begin(), hooks.end()});
      for (size_t i = 0; i < saes.size(); ++i) {
        const torch::Tensor f =
            saes[i].sae().encode(cache[saes[i].hook].to(torch::kFloat32)).narrow(1, 1, T - 1).reshape({-1, saes[i].sae().config().d_sae});
        if (pass == 0) {
          // In row chunks: a sum over the bool [tokens, d_sae] mask converts all of it to int64
          // first (800 MB for 4 contexts × 1024 at d_sae 24,576).
          const int64_t rows = f.size(0), chunk = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(1, f.size(1)));
          for (int64_t r = 0; r < rows; r += chunk) {
            const torch::Tensor c = (f.narrow(0, r, std::min(chunk, rows - r)) > 0).sum(0).to(torch::kInt64);
            counts[i] = counts[i].defined() ? counts[i] + c : c;
          }
        } else {
          acts[i].narrow(0, s * (T - 1), f.size(0)).copy_(f.index_select(1, chosen[i]));
        }
      }
    }
    if (pass == 0) {
      std::mt19937_64 rng(static_cast<uint64_t>(options.scoring.seed));
      for (size_t i = 0; i < saes.size(); ++i) {
        const torch::Tensor alive = (counts[i] >= options.min_fires).nonzero().squeeze(1);
        std::vector<int64_t> ids(alive.data_ptr<int64_t>(), alive.data_ptr<int64_t>() + alive.numel());
        std::shuffle(ids.begin(), ids.end(), rng);
        ids.resize(std::min<size_t>(ids.size(), static_cast<size_t>(options.features)));
        std::sort(ids.begin(), ids.end());
        chosen[i] = torch::tensor(ids, torch::kInt64);
        acts[i] = torch::zeros({pool.token.size(0), static_cast<int64_t>(ids.size())});
      }
    }
  }
  const RuleExplainer explainer(options.rules);
  std::vector<SaeInterpretation> out;
  for (size_t i = 0; i < saes.size(); ++i) {
    SaeInterpretation r;
    r.sae = saes[i].name;
    Progress bar("explain " + saes[i].name, chosen[i].size(0), "feat");
    double total = 0, precision = 0, recall = 0;
    for (int64_t j = 0; j < chosen[i].size(0); ++j) {
      r.features.push_back(chosen[i][j].item<int64_t>());
      r.explanations.push_back(explain_and_score(explainer, pool, acts[i].select(1, j).contiguous(), options.scoring));
      const Explanation& e = r.explanations.back();
      if (e.scorable) {
        ++r.scorable;
        total += e.score;
        precision += e.precision;
        recall += e.recall;
      } else {
        ++r.unscorable;
      }
      bar.update(j + 1);
    }
    bar.finish();
    if (r.scorable > 0) {
      const double n = static_cast<double>(r.scorable);
      r.mean_score = total / n;
      r.mean_precision = precision / n;
      r.mean_recall = recall / n;
    }
    out.push_back(std::move(r));
  }
  return out;
}

nlohmann::json SaeInterpretation::to_json() const {
  return {{"score_name", kAlignmentScoreName}, {"mean_score", mean_score}, {"mean_precision", mean_precision},
          {"mean_recall", mean_recall}, {"features", features.size()}, {"scorable", scorable},
          {"unscorable", unscorable}};
}

void write_explanations(FeatureDb& db, const std::vector<SaeInterpretation>& results) {
  db.transaction([&] {
    auto row = db.prepare(
        "INSERT INTO explanations(sae, feature, explainer, explanation, rule, explain_score, score, scored_tokens, "
        "precision, recall, scorable) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const auto& r : results) {
      for (size_t j = 0; j < r.features.size(); ++j) {
        const Explanation& e = r.explanations[j];
        row.bind(1, r.sae).bind(2, r.features[j]).bind(3, e.explainer).bind(4, e.text).bind(5, e.rule.dump())
            .bind(6, e.explain_score).bind(7, e.score).bind(8, e.scored_tokens).bind(9, e.precision)
            .bind(10, e.recall).bind(11, static_cast<int64_t>(e.scorable)).run();
      }
    }
  });
}

}  // namespace saelab
