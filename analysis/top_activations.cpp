#include "analysis/top_activations.h"

#include <algorithm>
#include <random>
#include <set>
#include <unordered_map>

#include "analysis/feature_db.h"
#include "analysis/logit_effects.h"
#include "core/progress.h"
#include "sae/topk_kernels.h"

namespace saelab {

namespace {

struct Hit {
  float activation;
  int32_t context, position;
  bool operator>(const Hit& o) const { return activation > o.activation; }
};

// Per feature: a min-heap of the best hits and a reservoir of firing positions.
struct FeatureState {
  std::vector<Hit> heap;       // min-heap by activation (std::greater)
  std::vector<Hit> reservoir;  // uniform sample of all firings
  int64_t fires = 0;
  double sum = 0;
  float max = 0;
};

// Captures the SAEs' hooks for a batch of contexts and returns each SAE's code [b, T, d_sae].
std::vector<torch::Tensor> codes_for(HookedModel& hooked, const std::vector<AttachedSae>& saes, const torch::Tensor& toks) {
  std::set<std::string> hooks;
  for (const auto& a : saes) hooks.insert(a.hook);
  const ActivationCache cache = hooked.run_with_cache(toks, {hooks.begin(), hooks.end()});
  std::vector<torch::Tensor> out;
  for (const auto& a : saes) out.push_back(a.sae().encode(cache[a.hook].to(torch::kFloat32)));
  return out;
}

}  // namespace

void TopOptions::validate() const { check_fields(*this, "top options"); }

std::vector<SaeTopResult> find_top_activations(HookedModel& hooked, const std::vector<AttachedSae>& saes,
                                               const EvalSet& eval_set, const TopOptions& options) {
  options.validate();
  TORCH_CHECK(!saes.empty(), "no SAE given");
  TORCH_CHECK(eval_set.contexts() > 0 && eval_set.length() >= 2, "the evaluation set is empty");
  torch::NoGradGuard no_grad;
  const int64_t n = eval_set.contexts(), T = eval_set.length(), B = options.batch_size;
  std::mt19937_64 rng(static_cast<uint64_t>(options.seed));
  std::vector<std::vector<FeatureState>> state(saes.size());
  std::vector<std::unordered_map<uint64_t, std::pair<int64_t, double>>> token_counts(saes.size());
  for (size_t i = 0; i < saes.size(); ++i) state[i].resize(static_cast<size_t>(saes[i].sae().config().d_sae));
  const auto tokens = eval_set.tokens.accessor<int64_t, 2>();

  Progress bar("top activations", n, "ctx");
  for (int64_t s = 0; s < n; s += B) {
    const int64_t b = std::min(B, n - s);
    const auto codes = codes_for(hooked, saes, eval_set.tokens.narrow(0, s, b));
    for (size_t i = 0; i < saes.size(); ++i) {
      const int64_t d_sae = saes[i].sae().config().d_sae;
      const torch::Tensor f = codes[i].narrow(1, 1, T - 1).contiguous();  // BOS excluded
      // Top-k candidates of the batch per feature (a row of the transposed code each), merged into
      // the heaps; ties go to the earlier position.
      const torch::Tensor flat = f.reshape({-1, d_sae});
      const int64_t kk = std::min<int64_t>(options.top_k, flat.size(0));
      auto [vals, rows] = row_topk(flat.t().contiguous(), kk);
      const auto va = vals.accessor<float, 2>();
      const auto ra = rows.accessor<int64_t, 2>();
      for (int64_t j = 0; j < d_sae; ++j) {
        auto& heap = state[i][static_cast<size_t>(j)].heap;
        for (int64_t r = 0; r < kk; ++r) {
          const float v = va[j][r];
          if (v <= 0) break;
          if (static_cast<int64_t>(heap.size()) == options.top_k && v <= heap.front().activation) break;
          const Hit h{v, static_cast<int32_t>(s + ra[j][r] / (T - 1)), static_cast<int32_t>(ra[j][r] % (T - 1) + 1)};
          heap.push_back(h);
          std::push_heap(heap.begin(), heap.end(), std::greater<Hit>());
          if (static_cast<int64_t>(heap.size()) > options.top_k) {
            std::pop_heap(heap.begin(), heap.end(), std::greater<Hit>());
            heap.pop_back();
          }
        }
      }
      // Every firing: density, reservoir, token counts.
      const torch::Tensor nz = f.nonzero();  // [nnz, 3] (context, position − 1, feature)
      const torch::Tensor nz_vals = f.index({nz.select(1, 0), nz.select(1, 1), nz.select(1, 2)});
      const auto na = nz.accessor<int64_t, 2>();
      const auto nv = nz_vals.accessor<float, 1>();
      for (int64_t e = 0; e < nz.size(0); ++e) {
        const int32_t ctx = static_cast<int32_t>(s + na[e][0]), pos = static_cast<int32_t>(na[e][1] + 1);
        const int64_t feat = na[e][2];
        const float v = nv[e];
        FeatureState& fs = state[i][static_cast<size_t>(feat)];
        ++fs.fires;
        fs.sum += v;
        fs.max = std::max(fs.max, v);
        if (static_cast<int64_t>(fs.reservoir.size()) < options.reservoir) {
          fs.reservoir.push_back({v, ctx, pos});
        } else {
          const uint64_t slot = rng() % static_cast<uint64_t>(fs.fires);
          if (slot < static_cast<uint64_t>(options.reservoir)) fs.reservoir[slot] = {v, ctx, pos};
        }
        if (options.features_per_token > 0) {
          auto& tc = token_counts[i][static_cast<uint64_t>(tokens[ctx][pos]) * static_cast<uint64_t>(d_sae) +
                                     static_cast<uint64_t>(feat)];
          ++tc.first;
          tc.second += v;
        }
      }
    }
    bar.update(s + b);
  }
  bar.finish();

  // Results: examples (top by rank, quantile samples by band) and token → feature tables.
  const int64_t n_tokens = n * (T - 1);
  std::vector<SaeTopResult> results(saes.size());
  for (size_t i = 0; i < saes.size(); ++i) {
    SaeTopResult& res = results[i];
    res.tokens = n_tokens;
    res.features.resize(state[i].size());
    for (size_t j = 0; j < state[i].size(); ++j) {
      FeatureState& fs = state[i][j];
      FeatureSummary& out = res.features[j];
      out.fires = fs.fires;
      out.density = static_cast<double>(fs.fires) / static_cast<double>(n_tokens);
      out.mean_activation = fs.fires > 0 ? fs.sum / static_cast<double>(fs.fires) : 0.0;
      out.max_activation = fs.max;
      std::sort(fs.heap.begin(), fs.heap.end(), std::greater<Hit>());
      for (size_t r = 0; r < fs.heap.size(); ++r) {
        out.examples.push_back({fs.heap[r].activation, fs.heap[r].context, fs.heap[r].position, "top",
                                static_cast<int32_t>(r), -1, 0, {}});
      }
      // The activation histogram over (0, max]: the reservoir's values binned and scaled to every firing.
      if (fs.fires > 0 && !fs.reservoir.empty() && fs.max > 0) {
        out.histogram.assign(static_cast<size_t>(options.histogram_bins), 0.0);
        const double scale = static_cast<double>(fs.fires) / static_cast<double>(fs.reservoir.size());
        for (const Hit& h : fs.reservoir) {
          const double at = static_cast<double>(h.activation) / static_cast<double>(fs.max);
          const int64_t bin = std::min<int64_t>(options.histogram_bins - 1,
                                                static_cast<int64_t>(at * static_cast<double>(options.histogram_bins)));
          out.histogram[static_cast<size_t>(std::max<int64_t>(0, bin))] += scale;
        }
        out.histogram_exact = fs.fires == static_cast<int64_t>(fs.reservoir.size());
      }
      // Quantile bands over the reservoir (sorted by activation): band q holds ranks
      // [q·m/Q, (q+1)·m/Q); samples are spread evenly within the band.
      std::sort(fs.reservoir.begin(), fs.reservoir.end(), [](const Hit& a, const Hit& b) { return a.activation < b.activation; });
      const int64_t m = static_cast<int64_t>(fs.reservoir.size());
      for (int64_t q = 0; q < options.quantile_bands && m > 0; ++q) {
        const int64_t lo = q * m / options.quantile_bands, hi = (q + 1) * m / options.quantile_bands;
        const int64_t count = std::min(options.per_band, hi - lo);
        for (int64_t c = 0; c < count; ++c) {
          const Hit& h = fs.reservoir[static_cast<size_t>(lo + (hi - lo) * c / std::max<int64_t>(1, count))];
          out.examples.push_back({h.activation, h.context, h.position, "quantile", static_cast<int32_t>(c),
                                  static_cast<int32_t>(q), 0, {}});
        }
      }
    }
    // Per token, the features firing on it most often.
    std::unordered_map<int64_t, std::vector<TokenFeature>> by_token;
    const int64_t d_sae = saes[i].sae().config().d_sae;
    for (const auto& [key, cs] : token_counts[i]) {
      by_token[static_cast<int64_t>(key / static_cast<uint64_t>(d_sae))].push_back(
          {static_cast<int64_t>(key / static_cast<uint64_t>(d_sae)), static_cast<int64_t>(key % static_cast<uint64_t>(d_sae)),
           cs.first, cs.second / static_cast<double>(cs.first)});
    }
    for (auto& [tok, list] : by_token) {
      const size_t keep = std::min(list.size(), static_cast<size_t>(options.features_per_token));
      std::partial_sort(list.begin(), list.begin() + static_cast<std::ptrdiff_t>(keep), list.end(),
                        [](const TokenFeature& a, const TokenFeature& b) {
                          return a.count != b.count ? a.count > b.count : a.feature < b.feature;
                        });
      res.token_features.insert(res.token_features.end(), list.begin(), list.begin() + static_cast<std::ptrdiff_t>(keep));
    }
    std::sort(res.token_features.begin(), res.token_features.end(), [](const TokenFeature& a, const TokenFeature& b) {
      return a.token != b.token ? a.token < b.token : a.count > b.count;
    });
  }

  // Second pass: the example windows, read from a recomputed code of each context they use.
  std::vector<std::vector<std::pair<size_t, FeatureExample*>>> by_context(static_cast<size_t>(n));
  for (size_t i = 0; i < results.size(); ++i) {
    for (size_t j = 0; j < results[i].features.size(); ++j) {
      for (auto& ex : results[i].features[j].examples) {
        ex.first = std::max<int32_t>(1, ex.position - static_cast<int32_t>(options.context_before));
        by_context[static_cast<size_t>(ex.context)].push_back({i * (1ULL << 32) + j, &ex});
      }
    }
  }
  Progress bar2("example windows", n, "ctx");
  for (int64_t s = 0; s < n; s += B) {
    const int64_t b = std::min(B, n - s);
    bool needed = false;
    for (int64_t c = s; c < s + b; ++c) needed = needed || !by_context[static_cast<size_t>(c)].empty();
    if (needed) {
      const auto codes = codes_for(hooked, saes, eval_set.tokens.narrow(0, s, b));
      for (int64_t c = s; c < s + b; ++c) {
        for (auto& [key, ex] : by_context[static_cast<size_t>(c)]) {
          const size_t i = key >> 32, j = key & 0xffffffffULL;
          const int32_t last = std::min<int32_t>(static_cast<int32_t>(T - 1), ex->position + static_cast<int32_t>(options.context_after));
          const torch::Tensor w = codes[i][c - s].narrow(0, ex->first, last - ex->first + 1).select(1, static_cast<int64_t>(j)).contiguous();
          ex->window.assign(w.data_ptr<float>(), w.data_ptr<float>() + w.numel());
        }
      }
    }
    bar2.update(s + b);
  }
  bar2.finish();
  return results;
}

void write_top_activations(FeatureDb& db, const std::vector<AttachedSae>& saes, const std::vector<SaeTopResult>& results,
                           const EvalSet& eval_set, const Tokenizer& tokenizer) {
  TORCH_CHECK(saes.size() == results.size(), "write_top_activations: one result per SAE expected");
  const auto tokens = eval_set.tokens.accessor<int64_t, 2>();
  const auto docs = eval_set.doc.accessor<int32_t, 1>();
  std::unordered_map<int64_t, std::string> text_cache;
  auto text_of = [&](int64_t id) -> const std::string& {
    auto it = text_cache.find(id);
    if (it == text_cache.end()) it = text_cache.emplace(id, display_token(tokenizer, id)).first;
    return it->second;
  };
  db.transaction([&] {
    auto sae_row = db.prepare(
        "INSERT OR REPLACE INTO saes(sae, dir, hook, architecture, d_in, d_sae, tokens_seen) VALUES (?, ?, ?, ?, ?, ?, ?)");
    auto feat_row = db.prepare(
        "INSERT OR REPLACE INTO features(sae, feature, density, mean_activation, max_activation) VALUES (?, ?, ?, ?, ?)");
    auto ex_row = db.prepare(
        "INSERT INTO examples(sae, feature, kind, rank, band, activation, context, position, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    auto tok_row = db.prepare(
        "INSERT INTO example_tokens(example_id, offset, token_id, token, activation) VALUES (?, ?, ?, ?, ?)");
    auto tf_row = db.prepare(
        "INSERT INTO token_features(sae, token_id, token, feature, count, mean_activation) VALUES (?, ?, ?, ?, ?, ?)");
    auto hist_row = db.prepare("INSERT OR REPLACE INTO histograms(sae, feature, max, counts, exact) VALUES (?, ?, ?, ?, ?)");
    auto last_id = db.prepare("SELECT last_insert_rowid()");
    for (size_t i = 0; i < saes.size(); ++i) {
      const AttachedSae& a = saes[i];
      const SaeTopResult& r = results[i];
      sae_row.bind(1, a.name).bind(2, a.dir).bind(3, a.hook).bind(4, architecture_name(a.sae().config().architecture))
          .bind(5, a.sae().config().d_in).bind(6, a.sae().config().d_sae).bind(7, r.tokens).run();
      for (size_t j = 0; j < r.features.size(); ++j) {
        const FeatureSummary& f = r.features[j];
        feat_row.bind(1, a.name).bind(2, static_cast<int64_t>(j)).bind(3, f.density).bind(4, f.mean_activation)
            .bind(5, f.max_activation).run();
        if (!f.histogram.empty()) {
          hist_row.bind(1, a.name).bind(2, static_cast<int64_t>(j)).bind(3, f.max_activation)
              .bind(4, nlohmann::json(f.histogram).dump()).bind(5, static_cast<int64_t>(f.histogram_exact ? 1 : 0)).run();
        }
        for (const auto& ex : f.examples) {
          ex_row.bind(1, a.name).bind(2, static_cast<int64_t>(j)).bind(3, ex.kind).bind(4, static_cast<int64_t>(ex.rank))
              .bind(5, static_cast<int64_t>(ex.band)).bind(6, static_cast<double>(ex.activation))
              .bind(7, static_cast<int64_t>(ex.context)).bind(8, static_cast<int64_t>(ex.position))
              .bind(9, eval_set.doc_ids.at(static_cast<size_t>(docs[ex.context])))
              .run();
          TORCH_CHECK(last_id.next(), "feature database: no row id");
          const int64_t id = last_id.column_int(0);
          while (last_id.next()) {
          }
          for (size_t w = 0; w < ex.window.size(); ++w) {
            const int64_t pos = ex.first + static_cast<int64_t>(w);
            const int64_t tok = tokens[ex.context][pos];
            tok_row.bind(1, id).bind(2, pos - ex.position).bind(3, tok).bind(4, text_of(tok))
                .bind(5, static_cast<double>(ex.window[w])).run();
          }
        }
      }
      for (const auto& tf : r.token_features) {
        tf_row.bind(1, a.name).bind(2, tf.token).bind(3, text_of(tf.token)).bind(4, tf.feature).bind(5, tf.count)
            .bind(6, tf.mean_activation).run();
      }
    }
  });
}

}  // namespace saelab
