// saelab's SAE files against the peers' own libraries, run in the pinned environment of
// python/peers.lock (tests/python/peers.py): SAELens 6.54, sparsify 1.3 and dictionary_learning 0.1
// train, save, load and encode; saelab must read what they write and write what they read, with the
// same codes on the same activations (L0 exact; codes and reconstructions within 1e-5 relative).
#include <filesystem>

#include "core/json_options.h"
#include "core/safetensors.h"
#include "tests/analysis_fixture.h"
#include "tests/peers_util.h"

namespace saelab {
namespace {

namespace fs = std::filesystem;
using test::fixture;
using namespace test::peer;

// Each folder a peer trained and saved loads in saelab as the architecture it is, and encodes the
// rows as the peer's own code does.
void expect_loads_as_its_library_computes(const std::string& out, const std::string& hook) {
  const PeerOutput p(out);
  ASSERT_GE(p.expected.size(), 1u);
  torch::NoGradGuard no_grad;
  for (const auto& [name, e] : p.expected.items()) {
    SCOPED_TRACE(name);
    const LoadedSae s = load_sae(out + "/" + e["folder"].get<std::string>());
    EXPECT_EQ(architecture_name(s.sae.config().architecture), e["architecture"].get<std::string>());
    if (!e["k"].is_null()) {
      EXPECT_EQ(s.sae.config().k, e["k"].get<int64_t>());
    }
    if (!hook.empty()) {
      EXPECT_EQ(s.metadata.hook_name, hook);
    }
    const torch::Tensor codes = s.sae.encode(rows().acts);
    expect_same_codes(codes, p.reference.at(name + ".codes"));
    expect_same_values(s.sae.decode(codes), p.reference.at(name + ".x_hat"));
  }
}

// Six SAEs, one per architecture, with unit-less decoder norms and non-zero biases.
std::vector<Sae> one_of_each(int64_t d, int64_t d_sae) {
  std::vector<Sae> out;
  torch::manual_seed(11);
  for (const char* arch : {"standard", "gated", "topk", "batchtopk", "matryoshka_batchtopk", "jumprelu"}) {
    SaeConfig c = test::config(arch, d, d_sae, 6);
    if (c.architecture == Architecture::kMatryoshkaBatchTopK) c.matryoshka_widths = {d_sae / 4, d_sae / 2, d_sae};
    std::map<std::string, torch::Tensor> p;
    for (const auto& [key, shape] : sae_shapes(c)) p[key] = 0.1 * torch::randn(shape);
    p["W_enc"] = torch::randn({d, d_sae}) / std::sqrt(static_cast<double>(d));
    p["W_dec"] = torch::randn({d_sae, d}) * (0.5 + torch::rand({d_sae, 1}));
    if (p.count("threshold")) p["threshold"] = uses_batch_topk(c.architecture) ? torch::full({d_sae}, 0.5)
                                                                                : torch::rand({d_sae});
    out.emplace_back(c, p, arch);
  }
  return out;
}

TEST(Peers, EveryArchitectureSaelabWritesLoadsInSaeLensWithTheSameCodesAndMetadata) {
  Rows& R = rows();
  test::TempDir dir;
  const std::vector<Sae> saes = one_of_each(R.acts.size(1), 512);
  SaeMetadata meta;
  meta.model_name = fixture().lm.info().name;
  meta.hook_name = kHook;
  meta.context_size = 24;
  meta.dataset_path = "brown";
  // Both layouts saelab writes: the default (v6 keys and v5's flat keys side by side) and --to saelens-v5.
  std::string dirs;
  for (const Sae& sae : saes) {
    for (SaeFormat format : {SaeFormat::kSaeLens, SaeFormat::kSaeLensV5}) {
      const std::string path = dir / (std::string(architecture_name(sae.config().architecture)) + "-" + format_name(format));
      save_sae(path, sae, meta, {}, format);
      dirs += " " + path;
    }
  }
  run_or_fail(peers("load-saelens " + R.file + " " + (dir / "out") + dirs));
  const PeerOutput p(dir / "out");
  torch::NoGradGuard no_grad;
  for (size_t j = 0; j < 2 * saes.size(); ++j) {
    const Sae& sae = saes[j / 2];
    const std::string i = std::to_string(j);
    SCOPED_TRACE(p.expected[i]["folder"].get<std::string>());
    const nlohmann::json& e = p.expected[i];
    // BatchTopK and Matryoshka BatchTopK are written as SAELens saves them for inference: JumpReLU.
    EXPECT_EQ(e["architecture"], uses_batch_topk(sae.config().architecture) ? "jumprelu"
                                                                            : architecture_name(sae.config().architecture));
    EXPECT_EQ(e["metadata"]["hook_name"], kHook);
    EXPECT_EQ(e["metadata"]["model_name"], meta.model_name);
    EXPECT_EQ(e["metadata"]["context_size"], 24);
    EXPECT_EQ(e["metadata"]["dataset_path"], "brown");
    const torch::Tensor want = sae.encode(R.acts);
    // The codes are sparse and not all zero: the comparison means something.
    const double l0 = (want != 0).sum().item<double>() / R.acts.size(0);
    EXPECT_GT(l0, 1.0);
    EXPECT_LT(l0, 400.0);
    expect_same_codes(p.reference.at(i + ".codes"), want);
    expect_same_values(p.reference.at(i + ".x_hat"), sae.decode(want));
  }
}

TEST(Peers, SaesTrainedAndSavedBySaeLensLoadInSaelabWithTheirCodes) {
  Rows& R = rows();
  test::TempDir dir;
  run_or_fail(peers("train-saelens " + R.file + " " + (dir / "out") + " --hook " + kHook + " --model-name " +
                    fixture().lm.info().name + " --context-size 24"));
  const PeerOutput p(dir / "out");
  EXPECT_EQ(p.expected.size(), 6u);  // standard, gated, jumprelu, topk, batchtopk, matryoshka_batchtopk
  expect_loads_as_its_library_computes(dir / "out", kHook);
}

TEST(Peers, SaesTrainedAndSavedBySparsifyLoadInSaelabWithTheirCodes) {
  Rows& R = rows();
  test::TempDir dir;
  run_or_fail(peers("train-sparsify " + R.file + " " + (dir / "out")));
  const PeerOutput p(dir / "out");
  EXPECT_EQ(p.expected.size(), 2u);  // one per layer of its model
  expect_loads_as_its_library_computes(dir / "out", "");
  // The whole run folder converts, and saelab's SAELens output loads in SAELens with sparsify's codes.
  run_or_fail(test::saelab_binary() + " convert " + (dir / "out/sparsify/run") + " " + (dir / "saelens") + " 2>&1");
  std::string dirs;
  std::vector<std::string> names;
  for (const auto& [name, e] : p.expected.items()) {
    dirs += " " + (dir / ("saelens/" + e["hookpoint"].get<std::string>()));
    names.push_back(name);
  }
  run_or_fail(peers("load-saelens " + R.file + " " + (dir / "back") + dirs));
  const PeerOutput back(dir / "back");
  for (size_t i = 0; i < names.size(); ++i) {
    SCOPED_TRACE(names[i]);
    EXPECT_EQ(back.expected[std::to_string(i)]["architecture"], "topk");
    expect_same_codes(back.reference.at(std::to_string(i) + ".codes"), p.reference.at(names[i] + ".codes"));
    expect_same_values(back.reference.at(std::to_string(i) + ".x_hat"), p.reference.at(names[i] + ".x_hat"));
  }
}

TEST(Peers, SaesTrainedAndSavedByDictionaryLearningLoadInSaelabWithTheirCodes) {
  Rows& R = rows();
  test::TempDir dir;
  run_or_fail(peers("train-dl " + R.file + " " + (dir / "out")));
  const PeerOutput p(dir / "out");
  EXPECT_EQ(p.expected.size(), 6u);  // standard, gated, topk, batchtopk, jumprelu, matryoshka_batchtopk
  expect_loads_as_its_library_computes(dir / "out", "");
}

// The layouts tests/python/sae_formats.py writes as each library writes them (SAELens v6 and v5 files,
// sparsify runs, dictionary_learning's classes old and new) read in saelab as the real libraries
// read them. SAELens 6.54 loads v5 files too, all but one: a fine-tuning scaling factor, which it
// refuses (saelab reads it with v5's semantics, checked by the replay in sae_formats_test.cpp).
TEST(Peers, TheFormatFixturesReadInSaelabAsTheRealLibrariesReadThem) {
  Rows& R = rows();
  test::TempDir dir;
  Fixture& f = fixture();
  const std::string acts3 = dir / "acts3.safetensors";
  save_safetensors(acts3, {{"acts", R.acts.reshape({f.eval_set.tokens.size(0), -1, f.d()}).contiguous()}});
  run_or_fail(SAELAB_TEST_PYTHON " " SAELAB_SOURCE_DIR "/tests/python/sae_formats.py fixtures " + acts3 + " " +
              (dir / "fx") + " --hook " + kHook + " --model-name m --context-size 24 --sparsify-hookpoint blocks.0 2>&1");
  const nlohmann::json layouts = load_json_file(dir / "fx/expected.json", "fixtures");
  std::map<std::string, std::vector<std::string>> by_library;  // peers.py command -> layout names
  for (const auto& [name, e] : layouts.items()) {
    if (name == "saelens-v5-finetuning-scale") continue;
    const std::string command = name.rfind("saelens", 0) == 0 ? "load-saelens"
                                : name.rfind("sparsify", 0) == 0 ? "load-sparsify" : "load-dl";
    by_library[command].push_back(name);
  }
  ASSERT_EQ(by_library["load-saelens"].size(), 9u);
  ASSERT_EQ(by_library["load-sparsify"].size(), 2u);
  ASSERT_EQ(by_library["load-dl"].size(), 8u);
  torch::NoGradGuard no_grad;
  for (const auto& [command, names] : by_library) {
    std::string dirs;
    for (const auto& name : names) dirs += " " + (dir / ("fx/" + layouts[name]["folder"].get<std::string>()));
    run_or_fail(peers(command + " " + R.file + " " + (dir / command) + dirs));
    const PeerOutput p(dir / command);
    for (size_t i = 0; i < names.size(); ++i) {
      SCOPED_TRACE(names[i]);
      const LoadedSae s = load_sae(dir / ("fx/" + layouts[names[i]]["folder"].get<std::string>()));
      const torch::Tensor codes = s.sae.encode(R.acts);
      expect_same_codes(codes, p.reference.at(std::to_string(i) + ".codes"));
      expect_same_values(s.sae.decode(codes), p.reference.at(std::to_string(i) + ".x_hat"));
    }
  }
  const test::CommandResult refused = test::run_command(
      peers("load-saelens " + R.file + " " + (dir / "refused") + " " +
            (dir / ("fx/" + layouts["saelens-v5-finetuning-scale"]["folder"].get<std::string>()))));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("finetuning_scaling_factor"), std::string::npos) << refused.output;
}

// saelab convert's output loads back in each library that reads it: a SAELens TopK SAE to sparsify,
// dictionary_learning's dictionaries to SAELens; the library's codes are those of the original.
TEST(Peers, ConvertOutputLoadsBackInSaeLensAndSparsifyWithTheOriginalsCodes) {
  Rows& R = rows();
  test::TempDir dir;
  run_or_fail(peers("train-saelens " + R.file + " " + (dir / "sl") + " --steps 10 --hook " + kHook));
  run_or_fail(peers("train-dl " + R.file + " " + (dir / "dl") + " --steps 10"));
  const PeerOutput sl(dir / "sl"), dl(dir / "dl");

  run_or_fail(test::saelab_binary() + " convert " + (dir / "sl/saelens-topk") + " " + (dir / "to-sparsify") +
              " --to sparsify 2>&1");
  run_or_fail(peers("load-sparsify " + R.file + " " + (dir / "sparsify-back") + " " + (dir / "to-sparsify")));
  const PeerOutput sp(dir / "sparsify-back");
  EXPECT_EQ(sp.expected["0"]["k"], 8);
  expect_same_codes(sp.reference.at("0.codes"), sl.reference.at("saelens-topk.codes"));
  expect_same_values(sp.reference.at("0.x_hat"), sl.reference.at("saelens-topk.x_hat"));

  std::string dirs;
  std::vector<std::string> names;
  for (const auto& [name, e] : dl.expected.items()) {
    const std::string to = dir / ("dl-to-saelens-" + name);
    run_or_fail(test::saelab_binary() + " convert " + (dir / ("dl/" + e["folder"].get<std::string>())) + " " + to +
                " --hook " + kHook + " 2>&1");
    dirs += " " + to;
    names.push_back(name);
  }
  run_or_fail(peers("load-saelens " + R.file + " " + (dir / "saelens-back") + dirs));
  const PeerOutput back(dir / "saelens-back");
  for (size_t i = 0; i < names.size(); ++i) {
    SCOPED_TRACE(names[i]);
    expect_same_codes(back.reference.at(std::to_string(i) + ".codes"), dl.reference.at(names[i] + ".codes"));
    expect_same_values(back.reference.at(std::to_string(i) + ".x_hat"), dl.reference.at(names[i] + ".x_hat"));
  }
}

}  // namespace
}  // namespace saelab
