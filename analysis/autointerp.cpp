#include "analysis/autointerp.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <stdexcept>

#include "models/brown_names.h"

namespace saelab {

namespace {

using Kind = RuleAtom::Kind;

// A conjunction only beats a single atom when it is measurably better: an identical simulation
// reached through a different summation order must not win on rounding alone.
constexpr double kTieTolerance = 1e-9;

// The annotation columns a rule reads: the whole pool for simulate(), only the masked tokens
// inside the explainer.
struct Columns {
  torch::Tensor token, prev_token, tag, genre, word_start;
};

Columns columns_of(const TokenPool& pool) {
  return {pool.token, pool.prev_token, pool.tag, pool.genre, pool.word_start.to(torch::kBool)};
}

Columns select(const Columns& c, const torch::Tensor& mask) {
  return {c.token.masked_select(mask), c.prev_token.masked_select(mask), c.tag.masked_select(mask),
          c.genre.masked_select(mask), c.word_start.masked_select(mask)};
}

int64_t single_value(const RuleAtom& atom) {
  TORCH_CHECK(atom.values.size() == 1, "a tag or genre atom holds exactly one index, got ", atom.values.size());
  return atom.values[0];
}

// Bool mask of the tokens that satisfy one atom.
torch::Tensor atom_mask(const RuleAtom& atom, const Columns& c) {
  switch (atom.kind) {
    case Kind::kToken:
    case Kind::kPrevToken: {
      const torch::Tensor& ids = atom.kind == Kind::kToken ? c.token : c.prev_token;
      if (atom.values.empty()) return torch::zeros(ids.sizes(), torch::kBool);
      const torch::Tensor set = torch::tensor(atom.values, torch::kLong).to(ids.scalar_type());
      return torch::isin(ids, set);
    }
    case Kind::kTag: return c.tag == single_value(atom);
    case Kind::kGenre: return c.genre == single_value(atom);
    case Kind::kWordStart: return c.word_start.clone();
    case Kind::kContinuation: return c.word_start.logical_not();
  }
  throw std::invalid_argument("unknown rule atom kind");
}

// Simulation of a rule on a set of columns. An empty conjunction would logically hold everywhere,
// but the explainer only returns it for a feature that never fired, so it simulates as never
// firing: a constant prediction that correlates with nothing.
torch::Tensor rule_mask(const Rule& rule, const Columns& c) {
  if (rule.atoms.empty()) return torch::zeros(c.token.sizes(), torch::kBool);
  torch::Tensor held = atom_mask(rule.atoms[0], c);
  for (size_t i = 1; i < rule.atoms.size(); ++i) held = held.logical_and(atom_mask(rule.atoms[i], c));
  return held;
}

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kToken: return "token";
    case Kind::kPrevToken: return "prev_token";
    case Kind::kTag: return "tag";
    case Kind::kGenre: return "genre";
    case Kind::kWordStart: return "word_start";
    case Kind::kContinuation: return "continuation";
  }
  return "?";
}

// Token texts often carry spaces or quotes (" the", "\""), so they are shown quoted and escaped.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (const char ch : text) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (u < 0x20) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned>(u));
      out += hex;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string token_display(const TokenPool& pool, int64_t id) {
  return pool.token_text ? quoted(pool.token_text(id)) : std::to_string(id);
}

std::string name_or_index(const std::vector<std::string>& names, int64_t index) {
  return index >= 0 && index < static_cast<int64_t>(names.size()) ? names[index] : std::to_string(index);
}

// Pearson correlation between a 0/1 simulation (k ones among n tokens, the activations summing to
// s over those ones) and activations with sum sy and sum of squares syy. This is what
// correlation(simulate(...), activations) computes, from sufficient statistics, so that every
// candidate of a kind is scored from one pass over the tokens.
struct IndicatorScorer {
  double n = 0, sy = 0, syy = 0;
  bool constant = true;  // activations without variance correlate with nothing

  double operator()(double k, double s) const {
    if (constant || k <= 0 || k >= n) return 0;
    const double var_x = n * k - k * k;
    const double var_y = n * syy - sy * sy;
    if (!(var_x > 0) || !(var_y > 0)) return 0;
    return std::clamp((n * s - k * sy) / std::sqrt(var_x * var_y), -1.0, 1.0);
  }
};

struct Candidate {
  Rule rule;
  double score = 0;
};

