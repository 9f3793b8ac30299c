#include "analysis/evaluate.h"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <filesystem>
#include <set>

#include "core/progress.h"

namespace saelab {

namespace {

// Running sums of one SAE's reconstruction statistics.
struct ReconSums {
  double sq_err = 0, sq_norm = 0, cos = 0, ratio = 0, xhat_sq = 0, dot = 0, l0 = 0;
  torch::Tensor sum_x;        // [d_in] float64
  torch::Tensor fire_counts;  // [d_sae] int64
  int64_t n = 0;
};

// Cross-entropy and KL sums for one batch: logits [b, T, V] predict tokens[:, 1:].
struct LossSums {
  double ce = 0, kl = 0;
  int64_t n = 0;
};

// Predictions per chunk: the [rows, vocab] float32 temporaries of the loss sums stay near 2^22
// values (16 MB) whatever the vocabulary and the batch.
int64_t prediction_chunk(int64_t vocab) { return std::max<int64_t>(1, (int64_t{1} << 22) / vocab); }

// The clean run's log-probabilities [b, T − 1, V] in float32 for one batch (every other run of the
// batch is compared with them), computed chunk by chunk from the logits [b, T, V].
torch::Tensor clean_log_probs(const torch::Tensor& logits) {
  const int64_t b = logits.size(0), T = logits.size(1), V = logits.size(2), chunk = prediction_chunk(V);
  torch::Tensor out = torch::empty({b, T - 1, V}, torch::kFloat32);
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t t = 0; t < T - 1; t += chunk) {
      const int64_t n = std::min(chunk, T - 1 - t);
      out[i].narrow(0, t, n).copy_(torch::log_softmax(logits[i].narrow(0, t, n).to(torch::kFloat32), -1));
    }
  }
  return out;
}

// Adds to `sums` the cross-entropy of the run's logits [b, T, V] on tokens[:, 1:] and, when `clean`
// [b, T − 1, V] is defined, KL(p_clean ‖ p_run), chunk by chunk: no [tokens, vocab] copy is made.
void add_losses(const torch::Tensor& logits, const torch::Tensor& tokens, const torch::Tensor& clean, LossSums& sums) {
  const int64_t b = logits.size(0), T = logits.size(1), V = logits.size(2), chunk = prediction_chunk(V);
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t t = 0; t < T - 1; t += chunk) {
      const int64_t n = std::min(chunk, T - 1 - t);
      const torch::Tensor lp = torch::log_softmax(logits[i].narrow(0, t, n).to(torch::kFloat32), -1);
      const torch::Tensor targets = tokens[i].narrow(0, t + 1, n).unsqueeze(1);
      sums.ce -= lp.gather(1, targets).sum().item<double>();
      if (clean.defined()) {
        const torch::Tensor c = clean[i].narrow(0, t, n);
        sums.kl += (c.exp() * (c - lp)).sum().item<double>();
      }
    }
  }
  sums.n += b * (T - 1);
}

// The clean run's cross-entropy from its log-probabilities, summed in add_losses' chunks (so that a
// run with the same logits gives exactly the same number).
void add_clean_loss(const torch::Tensor& clean, const torch::Tensor& tokens, LossSums& sums) {
  const int64_t b = clean.size(0), P = clean.size(1), chunk = prediction_chunk(clean.size(2));
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t t = 0; t < P; t += chunk) {
      const int64_t n = std::min(chunk, P - t);
      sums.ce -= clean[i].narrow(0, t, n).gather(1, tokens[i].narrow(0, t + 1, n).unsqueeze(1)).sum().item<double>();
    }
  }
  sums.n += b * P;
}

// Replaces positions 1.. of x [b, T, d] by f(x[:, 1:]); BOS stays as it was.
HookFn splice_after_bos(std::function<torch::Tensor(const torch::Tensor&)> f) {
  return [f](const torch::Tensor& x) {
    torch::Tensor out = x.clone();
    out.narrow(1, 1, x.size(1) - 1).copy_(f(x.narrow(1, 1, x.size(1) - 1)));
    return out;
  };
}

}  // namespace

