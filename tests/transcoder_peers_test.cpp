// Transcoders against the peers' own libraries (issue 30), in the pinned environment of
// python/peers.lock (tests/python/peers.py): SAELens 6.54's transcoder classes, sparsify 1.3's
// transcoders and circuit-tracer 0.5's transcoder sets, both ways, with the same codes (L0 exact)
// and predictions (within 1e-5 relative) on the same activations.
#include "tests/peers_util.h"

namespace saelab {
namespace {

using test::fixture;
using namespace test::peer;

// Transcoders both ways (issue 30): saelab's ReLU, JumpReLU and BatchTopK transcoders, with and
// without a skip path, load in SAELens as its transcoder classes; SAELens' four classes load in
// saelab. Codes L0-exact and within 1e-5; predictions include the skip path.
TEST(Peers, TranscodersSaelabWritesLoadInSaeLensAsItsTranscoderClassesWithTheSamePredictions) {
  Rows& R = rows();
  test::TempDir dir;
  const int64_t d = R.acts.size(1), d_out = d - 8, d_sae = 256;
  SaeMetadata meta;
  meta.model_name = fixture().lm.info().name;
  meta.hook_name = "blocks.1.hook_resid_mid";
  meta.hook_name_out = "blocks.1.hook_mlp_out";
  meta.context_size = 24;
  std::vector<Sae> saes;
  std::vector<std::string> want_arch;
  std::string dirs;
  torch::manual_seed(12);
  for (const char* arch : {"standard", "jumprelu", "batchtopk"}) {
    for (bool skip : {false, true}) {
      SaeConfig c = test::config(arch, d, d_sae, 6);
      c.d_out = d_out;
      c.apply_b_dec_to_input = false;
      c.skip = skip;
      std::map<std::string, torch::Tensor> p;
      for (const auto& [key, shape] : sae_shapes(c)) p[key] = 0.1 * torch::randn(shape);
      p["W_enc"] = torch::randn({d, d_sae}) / std::sqrt(static_cast<double>(d));
      if (p.count("threshold")) p["threshold"] = uses_batch_topk(c.architecture) ? torch::full({d_sae}, 0.5) : torch::rand({d_sae});
      saes.emplace_back(c, p, arch);
      const std::string base = std::string(arch) == "standard" ? "transcoder" : "jumprelu_transcoder";
      want_arch.push_back(skip ? (base == "transcoder" ? "skip_transcoder" : "jumprelu_skip_transcoder") : base);
      const std::string path = dir / (std::string(arch) + (skip ? "-skip" : ""));
      save_sae(path, saes.back(), meta);
      dirs += " " + path;
    }
  }
  EXPECT_THROWS_WITH(save_sae(dir / "v5", saes.front(), meta, {}, SaeFormat::kSaeLensV5), "SAELens v5 has no transcoders");
  run_or_fail(peers("load-saelens " + R.file + " " + (dir / "out") + dirs));
  const PeerOutput p(dir / "out");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < saes.size(); ++i) {
    const nlohmann::json& e = p.expected[std::to_string(i)];
    SCOPED_TRACE(e["folder"].get<std::string>());
    EXPECT_EQ(e["architecture"], want_arch[i]);
    EXPECT_EQ(e["d_out"], d_out);
    EXPECT_EQ(e["metadata"]["hook_name"], meta.hook_name);
    EXPECT_EQ(e["metadata"]["hook_name_out"], meta.hook_name_out);
    const torch::Tensor codes = saes[i].encode(R.acts);
    EXPECT_GT((codes != 0).sum().item<double>() / R.acts.size(0), 1.0);
    expect_same_codes(p.reference.at(std::to_string(i) + ".codes"), codes);
    expect_same_values(p.reference.at(std::to_string(i) + ".x_hat"), saes[i].predict(R.acts, codes));
  }
}

TEST(Peers, TranscodersMadeBySaeLensLoadInSaelabWithTheirCodesAndPredictions) {
  Rows& R = rows();
  test::TempDir dir;
  run_or_fail(peers("make-saelens-transcoders " + R.file + " " + (dir / "out")));
  const PeerOutput p(dir / "out");
  ASSERT_EQ(p.expected.size(), 4u);
  torch::NoGradGuard no_grad;
  for (const auto& [name, e] : p.expected.items()) {
    SCOPED_TRACE(name);
    const LoadedSae s = load_sae((dir / "out") + "/" + e["folder"].get<std::string>());
    EXPECT_EQ(architecture_name(s.sae.config().architecture), e["architecture"].get<std::string>());
    EXPECT_EQ(s.sae.config().skip, e["skip"].get<bool>());
    EXPECT_EQ(s.sae.config().out_width(), e["d_out"].get<int64_t>());
    EXPECT_EQ(s.metadata.hook_name_out, "blocks.1.hook_mlp_out");
    const torch::Tensor codes = s.sae.encode(R.acts);
    expect_same_codes(codes, p.reference.at(name + ".codes"));
    expect_same_values(s.sae.predict(R.acts, codes), p.reference.at(name + ".x_hat"));
  }
}

// sparsify's transcoders: the skip transcoders its own Trainer trains on each block's MLP
// (transcode=True) load in saelab reading <hookpoint>.input and writing <hookpoint>.output, with
// sparsify's codes and predictions; saelab's TopK skip transcoder loads in sparsify.
TEST(Peers, SparsifyTranscodersLoadInSaelabAndSaelabsLoadInSparsify) {
  Rows& R = rows();
  test::TempDir dir;
  run_or_fail(peers("train-sparsify " + R.file + " " + (dir / "out") + " --transcode"));
  const PeerOutput p(dir / "out");
  ASSERT_EQ(p.expected.size(), 2u);  // h.0.mlp and h.1.mlp
  torch::NoGradGuard no_grad;
  for (const auto& [name, e] : p.expected.items()) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(e["transcode"].get<bool>());
    const LoadedSae s = load_sae((dir / "out") + "/" + e["folder"].get<std::string>());
    const std::string hookpoint = e["hookpoint"].get<std::string>();
    EXPECT_EQ(s.metadata.hook_name, hookpoint + ".input");
    EXPECT_EQ(s.metadata.hook_name_out, hookpoint + ".output");
    EXPECT_TRUE(s.sae.config().skip);
    EXPECT_FALSE(s.sae.config().apply_b_dec_to_input);
    const torch::Tensor codes = s.sae.encode(R.acts);
    expect_same_codes(codes, p.reference.at(name + ".codes"));
    expect_same_values(s.sae.predict(R.acts, codes), p.reference.at(name + ".x_hat"));
  }
  const int64_t d = R.acts.size(1), d_sae = 256;
  SaeConfig c = test::config("topk", d, d_sae, 8);
  c.apply_b_dec_to_input = false;
  c.d_out = d;
  c.skip = true;
  torch::manual_seed(4);
  std::map<std::string, torch::Tensor> w;
  for (const auto& [key, shape] : sae_shapes(c)) w[key] = 0.1 * torch::randn(shape);
  w["W_enc"] = torch::randn({d, d_sae}) / std::sqrt(static_cast<double>(d));
  const Sae mine(c, w, "skip transcoder");
  SaeMetadata meta;
  meta.hook_name = "blocks.1.mlp.input";
  meta.hook_name_out = "blocks.1.mlp.output";
  save_sae(dir / "mine", mine, meta, {}, SaeFormat::kSparsify);
  EXPECT_EQ(load_sae(dir / "mine").metadata.hook_name_out, meta.hook_name_out);
  run_or_fail(peers("load-sparsify " + R.file + " " + (dir / "back") + " " + (dir / "mine")));
  const PeerOutput back(dir / "back");
  EXPECT_TRUE(back.expected["0"]["transcode"].get<bool>());
  EXPECT_TRUE(back.expected["0"]["skip"].get<bool>());
  const torch::Tensor codes = mine.encode(R.acts);
  expect_same_codes(back.reference.at("0.codes"), codes);
  expect_same_values(back.reference.at("0.x_hat"), mine.predict(R.acts, codes));
}