// Token-set candidates (kToken or kPrevToken): the ids ranked by the total activation at the
// positions that carry them, prefixes of sizes 1 … max_tokens, keeping only ids with positive total.
void add_set_candidates(Kind kind, const torch::Tensor& ids, const torch::Tensor& y, int64_t max_tokens,
                        const IndicatorScorer& score, std::vector<Candidate>& out) {
  if (max_tokens <= 0) return;
  const torch::Tensor valid = ids >= 0;  // prev_token is −1 at the start of a context
  const torch::Tensor v_ids = ids.masked_select(valid).to(torch::kLong);
  if (v_ids.numel() == 0) return;
  const torch::Tensor v_y = y.masked_select(valid);
  const torch::Tensor totals = torch::bincount(v_ids, v_y).to(torch::kDouble);
  const torch::Tensor counts = torch::bincount(v_ids, {}, totals.size(0));
  const torch::Tensor positive = (totals > 0).nonzero().squeeze(1);
  if (positive.numel() == 0) return;
  // Stable, so that equal totals rank by id and the explanation is reproducible.
  const torch::Tensor order =
      std::get<1>(torch::sort(totals.index_select(0, positive), /*stable=*/true, /*dim=*/0, /*descending=*/true));
  const int64_t m = std::min<int64_t>(max_tokens, positive.numel());
  const torch::Tensor top = positive.index_select(0, order.slice(0, 0, m)).contiguous();
  const torch::Tensor top_totals = totals.index_select(0, top).contiguous();
  const torch::Tensor top_counts = counts.index_select(0, top).to(torch::kDouble).contiguous();
  const auto id_a = top.accessor<int64_t, 1>();
  const auto total_a = top_totals.accessor<double, 1>();
  const auto count_a = top_counts.accessor<double, 1>();
  double k = 0, s = 0;
  std::vector<int64_t> values;
  for (int64_t i = 0; i < m; ++i) {
    values.push_back(id_a[i]);
    k += count_a[i];
    s += total_a[i];
    out.push_back({Rule{{RuleAtom{kind, values}}}, score(k, s)});
  }
}

// Category candidates (kTag, kGenre): one per index that occurs on a token where the feature fires.
void add_category_candidates(Kind kind, const torch::Tensor& categories, const torch::Tensor& y,
                             const IndicatorScorer& score, std::vector<Candidate>& out) {
  const torch::Tensor valid = categories >= 0;
  const torch::Tensor cats = categories.masked_select(valid).to(torch::kLong);
  if (cats.numel() == 0) return;
  const torch::Tensor v_y = y.masked_select(valid);
  const torch::Tensor totals = torch::bincount(cats, v_y).to(torch::kDouble).contiguous();
  const int64_t size = totals.size(0);
  const torch::Tensor counts = torch::bincount(cats, {}, size).to(torch::kDouble).contiguous();
  const torch::Tensor fired = torch::bincount(cats.masked_select(v_y > 0), {}, size).contiguous();
  const auto total_a = totals.accessor<double, 1>();
  const auto count_a = counts.accessor<double, 1>();
  const auto fired_a = fired.accessor<int64_t, 1>();
  for (int64_t i = 0; i < size; ++i) {
    if (fired_a[i] > 0) out.push_back({Rule{{RuleAtom{kind, {i}}}}, score(count_a[i], total_a[i])});
  }
}

}  // namespace

std::string Rule::describe(const TokenPool& pool) const {
  if (atoms.empty()) return "never";
  std::string out;
  for (const RuleAtom& atom : atoms) {
    if (!out.empty()) out += " ∧ ";
    switch (atom.kind) {
      case Kind::kToken:
      case Kind::kPrevToken: {
        out += atom.kind == Kind::kToken ? "token ∈ {" : "previous token ∈ {";
        for (size_t i = 0; i < atom.values.size(); ++i) {
          if (i > 0) out += ", ";
          out += token_display(pool, atom.values[i]);
        }
        out += "}";
        break;
      }
      case Kind::kTag: {
        const std::string tag = name_or_index(pool.tag_names, single_value(atom));
        const std::string meaning = brown_tag_meaning(tag);
        out += "POS = " + tag + (meaning.empty() ? "" : " (" + meaning + ")");
        break;
      }
      case Kind::kGenre: out += "genre = " + name_or_index(pool.genre_names, single_value(atom)); break;
      case Kind::kWordStart: out += "word start"; break;
      case Kind::kContinuation: out += "word continuation"; break;
    }
  }
  return out;
}

// Tag and genre names live in the pool, which to_json() does not see; explain_and_score() adds them.
nlohmann::json Rule::to_json() const {
  nlohmann::json atoms_json = nlohmann::json::array();
  for (const RuleAtom& atom : atoms) atoms_json.push_back({{"kind", kind_name(atom.kind)}, {"values", atom.values}});
  return {{"atoms", atoms_json}};
}

torch::Tensor simulate(const Rule& rule, const TokenPool& pool) {
  return rule_mask(rule, columns_of(pool)).to(torch::kFloat);
}