void EvalOptions::validate() const {
  check_fields(*this, "evaluation options");
  TORCH_CHECK(density_source == "training" || density_source == "evaluation",
              "density_source must be training or evaluation (got '", density_source, "')");
  // The field's rule is [0, 1]; 0 itself would call every latent that fires dense.
  TORCH_CHECK(dense_threshold > 0, "dense_threshold must be above 0 (got ", dense_threshold, ")");
}

std::vector<double> density_histogram_edges() {
  std::vector<double> e;
  for (int i = 0; i <= 14; ++i) e.push_back(-7.0 + 0.5 * i);
  return e;
}

nlohmann::json SaeEvalResult::to_json() const {
  nlohmann::json j = {{"name", name}, {"dir", dir}, {"hook", hook}, {"architecture", architecture}, {"d_sae", d_sae},
          {"tokens", tokens}, {"l0", l0}, {"mse", mse}, {"fvu", fvu}, {"cosine", cosine}, {"norm_ratio", norm_ratio},
          {"shrinkage", shrinkage}, {"dead_fraction", dead_fraction}, {"dense_fraction", dense_fraction},
          {"density_source", density_source}, {"density_tokens", density_tokens},
          {"convention", kSaelabConvention},
          {"ce_clean", ce_clean}, {"ce_spliced", ce_spliced}, {"ce_zero_ablation", ce_zero},
          {"ce_mean_ablation", ce_mean}, {"loss_recovered_vs_zero", loss_recovered_zero},
          {"loss_recovered_vs_mean", loss_recovered_mean}, {"ce_increase", ce_increase}, {"kl", kl},
          {"kl_zero_ablation", kl_zero}, {"kl_div_score", kl_div_score},
          {"ce_with_error_term", ce_with_error},
          {"density_histogram", {{"log10_edges", density_histogram_edges()}, {"counts", density_histogram}}}};
  if (hook_out != hook) j["hook_out"] = hook_out;
  if (absorption_measured) j["absorption"] = absorption.to_json();
  if (saelens.computed) {
    j["saelens_convention"] = {{"convention", kSaelensConvention}, {"ce_spliced", saelens.ce_spliced},
                               {"ce_zero_ablation", saelens.ce_zero}, {"loss_recovered_vs_zero", saelens.loss_recovered_zero},
                               {"kl", saelens.kl}, {"kl_zero_ablation", saelens.kl_zero}, {"kl_div_score", saelens.kl_div_score}};
  }
  return j;
}

nlohmann::json EvalReport::to_json() const {
  nlohmann::json s = nlohmann::json::array();
  for (const auto& r : saes) s.push_back(r.to_json());
  nlohmann::json j = {{"format_version", 1}, {"contexts", contexts}, {"tokens", tokens}, {"saes", s}};
  if (!replacements.empty()) {
    j["replacements"] = nlohmann::json::array();
    for (const auto& r : replacements) j["replacements"].push_back(r.to_json());
  }
  return j;
}

nlohmann::json ReplacementResult::to_json() const {
  return {{"name", name}, {"coders", coders}, {"convention", kSaelabConvention}, {"ce_clean", ce_clean},
          {"ce_replaced", ce_replaced}, {"ce_increase", ce_replaced - ce_clean}, {"kl", kl}};
}