// circuit-tracer's transcoder sets: the two sets (ReLU with skip path; JumpReLU) built with its
// own SingleLayerTranscoder and written by its to_safetensors load in saelab layer by layer, with its
// codes and predictions and its hooks below blocks.<layer>.
TEST(Peers, CircuitTracerTranscoderSetsLoadInSaelabWithTheirCodesAndPredictions) {
  Rows& R = rows();
  test::TempDir dir;
  run_or_fail(peers("make-circuit-tracer " + R.file + " " + (dir / "out")));
  const PeerOutput p(dir / "out");
  ASSERT_EQ(p.expected.size(), 2u);
  torch::NoGradGuard no_grad;
  for (const auto& [name, e] : p.expected.items()) {
    SCOPED_TRACE(name);
    const std::vector<std::string> layers = find_sae_dirs((dir / "out") + "/" + e["folder"].get<std::string>());
    ASSERT_EQ(layers.size(), 2u);
    for (int64_t l = 0; l < 2; ++l) {
      const LoadedSae s = load_sae(layers[static_cast<size_t>(l)]);
      EXPECT_EQ(architecture_name(s.sae.config().architecture), e["architecture"].get<std::string>());
      EXPECT_EQ(s.sae.config().skip, e["skip"].get<bool>());
      EXPECT_EQ(s.metadata.hook_name, "blocks." + std::to_string(l) + ".hook_resid_mid");
      EXPECT_EQ(s.metadata.hook_name_out, "blocks." + std::to_string(l) + ".hook_mlp_out");
      const std::string key = name + "." + std::to_string(l);
      const torch::Tensor codes = s.sae.encode(R.acts);
      EXPECT_GT((codes != 0).sum().item<double>() / R.acts.size(0), 1.0);
      expect_same_codes(codes, p.reference.at(key + ".codes"));
      expect_same_values(s.sae.predict(R.acts, codes), p.reference.at(key + ".x_hat"));
    }
  }
  EXPECT_THROWS_WITH(load_sae((dir / "out") + "/jumprelu"), "is a circuit-tracer transcoder set");
}

