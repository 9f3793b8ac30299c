// tools/export_hf.py: a Hugging Face GPT-2-architecture model exported to a saelab model folder.
#include <gtest/gtest.h>

#include "analysis/logit_effects.h"
#include "core/files.h"
#include "models/hooked_model.h"
#include "models/model_bundle.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

torch::Tensor read_bin(const std::string& path, torch::Dtype dtype, std::vector<int64_t> shape) {
  const std::string bytes = read_file(path, "reference tensor");
  return torch::from_blob(const_cast<char*>(bytes.data()), shape, dtype).clone();
}

TEST(ExportHf, WritesATracedModelAndModelJsonThatSaelabOpensHooksAndReadsLogitsFrom) {
  test::TempDir dir;
  const auto made = test::run_command(SAELAB_TEST_PYTHON " " SAELAB_SOURCE_DIR "/tests/python/export_tiny.py " +
                                      (dir / "m") + " " + test::gpt2_dir());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  LanguageModel lm = LanguageModel::open(dir / "m");
  EXPECT_EQ(lm.info().n_layers, 3);
  EXPECT_EQ(lm.tokenizer().encode_ids("Hello world"), (std::vector<int64_t>{15496, 995}));
  // Traced at length 8, run at 12: logits equal the eager PyTorch model's.
  const torch::Tensor tokens = read_bin(dir / "m/tokens.bin", torch::kInt64, {2, 12});
  const torch::Tensor expected = read_bin(dir / "m/logits.bin", torch::kFloat32, {2, 12, 50257});
  torch::NoGradGuard g;
  EXPECT_TRUE(test::all_close(lm.logits(tokens), expected, 1e-5, 0));
  HookedModel hooked(lm.module(), lm.info().hook_aliases);
  EXPECT_EQ(hooked.resolve("blocks.1.hook_resid_pre"), "transformer.h.1.input");
  const Unembedding u = find_unembedding(lm);
  EXPECT_EQ(u.unembed_name, "lm_head.weight");
  EXPECT_EQ(u.ln_name, "transformer.ln_f.weight");
  EXPECT_EQ(u.norm, "layernorm");
  EXPECT_EQ(lm.info().extra.at("logit_lens").at("norm"), "layernorm");  // written from the module's class
  EXPECT_EQ(u.W_U.sizes(), (std::vector<int64_t>{64, 50257}));
}

}  // namespace
}  // namespace saelab