std::string EvalReport::table() const {
  const bool both = !saes.empty() && saes.front().saelens.computed;
  std::string out = fmt::format("{:<34} {:>7} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}", "SAE", "L0", "FVU",
                                "cos", "CE", "CE+SAE", "LR0", "LRmean", "KL", "KLscore");
  if (both) out += fmt::format(" {:>7} {:>7}", "LR0*", "KLscr*");
  out += fmt::format(" {:>6} {:>6} {:>7}\n", "dead%", "dense%", "absorb");
  for (const auto& r : saes) {
    out += fmt::format("{:<34} {:>7.1f} {:>6.3f} {:>6.3f} {:>7.3f} {:>7.3f} {:>7.3f} {:>7.3f} {:>7.3f} {:>7.3f}",
                       r.name.size() > 34 ? r.name.substr(r.name.size() - 34) : r.name, r.l0, r.fvu, r.cosine,
                       r.ce_clean, r.ce_spliced, r.loss_recovered_zero, r.loss_recovered_mean, r.kl, r.kl_div_score);
    if (both) out += fmt::format(" {:>7.3f} {:>7.3f}", r.saelens.loss_recovered_zero, r.saelens.kl_div_score);
    out += fmt::format(" {:>6.1f} {:>6.1f} {:>7}\n", 100 * r.dead_fraction, 100 * r.dense_fraction,
                       r.absorption_measured && r.absorption.letters > 0 ? fmt::format("{:.3f}", r.absorption.rate) : "-");
  }
  out += fmt::format("LR0, LRmean, KL, KLscore: {}\n", kSaelabConvention);
  if (both) out += fmt::format("LR0*, KLscr*: {}\n", kSaelensConvention);
  out += "absorb: first-letter absorption rate (analysis/absorption.h; lower is better)\n";
  for (const auto& r : replacements) {
    out += fmt::format("replacement model '{}' ({} transcoders at once): CE {:.3f} (clean {:.3f}), KL {:.3f}\n", r.name,
                       r.coders.size(), r.ce_replaced, r.ce_clean, r.kl);
  }
  if (!saes.empty()) {
    const SaeEvalResult& r = saes.front();
    out += fmt::format("dead%, dense%: from {} densities{}\n", r.density_source,
                       r.density_tokens > 0 ? fmt::format(" ({} tokens)", r.density_tokens) : std::string());
  }
  return out;
}