// saelab's transcoders of a run, converted to circuit-tracer sets (one per name), load in
// circuit-tracer's load_transcoder_set with saelab's codes and predictions.
TEST(Peers, SaelabTranscodersConvertToCircuitTracerSetsThatItLoads) {
  Rows& R = rows();
  test::TempDir dir;
  const int64_t d = R.acts.size(1), d_sae = 192;
  torch::manual_seed(21);
  std::vector<std::pair<std::string, Sae>> made;
  for (const char* arch : {"standard", "batchtopk"}) {
    for (int64_t l = 0; l < 2; ++l) {
      SaeConfig c = test::config(arch, d, d_sae, 6);
      c.d_out = d;
      c.apply_b_dec_to_input = false;
      c.skip = std::string(arch) == "standard";
      std::map<std::string, torch::Tensor> w;
      for (const auto& [key, shape] : sae_shapes(c)) w[key] = 0.1 * torch::randn(shape);
      w["W_enc"] = torch::randn({d, d_sae}) / std::sqrt(static_cast<double>(d));
      if (w.count("threshold")) w["threshold"] = torch::full({d_sae}, 0.4);
      const std::string in = "blocks." + std::to_string(l) + ".hook_resid_mid", out = "blocks." + std::to_string(l) + ".hook_mlp_out";
      SaeMetadata meta;
      meta.model_name = "brown-gpt";
      meta.hook_name = in;
      meta.hook_name_out = out;
      const std::string folder = dir / ("run/" + in + "__" + out + "/" + arch);
      made.emplace_back(std::string(arch) + "." + std::to_string(l), Sae(c, w, arch));
      save_sae(folder, made.back().second, meta);
    }
  }
  const auto r = test::run_command(test::saelab_binary() + " convert " + (dir / "run") + " " + (dir / "ct") + " --to circuit-tracer 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  run_or_fail(peers("load-circuit-tracer " + R.file + " " + (dir / "back") + " " + (dir / "ct/batchtopk") + " " + (dir / "ct/standard")));
  const PeerOutput p(dir / "back");
  EXPECT_EQ(p.expected["0"]["activation"], nlohmann::json({"jumprelu", "jumprelu"}));  // BatchTopK: its threshold
  EXPECT_EQ(p.expected["1"]["activation"], nlohmann::json({"relu", "relu"}));
  EXPECT_TRUE(p.expected["1"]["skip"].get<bool>());
  EXPECT_EQ(p.expected["1"]["feature_input_hook"], "hook_resid_mid");
  EXPECT_EQ(p.expected["1"]["feature_output_hook"], "hook_mlp_out");
  torch::NoGradGuard no_grad;
  for (const auto& [name, sae] : made) {
    SCOPED_TRACE(name);
    const std::string set = name.rfind("batchtopk", 0) == 0 ? "0" : "1";
    const std::string key = set + "." + name.substr(name.find('.') + 1);
    const torch::Tensor codes = sae.encode(R.acts);
    expect_same_codes(p.reference.at(key + ".codes"), codes);
    expect_same_values(p.reference.at(key + ".x_hat"), sae.predict(R.acts, codes));
  }
  // A TopK transcoder has no circuit-tracer 0.5 form: one line naming it, and no output folder.
  SaeConfig c = test::config("topk", d, d_sae, 6);
  c.d_out = d;
  c.apply_b_dec_to_input = false;
  SaeMetadata meta;
  meta.hook_name = "blocks.0.hook_resid_mid";
  meta.hook_name_out = "blocks.0.hook_mlp_out";
  save_sae(dir / "topk-run/t/topk", Sae(c, 1), meta);
  const auto refused = test::run_command(test::saelab_binary() + " convert " + (dir / "topk-run") + " " + (dir / "ct2") + " --to circuit-tracer 2>&1");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("is topk; circuit-tracer 0.5 reads ReLU and JumpReLU transcoders"), std::string::npos) << refused.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "ct2"));
}

