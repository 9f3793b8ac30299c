// The reference model shipped in assets/brown-gpt.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/files.h"
#include "core/json_options.h"
#include "models/corpus.h"
#include "models/generate.h"
#include "models/lm_data.h"
#include "models/lm_train.h"
#include "models/model_bundle.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

const std::string kBundled = SAELAB_SOURCE_DIR "/assets/brown-gpt";

TEST(BundledModel, FitsTheSizeBudgetAndDescribesItself) {
  EXPECT_LE(fs::file_size(kBundled + "/model.pt"), 20u * 1000 * 1000);
  LanguageModel lm = LanguageModel::open(kBundled);
  EXPECT_EQ(lm.info().n_layers, 4);
  EXPECT_EQ(lm.info().context_length, 128);
  EXPECT_EQ(lm.tokenizer().vocab_size(), lm.info().vocab_size);
  EXPECT_EQ(lm.info().hook_aliases["blocks.3.hook_resid_pre"], "blocks.3.input");
}

// The bar on the whole validation split is read from model.json (recorded when the model was
// trained: 1371 contexts, a minute of CPU); what is recomputed is the loss of its first contexts,
// which any change to the weights, the tokenizer or the forward pass moves far beyond 1e-5, and the
// split's unigram entropy (no model run).
TEST(BundledModel, MeetsTheQualityBarOnTheValidationSplitAsRecorded) {
  LanguageModel lm = LanguageModel::open(kBundled);
  const Corpus brown = read_brown(test::brown_dir());
  const auto stream = token_stream(lm.tokenizer(), split_documents(brown, Split::kValidation), false);
  const torch::Tensor contexts = eval_contexts(stream, lm.info().context_length, lm.tokenizer().bos_id());
  const json j = load_json_file(kBundled + "/model.json", "model.json");
  const json& recorded = j.at("evaluation");
  const int64_t first = recorded.at("first_contexts").at("contexts").get<int64_t>();
  ASSERT_EQ(first, std::min(LmTrainResult::kFirstValidationContexts, contexts.size(0)));
  const double first_loss =
      evaluate_lm([&](const torch::Tensor& t) { return lm.logits(t); }, contexts.narrow(0, 0, first));
  // float32 logits round differently from machine to machine: relative 1e-5.
  EXPECT_TRUE(test::near_rel(first_loss, recorded.at("first_contexts").at("validation_loss").get<double>(), 1e-5, 0))
      << first_loss;
  const double entropy = unigram_entropy(contexts, lm.tokenizer().vocab_size());
  EXPECT_NEAR(entropy, recorded.at("unigram_entropy").get<double>(), 1e-6);
  EXPECT_EQ(recorded.at("tokens").get<int64_t>(), contexts.size(0) * lm.info().context_length);
  const double loss = recorded.at("validation_loss").get<double>();
  EXPECT_LE(loss, 0.7 * entropy) << "cross-entropy " << loss << ", unigram entropy " << entropy;
}

TEST(BundledModel, GivesTheSameLogitsInPythonAndMatchesAnIndependentReimplementation) {
  test::TempDir dir;
  LanguageModel lm = LanguageModel::open(kBundled);
  fs::copy_file(kBundled + "/model.pt", dir / "model.pt");
  const torch::Tensor tokens =
      torch::tensor(prompt_ids(lm, "The jury said that the city of Atlanta had been well run."), torch::kInt64)
          .unsqueeze(0);
  torch::NoGradGuard g;
  const torch::Tensor logits = lm.logits(tokens).contiguous();
  write_file_atomic(dir / "tokens.bin",
                    std::string(static_cast<const char*>(tokens.data_ptr()), tokens.numel() * sizeof(int64_t)));
  write_file_atomic(dir / "logits.bin",
                    std::string(static_cast<const char*>(logits.data_ptr()), logits.numel() * sizeof(float)));
  write_file_atomic(dir / "shape.json",
                    json{{"tokens", tokens.sizes().vec()}, {"logits", logits.sizes().vec()}, {"n_heads", 4}}.dump());
  const auto r = test::run_command(SAELAB_TEST_PYTHON " " SAELAB_SOURCE_DIR "/tests/python/check_gpt.py " +
                                   dir.path().string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("layers 4;"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace saelab
