// Tests of logit effects (analysis/logit_effects.h).
#include "analysis/seen_tokens.h"
#include "core/files.h"
#include "tests/analysis_fixture.h"

namespace saelab {
namespace {

TEST(LogitEffects, ReadTheDecoderThroughTheFinalLayerNormAndUnembedding) {
  Fixture& f = fixture();
  const Unembedding u = find_unembedding(f.lm);
  EXPECT_EQ(u.ln_name, "ln_final.weight");
  EXPECT_EQ(u.unembed_name, "unembed.weight");
  Sae sae(config("topk", f.d(), 32, 4), 2);
  const LogitEffects e = logit_effects(sae, u, 5);
  torch::NoGradGuard g;
  const torch::Tensor w = sae.param("W_dec")[7].to(torch::kFloat64);
  const torch::Tensor gamma = f.lm.module().attr("ln_final").toModule().attr("weight").toTensor().to(torch::kFloat64);
  const torch::Tensor W_U = f.lm.module().attr("unembed").toModule().attr("weight").toTensor().to(torch::kFloat64);  // [V, d]
  const torch::Tensor direct = torch::matmul(W_U, (w - w.mean()) * gamma);
  auto [vals, ids] = direct.topk(5);
  EXPECT_TRUE(torch::equal(e.promoted_ids[7], ids));
  EXPECT_TRUE(torch::allclose(e.promoted[7].to(torch::kFloat64), vals, 1e-4, 1e-5));
  EXPECT_TRUE(torch::equal(e.suppressed_ids[7], std::get<1>(direct.topk(5, 0, false))));
}

// The bundled model records its training corpus (Brown): tokens never in its train split are
// left out of the ranking, and the ranking of the others is unchanged; a model that records no
// corpus ranks every token and says so.
TEST(LogitEffects, TokensNeverSeenInTrainingAreLeftOutAndSaidSo) {
  Fixture& f = fixture();
  const SeenTokens seen = tokens_seen_in_training(f.lm, test::cache_dir());
  ASSERT_TRUE(seen.seen.defined()) << seen.note;
  const int64_t vocab = f.lm.info().vocab_size;
  EXPECT_GT(seen.never_seen, 0);
  EXPECT_LT(seen.never_seen, vocab / 2);
  EXPECT_EQ(vocab - seen.seen.sum().item<int64_t>(), seen.never_seen);
  // A byte-fallback piece of a byte Brown never holds is unseen; BOS and a common word are seen.
  const int64_t byte = f.lm.tokenizer().piece_to_id("<0xF0>");
  ASSERT_GE(byte, 0);
  EXPECT_FALSE(seen.seen[byte].item<bool>());
  EXPECT_TRUE(seen.seen[f.lm.tokenizer().bos_id()].item<bool>());
  EXPECT_TRUE(seen.seen[f.lm.tokenizer().encode(" the").ids.back()].item<bool>());
  EXPECT_NE(seen.note.find("are left out: " + std::to_string(seen.never_seen) + " of " + std::to_string(vocab)),
            std::string::npos) << seen.note;

  const Unembedding u = find_unembedding(f.lm);
  Sae sae(config("topk", f.d(), 32, 4), 2);
  const LogitEffects all = logit_effects(sae, u, 8), kept = logit_effects(sae, u, 8, seen.seen);
  EXPECT_FALSE(seen.seen.index({kept.promoted_ids.reshape(-1)}).logical_not().any().item<bool>());
  EXPECT_FALSE(seen.seen.index({kept.suppressed_ids.reshape(-1)}).logical_not().any().item<bool>());
  // Where the unrestricted top 8 are all seen tokens, the restricted ranking is the same.
  for (int64_t i = 0; i < 32; ++i) {
    if (seen.seen.index({all.promoted_ids[i]}).all().item<bool>()) {
      EXPECT_TRUE(torch::equal(all.promoted_ids[i], kept.promoted_ids[i])) << "feature " << i;
    }
  }
  // No recorded corpus: every token ranked, and the note says why.
  ModelInfo bare = f.lm.info();
  bare.extra.erase("training");
  test::TempDir dir;
  fs::copy(test::kBundled, dir.path(), fs::copy_options::recursive);
  write_file_atomic(dir / "model.json", bare.to_json().dump(2));
  const SeenTokens none = tokens_seen_in_training(LanguageModel::open(dir.path().string()), test::cache_dir());
  EXPECT_FALSE(none.seen.defined());
  EXPECT_NE(none.note.find("every token is ranked: model.json records no training corpus"), std::string::npos) << none.note;
}

// An SAE of another model whose hook this model lacks: the error leads with the model it was
// trained on; of this model, with the hook alone.
TEST(AttachSaes, AMissingHookOfAnotherModelsSaeSaysWhichModelItWasTrainedOn) {
  Fixture& f = fixture();
  Sae sae(config("topk", f.d(), 16, 4), 3);
  SaeMetadata meta;
  meta.model_name = "gpt2";
  meta.hook_name = "blocks.11.hook_resid_pre";
  save_sae(f.dir / "gpt2-sae", sae, meta);
  EXPECT_THROWS_WITH(attach_saes(f.lm, f.hooked, {f.dir / "gpt2-sae"}),
                     "SAE '" + (f.dir / "gpt2-sae") + "' was trained on model 'gpt2', not 'brown-gpt': SAE '");
  meta.model_name = f.lm.info().name;
  save_sae(f.dir / "own-sae", sae, meta);
  try {
    attach_saes(f.lm, f.hooked, {f.dir / "own-sae"});
    ADD_FAILURE() << "a missing hook was accepted";
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    EXPECT_EQ(msg.rfind("SAE '" + (f.dir / "own-sae") + "' was trained at hook 'blocks.11.hook_resid_pre', which model "
                        "'brown-gpt' does not have", 0), 0u) << msg;
  }
}

// The norm type decides how a direction is read: LayerNorm centres and scales by w, RMSNorm scales
// by w, Gemma's RMSNorm by 1 + w. Only a bias makes the type certain; without one, model.json must
// say which it is.
TEST(LogitEffects, TheFinalNormsTypeComesFromModelJsonOrAnUnambiguousBias) {
  torch::manual_seed(4);
  const int64_t d = 6, vocab = 11;
  const torch::Tensor w = torch::rand({d}) + 0.5, W_U = torch::randn({vocab, d});
  std::map<std::string, torch::Tensor> params = {{"ln_f.weight", w}, {"lm_head.weight", W_U}};
  Sae sae(config("topk", d, 4, 2), 1);
  const torch::Tensor dir = sae.param("W_dec").detach()[1].to(torch::kFloat64);
  auto effect = [&](const Unembedding& u) {
    return feature_logit_effects(sae, u, torch::tensor({1}, torch::kInt64))[0].to(torch::kFloat64);
  };
  const torch::Tensor wd = w.to(torch::kFloat64), Ud = W_U.to(torch::kFloat64);

  EXPECT_THROWS_WITH(unembedding_from(params, nlohmann::json(), vocab, "m"),
                     "final norm 'ln_f.weight' has a weight and no bias", "\"norm\"");
  const Unembedding rms = unembedding_from(params, {{"norm", "rmsnorm"}}, vocab, "m");
  EXPECT_EQ(rms.norm, "rmsnorm");
  EXPECT_TRUE(torch::allclose(effect(rms), torch::matmul(Ud, dir * wd), 1e-4, 1e-5));
  const Unembedding gemma = unembedding_from(params, {{"norm", "rmsnorm_plus_one"}}, vocab, "m");
  EXPECT_TRUE(torch::allclose(effect(gemma), torch::matmul(Ud, dir * (1 + wd)), 1e-4, 1e-5));
  const Unembedding ln_no_bias = unembedding_from(params, {{"norm", "layernorm"}}, vocab, "m");
  EXPECT_TRUE(torch::allclose(effect(ln_no_bias), torch::matmul(Ud, (dir - dir.mean()) * wd), 1e-4, 1e-5));
  const Unembedding none = unembedding_from(params, {{"norm", "none"}}, vocab, "m");
  EXPECT_TRUE(torch::allclose(effect(none), torch::matmul(Ud, dir), 1e-4, 1e-5));
  EXPECT_THROWS_WITH(unembedding_from(params, {{"norm", "batchnorm"}}, vocab, "m"),
                     "logit_lens.norm must be layernorm, rmsnorm, rmsnorm_plus_one or none");

  params["ln_f.bias"] = torch::zeros({d});  // a bias: LayerNorm, no need to say so
  const Unembedding ln = unembedding_from(params, nlohmann::json(), vocab, "m");
  EXPECT_EQ(ln.norm, "layernorm");
  EXPECT_TRUE(torch::allclose(effect(ln), torch::matmul(Ud, (dir - dir.mean()) * wd), 1e-4, 1e-5));
}

}  // namespace
}  // namespace saelab
