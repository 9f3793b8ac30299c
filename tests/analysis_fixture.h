// The model, evaluation set and SAE helpers shared by the analysis/ unit tests.
#pragma once
#include <gtest/gtest.h>

#include "analysis/attached_sae.h"
#include "analysis/evaluate.h"
#include "analysis/feature_db.h"
#include "analysis/feature_graph.h"
#include "analysis/interpret.h"
#include "analysis/logit_effects.h"
#include "analysis/steering.h"
#include "analysis/top_activations.h"
#include "core/files.h"
#include "tests/test_util.h"

namespace saelab::test {

inline const std::string kBundled = SAELAB_SOURCE_DIR "/assets/brown-gpt";

// One model, hooked, shared by the tests of a binary (loading it costs a second).
struct Fixture {
  LanguageModel lm = LanguageModel::open(kBundled);
  HookedModel hooked{lm.module(), lm.info().hook_aliases};
  EvalSet eval_set;
  test::TempDir dir;
  Fixture() {
    EvalSetOptions o;
    o.contexts = 6;
    o.context_length = 24;
    eval_set = build_eval_set(lm, o, test::cache_dir());
  }
  int64_t d() const { return lm.info().d_model; }

  // Saves an SAE for `hook` and attaches it.
  AttachedSae attach(const std::string& name, const Sae& sae, const std::string& hook = "blocks.1.hook_resid_pre",
                     const std::string& sha = "") {
    SaeMetadata meta;
    meta.model_name = lm.info().name;
    meta.hook_name = hook;
    meta.context_size = 24;
    meta.model_sha256 = sha;
    const std::string path = dir / name;
    save_sae(path, sae, meta);
    return attach_saes(lm, hooked, {path}).front();
  }
};

inline Fixture& fixture() {
  static Fixture f;
  return f;
}

inline SaeConfig config(const std::string& arch, int64_t d_in, int64_t d_sae, int64_t k = 8) {
  SaeConfig c;
  c.architecture = parse_architecture(arch);
  c.d_in = d_in;
  c.d_sae = d_sae;
  c.k = k;
  return c;
}

// ReLU(x) − ReLU(−x) = x: a standard SAE that reconstructs exactly.
inline Sae identity_sae(int64_t d) {
  const torch::Tensor I = torch::eye(d);
  return Sae(config("standard", d, 2 * d),
             {{"W_enc", torch::cat({I, -I}, 1)}, {"b_enc", torch::zeros({2 * d})}, {"W_dec", torch::cat({I, -I}, 0)},
              {"b_dec", torch::zeros({d})}},
             "identity");
}

inline Sae zero_sae(int64_t d) {
  return Sae(config("standard", d, 4),
             {{"W_enc", torch::randn({d, 4})}, {"b_enc", torch::zeros({4})}, {"W_dec", torch::zeros({4, d})},
              {"b_dec", torch::zeros({d})}},
             "zero");
}

}  // namespace saelab::test

namespace saelab {
using test::config;
using test::fixture;
using test::Fixture;
using test::identity_sae;
using test::zero_sae;
}  // namespace saelab
