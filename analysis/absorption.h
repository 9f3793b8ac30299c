// Feature absorption, in the spirit of SAEBench's first-letter absorption eval (Chanin et al. 2024,
// "A is for Absorption"): a parent concept — here a word's first letter, which the model must
// represent to spell — should have a latent that fires wherever the model represents it. An SAE
// absorbs the parent when, on some tokens, that latent stays silent and more specific latents
// carry the parent's direction instead (a "starts with s" latent silent on "short" because a
// "short" latent has absorbed it). Matryoshka SAEs are meant to absorb less.
//
// Per letter L with enough word-start tokens in both halves of the data (even contexts fit, odd
// contexts test):
//   probe      p_L = mean x over tokens starting with L − mean x over the other word-start tokens
//              (fit half), a token probe-positive when x·p̂ exceeds the midpoint of the two means'
//              projections. A difference-of-means probe instead of SAEBench's logistic regression.
//   main       the latent whose firing predicts L best (largest F1 on the fit half), joined, as
//              SAEBench's k-sparse probing detects feature splitting, by each latent that raises
//              the F1 of "any main latent fires" by at least split_threshold (up to
//              max_main_latents): a letter split over several latents is not absorption
//   positives  test-half tokens starting with L that are probe-positive (the model represents L)
//   false neg. positives on which no main latent fires
//   absorbed   a false negative on which latents other than the main ones, each with decoder cosine
//              ≥ cosine_threshold to p̂, carry ≥ projection_fraction of the reconstruction's
//              projection onto p̂ (Σ_j f_j W_dec,j · p̂ over firing latents)
//   rate       absorbed / positives
// The SAE's absorption rate is the mean of the rates over the letters measured; the mean false-
// negative rate (absorbed or not) is reported beside it. Lower is better for both.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "core/options.h"
#include "sae/sae.h"

namespace saelab {

class Tokenizer;

struct AbsorptionOptions {
  int64_t min_tokens = 10;
  double cosine_threshold = 0.025;
  double projection_fraction = 0.4;
  int64_t max_main_latents = 5;
  double split_threshold = 0.03;
  /// Word-start tokens kept for the measurement (the first ones): bounds its memory, which is
  /// [tokens, d_sae] bytes for the fit half's firing pattern.
  int64_t max_tokens = 16384;

  template <class V>
  void fields(V& v) {
    v("absorption_min_tokens", min_tokens, "absorption: tokens of a first letter each half needs for the letter to be measured", at_least(1));
    v("absorption_cosine", cosine_threshold, "absorption: decoder cosine with the letter's probe an absorbing latent needs (SAEBench: 0.025)", in_range(-1, 1));
    v("absorption_fraction", projection_fraction, "absorption: share of the probe projection absorbing latents must carry (SAEBench: 0.4)", in_range(0, 1));
    v("absorption_main_latents", max_main_latents, "absorption: most latents a letter may be split over", at_least(1));
    v("absorption_split", split_threshold, "absorption: F1 gain that adds a latent to a letter's main ones (SAEBench: 0.03)", in_range(0, 1));
    v("absorption_max_tokens", max_tokens, "absorption: word-start tokens measured (the first ones), which bounds its memory", at_least(2));
  }
};

struct AbsorptionResult {
  double rate = 0;                 ///< mean over measured letters of absorbed / positives
  double false_negative_rate = 0;  ///< mean over measured letters of false negatives / positives
  int64_t letters = 0;             ///< letters measured
  nlohmann::json per_letter = nlohmann::json::object();  ///< letter → {main_latents, main_f1, positives, false_negatives, absorbed}
  nlohmann::json to_json() const;
};

/// The first letter (a–z, lower case) of a word-start token — a piece beginning with SentencePiece's
/// "▁" or byte-level BPE's "Ġ" followed by a letter — or −1.
int64_t first_letter_of_piece(const std::string& piece);
/// first_letter_of_piece for every token of `ids` (any shape), as int64 of the same shape.
torch::Tensor first_letters(const Tokenizer& tokenizer, const torch::Tensor& ids);

/// Absorption of one SAE on activations `x` [N, d_in] with letters `letter` [N] (−1: not a
/// word-start letter token) and `fit` [N] bool (true: fit half, false: test half).
AbsorptionResult measure_absorption(const Sae& sae, const torch::Tensor& x, const torch::Tensor& letter,
                                    const torch::Tensor& fit, const AbsorptionOptions& options = {});

}  // namespace saelab
