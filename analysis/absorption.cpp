#include "analysis/absorption.h"

#include <algorithm>
#include <cctype>

#include "models/tokenizer.h"

namespace saelab {

namespace {

constexpr int64_t kLetters = 26;

// Rows encoded at once: the dense code [rows, d_sae] stays near 2^22 values (16 MB in float32).
int64_t chunk_rows(int64_t d_sae) { return std::max<int64_t>(16, (int64_t{1} << 22) / std::max<int64_t>(1, d_sae)); }

}  // namespace

nlohmann::json AbsorptionResult::to_json() const {
  return {{"rate", rate}, {"false_negative_rate", false_negative_rate}, {"letters", letters}, {"per_letter", per_letter}};
}

int64_t first_letter_of_piece(const std::string& piece) {
  size_t at = 0;
  if (piece.rfind("\xE2\x96\x81", 0) == 0) {
    at = 3;  // SentencePiece's word-start mark
  } else if (piece.rfind("\xC4\xA0", 0) == 0) {
    at = 2;  // byte-level BPE's space (GPT-2's Ġ)
  } else {
    return -1;
  }
  if (at >= piece.size()) return -1;
  const unsigned char c = static_cast<unsigned char>(piece[at]);
  if (c >= 0x80 || std::isalpha(c) == 0) return -1;
  return std::tolower(c) - 'a';
}

torch::Tensor first_letters(const Tokenizer& tokenizer, const torch::Tensor& ids) {
  const torch::Tensor flat = ids.reshape(-1).to(torch::kInt64).contiguous();
  torch::Tensor out = torch::empty_like(flat);
  const int64_t* in = flat.data_ptr<int64_t>();
  int64_t* o = out.data_ptr<int64_t>();
  std::unordered_map<int64_t, int64_t> cache;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    auto it = cache.find(in[i]);
    if (it == cache.end()) it = cache.emplace(in[i], first_letter_of_piece(tokenizer.id_to_piece(in[i]))).first;
    o[i] = it->second;
  }
  return out.view(ids.sizes());
}