// Gemma Scope's transcoder params.npz, read with no Python (stored and deflated archives, a
// Fortran-order array), against circuit-tracer's load_gemma_scope_transcoder on the same files;
// convert records its hooks and writes a SAELens jumprelu_transcoder.
TEST(Peers, GemmaScopeTranscoderNpzFilesLoadInSaelabAsCircuitTracerReadsThem) {
  Rows& R = rows();
  test::TempDir dir;
  run_or_fail(peers("make-gemma-scope " + R.file + " " + (dir / "out")));
  const PeerOutput p(dir / "out");
  ASSERT_EQ(p.expected.size(), 2u);
  torch::NoGradGuard no_grad;
  for (const auto& [name, e] : p.expected.items()) {
    SCOPED_TRACE(name);
    const LoadedSae s = load_sae((dir / "out") + "/" + e["folder"].get<std::string>());
    EXPECT_EQ(s.sae.config().architecture, Architecture::kJumpReLU);
    EXPECT_FALSE(s.sae.config().apply_b_dec_to_input);
    const torch::Tensor codes = s.sae.encode(R.acts);
    EXPECT_GT((codes != 0).sum().item<double>() / R.acts.size(0), 1.0);
    expect_same_codes(codes, p.reference.at(name + ".codes"));
    expect_same_values(s.sae.predict(R.acts, codes), p.reference.at(name + ".x_hat"));
  }
  const auto r = test::run_command(test::saelab_binary() + " convert " + (dir / "out/deflated") + " " + (dir / "tc") +
                                   " --hook blocks.0.ln2.hook_normalized --hook-out blocks.0.hook_mlp_out 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json cfg = load_json_file(dir / "tc/cfg.json", "cfg");
  EXPECT_EQ(cfg["architecture"], "jumprelu_transcoder");
  EXPECT_EQ(cfg["metadata"]["hook_name_out"], "blocks.0.hook_mlp_out");
  expect_same_codes(load_sae(dir / "tc").sae.encode(R.acts), p.reference.at("deflated.codes"));
  // A damaged archive is one line naming the file.
  const std::string bad = dir / "bad";
  std::filesystem::create_directories(bad);
  std::filesystem::copy_file((dir / "out/stored/params.npz"), bad + "/params.npz");
  std::filesystem::resize_file(bad + "/params.npz", std::filesystem::file_size(bad + "/params.npz") - 100);
  EXPECT_THROWS_WITH(load_sae(bad), "params.npz");
}

}  // namespace
}  // namespace saelab