double correlation(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.numel() == b.numel(), "correlation of tensors of different sizes: ", a.numel(), " vs ", b.numel());
  if (a.numel() < 2) return 0;
  const torch::Tensor x = a.reshape(-1).to(torch::kDouble), y = b.reshape(-1).to(torch::kDouble);
  // Tested on the values themselves: a constant's centred values are not exactly zero after rounding.
  if (x.min().item<double>() == x.max().item<double>() || y.min().item<double>() == y.max().item<double>()) return 0;
  const torch::Tensor dx = x - x.mean(), dy = y - y.mean();
  const double denom = std::sqrt((dx * dx).sum().item<double>() * (dy * dy).sum().item<double>());
  if (!(denom > 0)) return 0;
  return std::clamp((dx * dy).sum().item<double>() / denom, -1.0, 1.0);
}

Rule RuleExplainer::explain(const TokenPool& pool, const torch::Tensor& activations, const torch::Tensor& mask) const {
  const int64_t n_pool = pool.token.numel();
  TORCH_CHECK(activations.numel() == n_pool, "activations hold ", activations.numel(), " values for ", n_pool, " tokens");
  TORCH_CHECK(mask.numel() == n_pool, "mask holds ", mask.numel(), " values for ", n_pool, " tokens");
  const torch::Tensor m = mask.reshape(-1).to(torch::kBool);
  const torch::Tensor y = activations.reshape(-1).masked_select(m).to(torch::kDouble);
  if (y.numel() == 0) return {};
  const double y_max = y.max().item<double>();
  if (!(y_max > 0)) return {};  // never fires here: nothing to explain

  const Columns c = select(columns_of(pool), m);
  IndicatorScorer score;
  score.n = static_cast<double>(y.numel());
  score.sy = y.sum().item<double>();
  score.syy = (y * y).sum().item<double>();
  score.constant = y.min().item<double>() == y_max;

  std::vector<Candidate> candidates;
  add_set_candidates(Kind::kToken, c.token, y, options_.max_tokens, score, candidates);
  add_set_candidates(Kind::kPrevToken, c.prev_token, y, options_.max_tokens, score, candidates);
  add_category_candidates(Kind::kTag, c.tag, y, score, candidates);
  add_category_candidates(Kind::kGenre, c.genre, y, score, candidates);
  const double k_start = c.word_start.sum().item<double>();
  const double s_start = y.masked_select(c.word_start).sum().item<double>();
  candidates.push_back({Rule{{RuleAtom{Kind::kWordStart, {}}}}, score(k_start, s_start)});
  candidates.push_back({Rule{{RuleAtom{Kind::kContinuation, {}}}}, score(score.n - k_start, score.sy - s_start)});

  // Stable, so that among equal scores the earlier (simpler, smaller) candidate stays first.
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
  Candidate best = candidates.front();

  // Conjunctions of two atoms of different kinds from the best single atoms (a beam, as scoring
  // every pair of candidates would be quadratic in their number for little gain).
  const size_t beam = std::min<size_t>(candidates.size(), static_cast<size_t>(std::max<int64_t>(options_.conjunction_beam, 0)));
  std::vector<torch::Tensor> masks;
  masks.reserve(beam);
  for (size_t i = 0; i < beam; ++i) masks.push_back(atom_mask(candidates[i].rule.atoms[0], c));
  for (size_t i = 0; i < beam; ++i) {
    for (size_t j = i + 1; j < beam; ++j) {
      const RuleAtom& a = candidates[i].rule.atoms[0];
      const RuleAtom& b = candidates[j].rule.atoms[0];
      if (a.kind == b.kind) continue;
      const torch::Tensor both = masks[i].logical_and(masks[j]);
      const double k = both.sum().item<double>();
      const double s = y.masked_select(both).sum().item<double>();
      const double pair_score = score(k, s);
      if (pair_score > best.score + kTieTolerance) best = {Rule{{a, b}}, pair_score};
    }
  }
  return best.rule;
}