AbsorptionResult measure_absorption(const Sae& sae, const torch::Tensor& x_in, const torch::Tensor& letter_in,
                                    const torch::Tensor& fit_in, const AbsorptionOptions& options) {
  TORCH_CHECK(x_in.dim() == 2 && x_in.size(1) == sae.config().d_in, "absorption: activations must be [N, ",
              sae.config().d_in, "] (got ", x_in.sizes(), ")");
  TORCH_CHECK(letter_in.numel() == x_in.size(0) && fit_in.numel() == x_in.size(0),
              "absorption: letters and halves must have one entry per activation row");
  torch::NoGradGuard no_grad;
  const torch::Tensor letter = letter_in.reshape(-1).to(torch::kInt64);
  const torch::Tensor fit = fit_in.reshape(-1).to(torch::kBool);
  const torch::Tensor labelled = (letter >= 0).logical_and(letter < kLetters);
  const torch::Tensor x = x_in.to(torch::kFloat32);
  const int64_t d_sae = sae.config().d_sae;
  const torch::Tensor W_dec = sae.param("W_dec").detach().to(torch::kFloat64);  // [d_sae, d]
  const torch::Tensor dec_norm = W_dec.norm(2, {1}).clamp_min(1e-12);

  AbsorptionResult result;
  // Fit half: the probes (difference of means) and the latents' F1 per letter.
  const torch::Tensor fit_rows = fit.logical_and(labelled).nonzero().squeeze(1);
  const torch::Tensor test_rows = fit.logical_not().logical_and(labelled).nonzero().squeeze(1);
  if (fit_rows.numel() == 0 || test_rows.numel() == 0) return result;
  const torch::Tensor xf = x.index_select(0, fit_rows).to(torch::kFloat64);
  const torch::Tensor lf = letter.index_select(0, fit_rows);
  const torch::Tensor onehot = torch::one_hot(lf, kLetters).to(torch::kFloat64);  // [n_fit, 26]
  const torch::Tensor count = onehot.sum(0);                                        // [26]
  const torch::Tensor sum_x = torch::matmul(onehot.t(), xf);                        // [26, d]
  const torch::Tensor total_x = xf.sum(0);
  const double n_fit = static_cast<double>(fit_rows.numel());
  const torch::Tensor mean_pos = sum_x / count.clamp_min(1).unsqueeze(1);
  const torch::Tensor mean_neg = (total_x.unsqueeze(0) - sum_x) / (n_fit - count).clamp_min(1).unsqueeze(1);
  const torch::Tensor probe = mean_pos - mean_neg;
  const torch::Tensor probe_hat = probe / probe.norm(2, {1}, true).clamp_min(1e-12);  // [26, d]
  const torch::Tensor cut = 0.5 * ((mean_pos * probe_hat).sum(1) + (mean_neg * probe_hat).sum(1));  // [26]

  // Which latents fire on the fit half's tokens, kept as bytes ([n_fit, d_sae]).
  // Counts are float32 sums of 0/1 values: exact below 2^24 tokens.
  const int64_t chunk = chunk_rows(d_sae);
  torch::Tensor fires_fit = torch::empty({fit_rows.size(0), d_sae}, torch::kBool);
  torch::Tensor tp_all = torch::zeros({kLetters, d_sae}), fired_all = torch::zeros({d_sae});
  const torch::Tensor onehot32 = onehot.to(torch::kFloat32);
  for (int64_t s = 0; s < fit_rows.size(0); s += chunk) {
    const int64_t n = std::min(chunk, fit_rows.size(0) - s);
    const torch::Tensor fires = sae.encode(x.index_select(0, fit_rows.narrow(0, s, n))) > 0;
    fires_fit.narrow(0, s, n).copy_(fires);
    const torch::Tensor fd = fires.to(torch::kFloat32);
    tp_all += torch::matmul(onehot32.narrow(0, s, n).t(), fd);
    fired_all += fd.sum(0);
  }
  // The main latents of each letter: the latent of best F1 (= 2 tp / (fired + count)), then, as
  // SAEBench's k-sparse probing detects feature splitting, each latent whose firing added to the
  // set's (any of them fires) raises the F1 by at least split_threshold, up to max_main_latents.
  std::vector<std::vector<int64_t>> main_latents(kLetters);
  std::vector<double> main_f1(kLetters, 0.0);
  for (int64_t l = 0; l < kLetters; ++l) {
    const double n_l = count[l].item<double>();
    if (n_l < static_cast<double>(options.min_tokens)) continue;
    const torch::Tensor is_l = (lf == l).to(torch::kFloat32);  // [n_fit]
    torch::Tensor covered = torch::zeros({fit_rows.size(0)}, torch::kBool);
    double tp_set = 0, fired_set = 0, best = 0;
    for (int64_t round = 0; round < options.max_main_latents; ++round) {
      // Counts over the tokens the set does not fire on yet: all tokens minus the covered ones.
      const torch::Tensor cov = covered.nonzero().squeeze(1);
      torch::Tensor tp = tp_all[l].clone(), fired = fired_all.clone();
      for (int64_t c = 0; c < cov.size(0); c += chunk) {  // minus the covered tokens' counts
        const torch::Tensor rows = cov.narrow(0, c, std::min(chunk, cov.size(0) - c));
        const torch::Tensor f_cov = fires_fit.index_select(0, rows).to(torch::kFloat32);  // [rows, d_sae]
        tp -= torch::mv(f_cov.t(), is_l.index_select(0, rows));
        fired -= f_cov.sum(0);
      }
      tp += tp_set;
      fired += fired_set;
      const torch::Tensor f1 = 2 * tp / (fired + n_l).clamp_min(1);
      const int64_t j = f1.argmax().item<int64_t>();
      const double f1_j = f1[j].item<double>();
      // No latent detects the letter at all: it has no main latent and is not measured.
      if (f1_j <= 0) break;
      const auto& chosen = main_latents[static_cast<size_t>(l)];
      if (round > 0 && (f1_j <= best || f1_j < best + options.split_threshold ||
                        std::find(chosen.begin(), chosen.end(), j) != chosen.end())) {
        break;
      }
      main_latents[static_cast<size_t>(l)].push_back(j);
      best = f1_j;
      tp_set = tp[j].item<double>();
      fired_set = fired[j].item<double>();
      covered = covered.logical_or(fires_fit.select(1, j));
    }
    main_f1[static_cast<size_t>(l)] = best;
  }
  fires_fit = torch::Tensor();
  // is_main [26, d_sae]: the letter's main latents.
  torch::Tensor is_main = torch::zeros({kLetters, d_sae}, torch::kBool);
  for (int64_t l = 0; l < kLetters; ++l) {
    for (int64_t j : main_latents[static_cast<size_t>(l)]) is_main[l][j] = true;
  }

  // Test half: positives, false negatives and absorbed false negatives per letter.
  const torch::Tensor lt = letter.index_select(0, test_rows);
  const torch::Tensor test_count = torch::one_hot(lt, kLetters).sum(0);
  const torch::Tensor proj = torch::matmul(W_dec, probe_hat.t());        // [d_sae, 26] W_dec,j · p̂_L
  const torch::Tensor aligned = (proj / dec_norm.unsqueeze(1)) >= options.cosine_threshold;  // [d_sae, 26]
  std::vector<int64_t> positives(kLetters, 0), false_negatives(kLetters, 0), absorbed(kLetters, 0);
  const torch::Tensor proj32 = proj.to(torch::kFloat32);
  for (int64_t s = 0; s < test_rows.size(0); s += chunk) {
    const int64_t n = std::min(chunk, test_rows.size(0) - s);
    const torch::Tensor rows = test_rows.narrow(0, s, n);
    const torch::Tensor L = lt.narrow(0, s, n);
    const torch::Tensor xr = x.index_select(0, rows).to(torch::kFloat64);
    const torch::Tensor positive = (xr * probe_hat.index_select(0, L)).sum(1) > cut.index_select(0, L);
    const torch::Tensor f = sae.encode(x.index_select(0, rows));  // [n, d_sae] float32
    const torch::Tensor main_of = is_main.index_select(0, L);                          // [n, d_sae]
    const torch::Tensor main_fires = (f > 0).logical_and(main_of).any(1);
    const torch::Tensor miss = positive.logical_and(main_fires.logical_not());
    // Contributions of each latent to the reconstruction's projection on the token's probe.
    const torch::Tensor contrib = f * proj32.index_select(1, L).t();  // [n, d_sae]
    const torch::Tensor others = aligned.index_select(1, L).t().logical_and(main_of.logical_not());
    const torch::Tensor carried = (contrib * others.to(torch::kFloat32)).sum(1);
    const torch::Tensor total = contrib.sum(1);
    const torch::Tensor is_absorbed =
        miss.logical_and(total > 0).logical_and(carried >= options.projection_fraction * total);
    const auto La = L.accessor<int64_t, 1>();
    const auto pa = positive.accessor<bool, 1>(), ma = miss.accessor<bool, 1>(), aa = is_absorbed.accessor<bool, 1>();
    for (int64_t i = 0; i < n; ++i) {
      positives[static_cast<size_t>(La[i])] += pa[i];
      false_negatives[static_cast<size_t>(La[i])] += ma[i];
      absorbed[static_cast<size_t>(La[i])] += aa[i];
    }
  }
  double rate = 0, fn_rate = 0;
  for (int64_t l = 0; l < kLetters; ++l) {
    const auto i = static_cast<size_t>(l);
    if (count[l].item<double>() < static_cast<double>(options.min_tokens) ||
        test_count[l].item<int64_t>() < options.min_tokens || positives[i] == 0 || main_latents[i].empty()) {
      continue;
    }
    ++result.letters;
    rate += static_cast<double>(absorbed[i]) / static_cast<double>(positives[i]);
    fn_rate += static_cast<double>(false_negatives[i]) / static_cast<double>(positives[i]);
    result.per_letter[std::string(1, static_cast<char>('a' + l))] = {
        {"main_latents", main_latents[i]}, {"main_f1", main_f1[i]},
        {"positives", positives[i]}, {"false_negatives", false_negatives[i]}, {"absorbed", absorbed[i]}};
  }
  if (result.letters > 0) {
    result.rate = rate / static_cast<double>(result.letters);
    result.false_negative_rate = fn_rate / static_cast<double>(result.letters);
  }
  return result;
}

}  // namespace saelab
