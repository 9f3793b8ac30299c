// Other libraries' SAE files, read and written, against an independent reference:
// tests/python/sae_formats.py writes one folder per layout as SAELens v6 / v5, sparsify and
// dictionary_learning write them, and computes each code and reconstruction with that library's
// semantics (float64, read from its source); it also replays SAELens v6's and v5's loaders on
// folders saelab writes.
#include <filesystem>

#include "core/json_options.h"
#include "core/safetensors.h"
#include "tests/analysis_fixture.h"

namespace saelab {
namespace {

namespace fs = std::filesystem;
using test::fixture;

constexpr const char* kHook = "blocks.1.hook_resid_pre";

std::string python_script() { return SAELAB_TEST_PYTHON " " SAELAB_SOURCE_DIR "/tests/python/sae_formats.py"; }

void run_or_fail(const std::string& command) {
  const test::CommandResult r = test::run_command(command);
  ASSERT_EQ(r.exit_code, 0) << command << "\n" << r.output;
}

// The layouts, written once per test binary from the bundled model's activations at kHook.
struct Layouts {
  test::TempDir dir;
  torch::Tensor acts;  // [contexts, T, d_model] float32
  nlohmann::json expected;
  std::map<std::string, torch::Tensor> reference;
  Layouts() {
    Fixture& f = fixture();
    acts = f.hooked.run_with_cache(f.eval_set.tokens, {kHook})[kHook].contiguous();
    save_safetensors(dir / "acts.safetensors", {{"acts", acts}});
    const test::CommandResult r = test::run_command(
        python_script() + " fixtures " + (dir / "acts.safetensors") + " " + (dir / "out") + " --hook " + kHook +
        " --model-name " + f.lm.info().name + " --context-size 24 --sparsify-hookpoint blocks.0 2>&1");
    if (r.exit_code != 0) throw std::runtime_error("sae_formats.py fixtures failed:\n" + r.output);
    expected = load_json_file(dir / "out/expected.json", "expected layouts");
    reference = load_safetensors(dir / "out/reference.safetensors").tensors;
  }
  std::string folder(const std::string& name) const { return dir / ("out/" + expected.at(name).at("folder").get<std::string>()); }
};

Layouts& layouts() {
  static Layouts l;
  return l;
}

// max|got − want| within rtol of the magnitude compared.
::testing::AssertionResult same_values(const torch::Tensor& got, const torch::Tensor& want) {
  return test::all_close(got.to(torch::kFloat64), want.to(torch::kFloat64), 2e-5,
                         1e-6 * want.abs().max().item<double>());
}

TEST(SaeFormats, EveryLayoutReadsAsItsOwnLibraryComputesIt) {
  Layouts& L = layouts();
  ASSERT_GE(L.expected.size(), 20u);
  for (const auto& [name, e] : L.expected.items()) {
    SCOPED_TRACE(name);
    const LoadedSae s = load_sae(L.folder(name));
    EXPECT_EQ(architecture_name(s.sae.config().architecture), e["architecture"].get<std::string>());
    if (!e["k"].is_null()) {
      EXPECT_EQ(s.sae.config().k, e["k"].get<int64_t>());
    }
    EXPECT_EQ(s.metadata.hook_name, e["hook_name"].get<std::string>());
    EXPECT_EQ(s.metadata.model_name, e["model_name"].get<std::string>());
    EXPECT_EQ(s.metadata.context_size, e["context_size"].get<int64_t>());
    torch::NoGradGuard no_grad;
    const torch::Tensor codes = s.sae.encode(L.acts);
    const torch::Tensor& want = L.reference.at(name + ".codes");
    // The reference drew weights whose every decision is far from float32 rounding: L0 is exact.
    EXPECT_EQ((codes != 0).sum().item<int64_t>(), (want != 0).sum().item<int64_t>());
    EXPECT_TRUE(same_values(codes, want));
    EXPECT_TRUE(same_values(s.sae.decode(codes), L.reference.at(name + ".x_hat")));
  }
}

// L0, MSE and spliced CE as saelab eval computes them, against the same statistics of the
// reference's reconstruction spliced into the model by this test.
TEST(SaeFormats, EveryLayoutEvaluatesToTheL0MseAndSplicedLossOfItsReference) {
  Layouts& L = layouts();
  Fixture& f = fixture();
  torch::NoGradGuard no_grad;
  // sparsify names the output of blocks.0, which is the input of blocks.1.
  const ActivationCache both = f.hooked.run_with_cache(f.eval_set.tokens, {"blocks.0.output", kHook});
  ASSERT_TRUE(torch::equal(both["blocks.0.output"], both[kHook]));
  const torch::Tensor toks = f.eval_set.tokens;
  const int64_t n = toks.size(0), T = toks.size(1);
  for (const auto& [name, e] : L.expected.items()) {
    SCOPED_TRACE(name);
    std::string dir = L.folder(name);
    if (e["hook_name"].get<std::string>().empty()) {  // dictionary_learning records no hook: give it one
      LoadedSae s = load_sae(dir);
      s.metadata.hook_name = kHook;
      dir = f.dir / ("formats-" + name);
      save_sae(dir, s.sae, s.metadata);
    }
    const std::vector<AttachedSae> attached = attach_saes(f.lm, f.hooked, {dir});
    const EvalReport report = evaluate_saes(f.lm, f.hooked, attached, f.eval_set, EvalOptions{});
    const SaeEvalResult& r = report.saes.front();

    const torch::Tensor x = L.acts.narrow(1, 1, T - 1).to(torch::kFloat64);
    const torch::Tensor x_hat = L.reference.at(name + ".x_hat");  // [n, T, d] float64
    const torch::Tensor codes = L.reference.at(name + ".codes").narrow(1, 1, T - 1);
    const double l0 = (codes != 0).sum().item<double>() / (n * (T - 1));
    const double mse = (x - x_hat.narrow(1, 1, T - 1)).pow(2).sum(-1).mean().item<double>();
    double ce = 0;
    {
      HookScope scope(f.hooked);
      scope.replace(attached.front().hook, [&](const torch::Tensor& a) {
        torch::Tensor out = a.clone();
        out.narrow(1, 1, T - 1).copy_(x_hat.narrow(1, 1, T - 1).to(a.dtype()));
        return out;
      });
      const torch::Tensor logits = f.lm.logits_from_output(f.hooked.forward(toks));
      const torch::Tensor logp = torch::log_softmax(logits.narrow(1, 0, T - 1).to(torch::kFloat64), -1);
      ce = -logp.gather(-1, toks.narrow(1, 1, T - 1).unsqueeze(-1)).mean().item<double>();
    }
    EXPECT_DOUBLE_EQ(r.l0, l0);
    EXPECT_TRUE(test::near_rel(r.mse, mse, 1e-5, 0));
    EXPECT_TRUE(test::near_rel(r.ce_spliced, ce, 1e-5, 0));
  }
}

// Six SAEs with unit-less decoder norms and non-zero biases, one per architecture.
std::vector<Sae> one_of_each(int64_t d, int64_t d_sae) {
  std::vector<Sae> out;
  torch::manual_seed(7);
  for (const char* arch : {"standard", "gated", "topk", "batchtopk", "matryoshka_batchtopk", "jumprelu"}) {
    SaeConfig c = test::config(arch, d, d_sae, 6);
    if (c.architecture == Architecture::kMatryoshkaBatchTopK) c.matryoshka_widths = {d_sae / 4, d_sae / 2, d_sae};
    std::map<std::string, torch::Tensor> p;
    for (const auto& [key, shape] : sae_shapes(c)) p[key] = 0.3 * torch::randn(shape);
    p["W_enc"] = torch::randn({d, d_sae}) / std::sqrt(static_cast<double>(d)) / 4;
    p["W_dec"] = torch::randn({d_sae, d}) * (0.5 + torch::rand({d_sae, 1}));
    if (p.count("threshold")) p["threshold"] = uses_batch_topk(c.architecture) ? torch::full({d_sae}, 0.2)
                                                                                : 0.3 * torch::rand({d_sae});
    if (std::string(arch) == "topk") c.apply_b_dec_to_input = false;  // sparsify folds it into its bias
    out.emplace_back(c, p, arch);
  }
  return out;
}

SaeMetadata metadata() {
  SaeMetadata m;
  m.model_name = "brown-gpt";
  m.hook_name = kHook;
  m.context_size = 24;
  m.dataset_path = "brown";
  m.model_sha256 = "abc123";
  return m;
}

// SAELens v5's loader is replayed (sae-lens 5.x does not install beside the peers' environment);
// SAELens v6 reads the same folders for real in peers_test.cpp.
TEST(SaeFormats, SaelabFoldersLoadInAReplayOfSaeLensV5sLoaderWithTheirMetadata) {
  test::TempDir dir;
  const int64_t d = 32;
  const std::vector<Sae> saes = one_of_each(d, 48);
  const torch::Tensor x = 0.1 * torch::randn({2, 5, d});
  save_safetensors(dir / "x.safetensors", {{"acts", x}});
  std::string dirs;
  std::vector<std::string> written;
  for (const Sae& sae : saes) {
    for (SaeFormat format : {SaeFormat::kSaeLens, SaeFormat::kSaeLensV5}) {
      const std::string path =
          dir / (std::string(architecture_name(sae.config().architecture)) + "-" + format_name(format));
      save_sae(path, sae, metadata(), torch::full({48}, -2.0), format);
      written.push_back(path);
      dirs += " " + path;
    }
  }
  run_or_fail(python_script() + " replay " + (dir / "x.safetensors") + " " + (dir / "replay") + dirs + " 2>&1");
  const nlohmann::json seen = load_json_file(dir / "replay.json", "replay");
  const auto codes = load_safetensors(dir / "replay.safetensors").tensors;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < written.size(); ++i) {
    SCOPED_TRACE(written[i]);
    const Sae& sae = saes[i / 2];
    const torch::Tensor want = sae.encode(x);
    for (const char* version : {"v5"}) {
      SCOPED_TRACE(version);
      const nlohmann::json& v = seen[i][version];
      ASSERT_FALSE(v.contains("refused")) << v.dump();
      // BatchTopK and Matryoshka BatchTopK are written as SAELens writes them for inference:
      // JumpReLU with the threshold.
      const std::string arch = uses_batch_topk(sae.config().architecture) ? "jumprelu"
                                                                         : architecture_name(sae.config().architecture);
      EXPECT_EQ(v["architecture"], arch);
      const std::string key = std::to_string(i) + "." + version;
      EXPECT_TRUE(same_values(codes.at(key + ".codes"), want));
      EXPECT_TRUE(same_values(codes.at(key + ".x_hat"), sae.decode(want)));
      const nlohmann::json& m = v["metadata"];
      EXPECT_EQ(m["hook_name"], kHook);
      EXPECT_EQ(m["model_name"], "brown-gpt");
      EXPECT_EQ(m["context_size"], 24);
      EXPECT_EQ(m["dataset_path"], "brown");
      EXPECT_EQ(m["hook_layer"], 1);
    }
  }
}

TEST(SaeFormats, EveryArchitectureRoundTripsThroughEveryFormatWithTheSameCodes) {
  test::TempDir dir;
  const int64_t d = 24;
  const torch::Tensor x = 0.2 * torch::randn({40, d});
  torch::NoGradGuard no_grad;
  for (const Sae& sae : one_of_each(d, 40)) {
    const std::string arch = architecture_name(sae.config().architecture);
    for (SaeFormat format : {SaeFormat::kSaeLens, SaeFormat::kSaeLensV5, SaeFormat::kSparsify}) {
      SCOPED_TRACE(arch + " via " + format_name(format));
      const std::string path = dir / (arch + "-" + format_name(format) + "/" + "blocks.1");
      if (format == SaeFormat::kSparsify && arch != "topk") {
        EXPECT_THROWS_WITH(save_sae(path, sae, metadata(), {}, format), "sparsify SAEs are TopK SAEs", arch);
        EXPECT_FALSE(fs::exists(path));
        continue;
      }
      save_sae(path, sae, metadata(), {}, format);
      const LoadedSae back = load_sae(path);
      EXPECT_EQ(architecture_name(back.sae.config().architecture), arch);  // batchtopk comes back as batchtopk
      if (uses_k(sae.config().architecture)) {
        EXPECT_EQ(back.sae.config().k, sae.config().k);
      }
      EXPECT_EQ(back.metadata.hook_name, kHook);
      EXPECT_EQ(back.metadata.model_sha256, "abc123");
      const torch::Tensor want = sae.encode(x);
      EXPECT_TRUE(same_values(back.sae.encode(x), want));
      EXPECT_TRUE(same_values(back.sae.decode(back.sae.encode(x)), sae.decode(want)));
    }
    // Half-precision weights: the codes of the rounded weights.
    const std::string half = dir / (arch + "-bf16");
    save_sae(half, sae, metadata(), {}, SaeFormat::kSaeLens, torch::kBFloat16);
    EXPECT_EQ(load_json_file(half + "/cfg.json", "cfg")["dtype"], "bfloat16");
    EXPECT_EQ(load_safetensors(half + "/sae_weights.safetensors").at("W_enc").scalar_type(), torch::kBFloat16);
    EXPECT_NO_THROW(load_sae(half).sae.encode(x));
  }
}

// Damaged or hostile files through `saelab convert`: exit 1, one line naming the file and field.
TEST(SaeFormats, DamagedAndHostileFilesAreOneLineNamingTheFileAndField) {
  Layouts& L = layouts();
  test::TempDir dir;
  struct Case {
    std::string layout, what;
    std::function<void(const std::string&)> damage;
    std::vector<std::string> expect;
  };
  auto edit_cfg = [](const std::string& file, const std::function<void(nlohmann::json&)>& f) {
    nlohmann::json j = load_json_file(file, "cfg");
    f(j);
    test::write_text(file, j.dump());
  };
  auto edit_weights = [](const std::string& file, const std::function<void(std::map<std::string, torch::Tensor>&)>& f) {
    auto t = load_safetensors(file).tensors;
    f(t);
    std::vector<std::pair<std::string, torch::Tensor>> v(t.begin(), t.end());
    save_safetensors(file, v);
  };
  const std::vector<Case> cases = {
      {"saelens-v6-standard", "integer weights",
       [&](const std::string& d) { edit_weights(d + "/sae_weights.safetensors", [](auto& t) { t["W_enc"] = t["W_enc"].to(torch::kInt32); }); },
       {"sae_weights.safetensors", "tensor 'W_enc' has dtype int", "floating point"}},
      {"saelens-v6-standard", "a float d_in",
       [&](const std::string& d) { edit_cfg(d + "/cfg.json", [](auto& j) { j["d_in"] = 256.5; }); },
       {"cfg.json", "key 'd_in' must be an integer"}},
      {"saelens-v5-topk-k8", "a list for activation_fn_kwargs",
       [&](const std::string& d) { edit_cfg(d + "/cfg.json", [](auto& j) { j["activation_fn_kwargs"] = {8}; }); },
       {"cfg.json", "key 'activation_fn_kwargs' must be an object"}},
      {"saelens-v6-gated", "a shape mismatch",
       [&](const std::string& d) { edit_weights(d + "/sae_weights.safetensors", [](auto& t) { t["b_gate"] = torch::zeros({63}); }); },
       {"sae_weights.safetensors", "tensor 'b_gate' has shape [63]"}},
      {"saelens-v6-jumprelu-threshold-0", "NaN weights",
       [&](const std::string& d) {
         edit_weights(d + "/sae_weights.safetensors", [](auto& t) { t["W_dec"][3][4] = std::nan(""); });
       },
       {"sae_weights.safetensors", "tensor 'W_dec' holds NaN"}},
      {"saelens-v6-standard", "a truncated tensor file",
       [&](const std::string& d) { fs::resize_file(d + "/sae_weights.safetensors", fs::file_size(d + "/sae_weights.safetensors") - 100); },
       {"sae_weights.safetensors"}},
      {"saelens-v6-standard", "an extra tensor (SAELens loads strictly)",
       [&](const std::string& d) { edit_weights(d + "/sae_weights.safetensors", [](auto& t) { t["W_skip"] = torch::zeros({2}); }); },
       {"sae_weights.safetensors", "tensor 'W_skip' is not part of a SAELens standard SAE"}},
      {"saelens-v6-standard", "per-token normalisation",
       [&](const std::string& d) { edit_cfg(d + "/cfg.json", [](auto& j) { j["normalize_activations"] = "layer_norm"; }); },
       {"cfg.json", "key 'normalize_activations' is 'layer_norm'", "no weight change can express"}},
      {"saelens-v6-standard", "a transcoder without d_out",
       [&](const std::string& d) { edit_cfg(d + "/cfg.json", [](auto& j) { j["architecture"] = "skip_transcoder"; }); },
       {"cfg.json", "key 'd_out' is required for a transcoder"}},
      {"saelens-v6-standard", "a skip transcoder without its W_skip",
       [&](const std::string& d) {
         edit_cfg(d + "/cfg.json", [](auto& j) { j["architecture"] = "skip_transcoder"; j["d_out"] = j["d_in"]; j["apply_b_dec_to_input"] = false; });
       },
       {"sae_weights.safetensors", "tensor 'W_skip' is missing"}},
      {"saelens-v6-standard", "a transcoder that subtracts b_dec from its input",
       [&](const std::string& d) { edit_cfg(d + "/cfg.json", [](auto& j) { j["architecture"] = "transcoder"; j["d_out"] = j["d_in"]; j["apply_b_dec_to_input"] = true; }); },
       {"cfg.json", "key 'apply_b_dec_to_input' is true on a transcoder"}},
      {"saelens-v5-topk-k8", "tanh-relu",
       [&](const std::string& d) { edit_cfg(d + "/cfg.json", [](auto& j) { j["activation_fn_str"] = "tanh-relu"; }); },
       {"cfg.json", "key 'activation_fn_str' is 'tanh-relu'"}},
      {"saelens-v5-topk-k8", "topk without k",
       [&](const std::string& d) { edit_cfg(d + "/cfg.json", [](auto& j) { j["activation_fn_kwargs"] = nlohmann::json::object(); }); },
       {"cfg.json", "activation_fn_kwargs.k is missing"}},
      {"sparsify-run", "a skip connection without its W_skip",
       [&](const std::string& d) { edit_cfg(d + "/cfg.json", [](auto& j) { j["skip_connection"] = true; }); },
       {"sae.safetensors", "tensor 'W_skip' is missing"}},
      {"sparsify-run", "a skip transcoder without its W_skip",
       [&](const std::string& d) { edit_cfg(d + "/cfg.json", [](auto& j) { j["transcode"] = true; j["skip_connection"] = true; }); },
       {"sae.safetensors", "tensor 'W_skip' is missing"}},
      {"sparsify-run", "a k larger than the dictionary",
       [&](const std::string& d) { edit_cfg(d + "/cfg.json", [](auto& j) { j["k"] = 100000; }); },
       {"cfg.json", "k must be in 1..d_sae"}},
      {"dl-standard", "a truncated ae.pt",
       [&](const std::string& d) { fs::resize_file(d + "/ae.pt", fs::file_size(d + "/ae.pt") / 2); },
       {"ae.pt", "damaged"}},
      {"dl-topk", "an unknown dictionary class",
       [&](const std::string& d) { edit_cfg(d + "/config.json", [](auto& j) { j["trainer"]["dict_class"] = "ListaSAE"; }); },
       {"ae.pt", "dictionary class 'ListaSAE' is not supported"}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(c.what);
    const std::string copy = dir / ("case" + std::to_string(i));
    fs::copy(L.folder(c.layout), copy, fs::copy_options::recursive);
    c.damage(copy);
    const test::CommandResult r =
        test::run_command(test::saelab_binary() + " convert " + copy + " " + (dir / ("out" + std::to_string(i))) + " 2>&1");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    const std::string line = test::last_line(r.output);
    EXPECT_EQ(test::count(r.output, "\n") <= 2, true) << r.output;
    EXPECT_NE(line.find("saelab: error: "), std::string::npos) << line;
    for (const auto& s : c.expect) EXPECT_NE(line.find(s), std::string::npos) << "missing '" << s << "' in: " << line;
    EXPECT_FALSE(fs::exists(dir / ("out" + std::to_string(i))));
  }
}

// A pickle that would run a command when Python loads it is refused unread.
TEST(SaeFormats, APickleThatNamesAnyOtherPythonObjectIsRefusedWithoutRunningIt) {
  test::TempDir dir;
  fs::create_directories(dir / "evil");
  const std::string marker = dir / "ran";
  test::write_text(dir / "make.py",
                   "import os, torch\n"
                   "class Evil:\n"
                   "    def __reduce__(self):\n"
                   "        return (os.system, ('touch " + marker + "',))\n"
                   "torch.save({'W_enc': torch.zeros(2, 2), 'x': Evil()}, '" + (dir / "evil/ae.pt") + "')\n"
                   "os.makedirs('" + (dir / "int") + "')\n"
                   "torch.save({'W_enc': torch.zeros(2, 2), 'n': 3}, '" + (dir / "int/ae.pt") + "')\n"
                   "os.makedirs('" + (dir / "legacy") + "')\n"
                   "torch.save({'W_enc': torch.zeros(2, 2)}, '" + (dir / "legacy/ae.pt") + "', "
                   "_use_new_zipfile_serialization=False)\n");
  run_or_fail(SAELAB_TEST_PYTHON " " + (dir / "make.py") + " 2>&1");
  EXPECT_THROWS_WITH(load_sae(dir / "evil"), "ae.pt", "holds a Python object of type 'posix.system'");
  EXPECT_FALSE(fs::exists(marker));
  EXPECT_THROWS_WITH(load_sae(dir / "int"), "ae.pt", "entry 'n' is the int 3, not a tensor");
  EXPECT_THROWS_WITH(load_sae(dir / "legacy"), "ae.pt", "legacy format of PyTorch before 1.6");
}

TEST(SaeFormats, ConvertWritesEveryFolderOfARunAndTheHookItIsGiven) {
  Layouts& L = layouts();
  test::TempDir dir;
  const std::string bin = test::saelab_binary();
  // A dictionary_learning folder names no hook: convert records one, and eval then runs on it.
  const test::CommandResult r = test::run_command(bin + " convert " + L.folder("dl-gated") + " " + (dir / "gated") +
                                                  " --hook " + kHook + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(dictionary_learning GatedAutoEncoder) -> "), std::string::npos) << r.output;
  EXPECT_EQ(load_sae(dir / "gated").metadata.hook_name, kHook);
  // A sparsify run: every hookpoint folder, to sparsify and back.
  run_or_fail(bin + " convert " + (L.dir / "out/sparsify-run") + " " + (dir / "run-saelens") + " 2>&1");
  run_or_fail(bin + " convert " + (dir / "run-saelens") + " " + (dir / "run-sparsify") + " --to sparsify 2>&1");
  ASSERT_TRUE(fs::exists(dir / "run-sparsify/blocks.0/sae.safetensors"));
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(same_values(load_sae(dir / "run-sparsify/blocks.0").sae.encode(L.acts),
                          L.reference.at("sparsify-run.codes")));
  // An existing output folder is never written into.
  const test::CommandResult again = test::run_command(bin + " convert " + L.folder("dl-gated") + " " + (dir / "gated") + " 2>&1");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(test::last_line(again.output).find("already exists"), std::string::npos) << again.output;
  const std::string eval = bin + " eval --model " SAELAB_SOURCE_DIR "/assets/brown-gpt --saes " + (dir / "gated") +
                           " --contexts 2 --context-length 16 --out " + (dir / "eval.json") + " --plot '' 2>&1";
  const test::CommandResult e = test::run_command(eval);
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_EQ(load_json_file(dir / "eval.json", "eval")["saes"][0]["architecture"], "gated");
}

}  // namespace
}  // namespace saelab