EvalReport evaluate_saes(LanguageModel& lm, HookedModel& hooked, const std::vector<AttachedSae>& saes,
                         const EvalSet& eval_set, const EvalOptions& options) {
  options.validate();
  TORCH_CHECK(!saes.empty(), "no SAE to evaluate");
  TORCH_CHECK(eval_set.contexts() > 0 && eval_set.length() >= 2, "the evaluation set is empty");
  torch::NoGradGuard no_grad;
  // Every hook a coder reads or writes is captured; the hooks they write are the ones spliced and
  // ablated (an SAE's own hook; a transcoder's target).
  std::set<std::string> hook_set, out_set;
  for (const auto& a : saes) {
    hook_set.insert(a.hook);
    hook_set.insert(a.hook_out);
    out_set.insert(a.hook_out);
  }
  const std::vector<std::string> hooks(hook_set.begin(), hook_set.end());
  const std::vector<std::string> out_hooks(out_set.begin(), out_set.end());
  const int64_t n = eval_set.contexts(), B = options.batch_size;
  auto batch_of = [&](int64_t s) { return eval_set.tokens.narrow(0, s, std::min(B, n - s)); };

  // Pass 1: the mean activation of each hook over the evaluation tokens (for mean ablation).
  std::map<std::string, torch::Tensor> mean;
  int64_t tokens = 0;
  {
    Progress bar("eval means", n, "ctx");
    for (int64_t s = 0; s < n; s += B) {
      const torch::Tensor toks = batch_of(s);
      const ActivationCache cache = hooked.run_with_cache(toks, {hooks.begin(), hooks.end()});
      for (const auto& h : hooks) {
        const torch::Tensor x = cache[h].narrow(1, 1, toks.size(1) - 1).to(torch::kFloat64);
        const torch::Tensor sum = x.reshape({-1, x.size(-1)}).sum(0);
        mean[h] = mean.count(h) ? mean[h] + sum : sum;
      }
      tokens += toks.size(0) * (toks.size(1) - 1);
      bar.update(s + toks.size(0));
    }
  }
  for (auto& [h, m] : mean) m = (m / static_cast<double>(tokens)).to(torch::kFloat32);

  // Transcoders of one folder name writing two or more hooks: a replacement model each.
  std::map<std::string, std::vector<const AttachedSae*>> by_name;
  for (const auto& a : saes) {
    if (a.transcoder()) by_name[std::filesystem::path(a.dir).filename().string()].push_back(&a);
  }
  std::vector<std::pair<std::string, std::vector<const AttachedSae*>>> replacement_sets;
  for (auto& [name, group] : by_name) {
    std::set<std::string> written;
    for (const AttachedSae* a : group) written.insert(a->hook_out);
    if (group.size() >= 2 && written.size() == group.size()) replacement_sets.emplace_back(name, group);
  }
  std::vector<LossSums> replaced(replacement_sets.size());

  // Pass 2: clean, ablated and spliced runs, batch by batch.
  std::vector<ReconSums> recon(saes.size());
  std::vector<LossSums> spliced(saes.size()), with_error(saes.size()), spliced_all(saes.size());
  std::map<std::string, LossSums> zero, mean_abl, zero_all;
  LossSums clean;
  // For absorption: every hook's activations at positions 1.., their first letters, their halves.
  std::map<std::string, std::vector<torch::Tensor>> hook_rows;
  std::vector<torch::Tensor> letters, fit_half;
  const bool all_positions = options.saelens_convention;
  // One run of the batch with `hook` replaced, its losses added to `sums` (KL against the clean run).
  torch::Tensor logp_clean;
  auto run = [&](const torch::Tensor& toks, const std::string& hook, HookFn fn, LossSums& sums) {
    HookScope scope(hooked);
    scope.replace(hook, std::move(fn));
    add_losses(lm.logits_from_output(hooked.forward(toks)), toks, logp_clean, sums);
  };
  // One run with a coder spliced in.
  auto run_spliced = [&](const torch::Tensor& toks, const AttachedSae& a, bool include_bos, bool with_error, LossSums& sums) {
    HookScope scope(hooked);
    splice_coders(scope, {&a}, include_bos, with_error);
    add_losses(lm.logits_from_output(hooked.forward(toks)), toks, logp_clean, sums);
  };
  int64_t absorption_rows = 0;
  Progress bar("eval", n, "ctx");
  for (int64_t s = 0; s < n; s += B) {
    const torch::Tensor toks = batch_of(s);
    std::map<std::string, torch::Tensor> acts;
    logp_clean = torch::Tensor();  // the previous batch's, released before this batch's clean run
    {
      HookScope scope(hooked);
      for (const auto& h : hooks) scope.capture(h);
      logp_clean = clean_log_probs(lm.logits_from_output(hooked.forward(toks)));
      for (const auto& h : hooks) acts[h] = scope.captured(h);
    }
    if (options.absorption && absorption_rows < options.absorption_options.max_tokens) {
      // Only word-start letter tokens enter absorption, and at most max_tokens of them (the first).
      const int64_t T = toks.size(1);
      const torch::Tensor letter = first_letters(lm.tokenizer(), toks.narrow(1, 1, T - 1)).reshape(-1);
      torch::Tensor keep = (letter >= 0).nonzero().squeeze(1);
      keep = keep.narrow(0, 0, std::min(keep.size(0), options.absorption_options.max_tokens - absorption_rows));
      absorption_rows += keep.size(0);
      for (const auto& h : hooks) {
        const torch::Tensor x = acts.at(h).narrow(1, 1, T - 1);
        hook_rows[h].push_back(x.reshape({-1, x.size(-1)}).index_select(0, keep).to(torch::kFloat32));
      }
      letters.push_back(letter.index_select(0, keep));
      const torch::Tensor context = torch::arange(s, s + toks.size(0), torch::kInt64).unsqueeze(1).expand({toks.size(0), T - 1});
      fit_half.push_back((context.remainder(2) == 0).reshape(-1).index_select(0, keep));
    }
    add_clean_loss(logp_clean, toks, clean);
    for (const auto& h : out_hooks) {
      const torch::Tensor m = mean.at(h);
      run(toks, h, splice_after_bos([](const torch::Tensor& x) { return torch::zeros_like(x); }), zero[h]);
      if (all_positions) run(toks, h, [](const torch::Tensor& x) { return torch::zeros_like(x); }, zero_all[h]);
      run(toks, h, splice_after_bos([m](const torch::Tensor& x) { return m.to(x.dtype()).expand_as(x); }), mean_abl[h]);
    }
    for (size_t i = 0; i < saes.size(); ++i) {
      const Sae& sae = saes[i].sae();
      // x the coder's input, y what it predicts (x itself for an SAE); the statistics compare ŷ to y.
      auto rows = [](const torch::Tensor& t3) { return t3.narrow(1, 1, t3.size(1) - 1).reshape({-1, t3.size(-1)}).to(torch::kFloat32); };
      const torch::Tensor x = rows(acts.at(saes[i].hook));
      const torch::Tensor y = saes[i].transcoder() ? rows(acts.at(saes[i].hook_out)) : x;
      const torch::Tensor f = sae.encode(x);
      const torch::Tensor x_hat = sae.predict(x, f);
      ReconSums& r = recon[i];
      const torch::Tensor xd = y.to(torch::kFloat64), hd = x_hat.to(torch::kFloat64);
      const torch::Tensor xn = xd.norm(2, {1}), hn = hd.norm(2, {1});
      r.sq_err += (xd - hd).pow(2).sum().item<double>();
      r.sq_norm += xd.pow(2).sum().item<double>();
      r.sum_x = r.sum_x.defined() ? r.sum_x + xd.sum(0) : xd.sum(0);
      r.cos += ((xd * hd).sum(1) / (xn * hn).clamp_min(1e-12)).sum().item<double>();
      r.ratio += (hn / xn.clamp_min(1e-12)).sum().item<double>();
      r.xhat_sq += hd.pow(2).sum().item<double>();
      r.dot += (xd * hd).sum().item<double>();
      const torch::Tensor active = f != 0;
      r.l0 += active.sum().item<double>();
      const torch::Tensor fc = active.sum(0).to(torch::kInt64);
      r.fire_counts = r.fire_counts.defined() ? r.fire_counts + fc : fc;
      r.n += x.size(0);
      run_spliced(toks, saes[i], false, false, spliced[i]);
      if (all_positions) run_spliced(toks, saes[i], true, false, spliced_all[i]);
      if (options.with_error_term) run_spliced(toks, saes[i], false, true, with_error[i]);
    }
    for (size_t r = 0; r < replacement_sets.size(); ++r) {
      HookScope scope(hooked);
      splice_coders(scope, replacement_sets[r].second);
      add_losses(lm.logits_from_output(hooked.forward(toks)), toks, logp_clean, replaced[r]);
    }
    bar.update(s + toks.size(0));
  }
  logp_clean = torch::Tensor();
  bar.finish();

  std::map<std::string, torch::Tensor> hook_x;
  torch::Tensor letter_all, fit_all;
  if (options.absorption) {
    for (auto& [h, rows] : hook_rows) hook_x[h] = torch::cat(rows);
    hook_rows.clear();
    letter_all = torch::cat(letters);
    fit_all = torch::cat(fit_half);
  }

  EvalReport report;
  report.contexts = n;
  report.tokens = tokens;
  const double ce_clean = clean.ce / static_cast<double>(clean.n);
  for (size_t i = 0; i < saes.size(); ++i) {
    const ReconSums& r = recon[i];
    SaeEvalResult e;
    e.name = saes[i].name;
    e.dir = saes[i].dir;
    e.hook = saes[i].hook;
    e.hook_out = saes[i].hook_out;
    e.architecture = architecture_name(saes[i].sae().config().architecture);
    e.d_sae = saes[i].sae().config().d_sae;
    e.tokens = r.n;
    const double nn = static_cast<double>(r.n);
    e.l0 = r.l0 / nn;
    e.mse = r.sq_err / nn;
    // Σ‖x − x̄‖² = Σ‖x‖² − n ‖x̄‖²
    const double centred = r.sq_norm - r.sum_x.pow(2).sum().item<double>() / nn;
    e.fvu = r.sq_err / std::max(centred, 1e-30);
    e.cosine = r.cos / nn;
    e.norm_ratio = r.ratio / nn;
    e.shrinkage = r.xhat_sq / (r.dot != 0 ? r.dot : 1e-30);
    const torch::Tensor& trained = saes[i].loaded.log10_density;
    if (options.density_source == "training" && trained.defined()) {
      // sparsity.safetensors holds log10 densities with never-fired latents at the 1e-10 floor
      // (SAELens and saelab both clamp there).
      const torch::Tensor l = trained.to(torch::kFloat64);
      e.density = torch::where(l <= -10 + 1e-6, torch::zeros_like(l), torch::pow(10.0, l));
      e.density_source = "training";
      e.density_tokens = saes[i].loaded.metadata.density_tokens;
    } else {
      e.density = r.fire_counts.to(torch::kFloat64) / nn;
      e.density_source = "evaluation";
      e.density_tokens = r.n;
    }
    e.dead_fraction = (e.density == 0).to(torch::kFloat64).mean().item<double>();
    e.dense_fraction = (e.density > options.dense_threshold).to(torch::kFloat64).mean().item<double>();
    const auto edges = density_histogram_edges();
    e.density_histogram.assign(edges.size() - 1, 0);
    const auto dens = e.density.accessor<double, 1>();
    for (int64_t j = 0; j < e.d_sae; ++j) {
      if (dens[j] <= 0) continue;
      const double l = std::log10(dens[j]);
      const int64_t bin = std::clamp<int64_t>(static_cast<int64_t>(std::floor((l - edges.front()) / 0.5)), 0,
                                              static_cast<int64_t>(edges.size()) - 2);
      ++e.density_histogram[static_cast<size_t>(bin)];
    }
    e.ce_clean = ce_clean;
    e.ce_spliced = spliced[i].ce / static_cast<double>(spliced[i].n);
    e.kl = spliced[i].kl / static_cast<double>(spliced[i].n);
    const std::string& w = e.hook_out;  // the hook the coder writes: ablated for the baselines
    e.ce_zero = zero.at(w).ce / static_cast<double>(zero.at(w).n);
    e.ce_mean = mean_abl.at(w).ce / static_cast<double>(mean_abl.at(w).n);
    e.ce_increase = e.ce_spliced - ce_clean;
    e.loss_recovered_zero = (e.ce_zero - e.ce_spliced) / (e.ce_zero - ce_clean);
    e.loss_recovered_mean = (e.ce_mean - e.ce_spliced) / (e.ce_mean - ce_clean);
    e.kl_zero = zero.at(w).kl / static_cast<double>(zero.at(w).n);
    e.kl_div_score = (e.kl_zero - e.kl) / e.kl_zero;
    if (all_positions) {
      SaelensConventionResult& c = e.saelens;
      c.computed = true;
      c.ce_spliced = spliced_all[i].ce / static_cast<double>(spliced_all[i].n);
      c.kl = spliced_all[i].kl / static_cast<double>(spliced_all[i].n);
      c.ce_zero = zero_all.at(w).ce / static_cast<double>(zero_all.at(w).n);
      c.kl_zero = zero_all.at(w).kl / static_cast<double>(zero_all.at(w).n);
      c.loss_recovered_zero = (c.ce_zero - c.ce_spliced) / (c.ce_zero - ce_clean);
      c.kl_div_score = (c.kl_zero - c.kl) / c.kl_zero;
    }
    if (options.with_error_term) e.ce_with_error = with_error[i].ce / static_cast<double>(with_error[i].n);
    if (options.absorption && !saes[i].transcoder()) {  // absorption compares an SAE's latents with probes of its own hook
      e.absorption = measure_absorption(saes[i].sae(), hook_x.at(e.hook), letter_all, fit_all, options.absorption_options);
      e.absorption_measured = true;
    }
    report.saes.push_back(std::move(e));
  }
  for (size_t r = 0; r < replacement_sets.size(); ++r) {
    ReplacementResult rr;
    rr.name = replacement_sets[r].first;
    for (const AttachedSae* a : replacement_sets[r].second) rr.coders.push_back(a->name);
    rr.ce_clean = ce_clean;
    rr.ce_replaced = replaced[r].ce / static_cast<double>(replaced[r].n);
    rr.kl = replaced[r].kl / static_cast<double>(replaced[r].n);
    report.replacements.push_back(std::move(rr));
  }
  return report;
}

}  // namespace saelab