Explanation explain_and_score(const Explainer& explainer, const TokenPool& pool, const torch::Tensor& activations,
                              const AutoInterpOptions& options) {
  const int64_t n = pool.token.numel();
  TORCH_CHECK(activations.numel() == n, "activations hold ", activations.numel(), " values for ", n, " tokens");
  TORCH_CHECK(pool.context.numel() == n, "the pool's context column holds ", pool.context.numel(), " values for ", n,
              " tokens");
  const torch::Tensor act = activations.reshape(-1).to(torch::kDouble);

  // Bills et al. 2023: the explanation is proposed on one set of contexts and scored on others,
  // so that a rule cannot score well by memorising the contexts it was built from.
  const torch::Tensor explain_half = pool.context.remainder(2) == 0;
  const Rule rule = explainer.explain(pool, activations, explain_half);
  const torch::Tensor sim = simulate(rule, pool);

  Explanation e;
  e.explainer = explainer.name();
  e.text = rule.describe(pool);
  e.rule = rule.to_json();
  for (size_t i = 0; i < rule.atoms.size(); ++i) {
    const RuleAtom& atom = rule.atoms[i];
    if (atom.kind == Kind::kTag) e.rule["atoms"][i]["name"] = name_or_index(pool.tag_names, single_value(atom));
    if (atom.kind == Kind::kGenre) e.rule["atoms"][i]["name"] = name_or_index(pool.genre_names, single_value(atom));
  }
  e.explain_score = correlation(sim.masked_select(explain_half), act.masked_select(explain_half));

  // Per-context maxima without scatter_reduce (beta in LibTorch 1.13, and it warns): order the
  // tokens by context, then by activation, and read the last token of each context's run.
  const auto unique = at::_unique2(pool.context.reshape(-1), /*sorted=*/true, /*return_inverse=*/true,
                                   /*return_counts=*/true);
  const torch::Tensor ctx_ids = std::get<0>(unique).to(torch::kLong).contiguous();
  const torch::Tensor inverse = std::get<1>(unique).reshape(-1);
  const torch::Tensor by_act = act.argsort(/*stable=*/true);
  const torch::Tensor by_ctx = by_act.index_select(0, inverse.index_select(0, by_act).argsort(/*stable=*/true));
  const torch::Tensor run_ends = std::get<2>(unique).cumsum(0) - 1;
  const torch::Tensor ctx_max = act.index_select(0, by_ctx.index_select(0, run_ends)).contiguous();
  const int64_t n_ctx = ctx_ids.numel();
  const auto id_a = ctx_ids.accessor<int64_t, 1>();
  const auto max_a = ctx_max.accessor<double, 1>();

  // Scoring set from the other half (Bills et al. 2023): the top-activating contexts test whether
  // the explanation predicts where the feature fires strongly, the random ones whether it also
  // predicts where it stays silent.
  std::vector<int64_t> firing, rest;  // positions in ctx_ids
  for (int64_t u = 0; u < n_ctx; ++u) {
    if (id_a[u] % 2 == 0) continue;
    (max_a[u] > 0 ? firing : rest).push_back(u);
  }
  std::stable_sort(firing.begin(), firing.end(), [&](int64_t a, int64_t b) { return max_a[a] > max_a[b]; });
  const size_t n_top = std::min<size_t>(firing.size(), static_cast<size_t>(std::max<int64_t>(options.top_contexts, 0)));
  std::vector<int64_t> chosen(firing.begin(), firing.begin() + n_top);
  rest.insert(rest.end(), firing.begin() + n_top, firing.end());
  std::sort(rest.begin(), rest.end());

  // Partial Fisher–Yates. Indices come from the engine's raw output rather than
  // std::uniform_int_distribution, whose mapping differs between standard libraries, so a seed
  // picks the same contexts everywhere; the modulo bias is negligible for these sizes.
  std::mt19937_64 rng(static_cast<uint64_t>(options.seed));
  const size_t n_random = std::min<size_t>(rest.size(), static_cast<size_t>(std::max<int64_t>(options.random_contexts, 0)));
  for (size_t i = 0; i < n_random; ++i) {
    const size_t j = i + static_cast<size_t>(rng() % (rest.size() - i));
    std::swap(rest[i], rest[j]);
    chosen.push_back(rest[i]);
  }
  const bool fires_explaining = (act.masked_select(explain_half) > 0).any().item<bool>();
  e.scorable = fires_explaining && !firing.empty();
  if (chosen.empty() || !e.scorable) return e;

  std::vector<int64_t> chosen_ids;
  chosen_ids.reserve(chosen.size());
  for (const int64_t u : chosen) chosen_ids.push_back(id_a[u]);
  const torch::Tensor scored =
      torch::isin(pool.context.reshape(-1), torch::tensor(chosen_ids, torch::kLong).to(pool.context.scalar_type()));
  e.scored_tokens = scored.sum().item<int64_t>();
  const torch::Tensor sim_s = sim.masked_select(scored), act_s = act.masked_select(scored);
  e.score = correlation(sim_s, act_s);
  const torch::Tensor holds = sim_s > 0, fires = act_s > 0;
  const double both = holds.logical_and(fires).sum().item<double>();
  const double n_holds = holds.sum().item<double>(), n_fires = fires.sum().item<double>();
  e.precision = n_holds > 0 ? both / n_holds : 0.0;
  e.recall = n_fires > 0 ? both / n_fires : 0.0;
  return e;
}

}  // namespace saelab
