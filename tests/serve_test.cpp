// saelab serve (study/serve.h): the real command on an ephemeral loopback port over a small study,
// its JSON API and errors through a real HTTP client (cpp-httplib), its limits, and its page in
// headless Chromium.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>

#include "analysis/attached_sae.h"
#include "analysis/feature_db.h"
#include "analysis/steering.h"
#include "core/files.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

using nlohmann::json;

// A study small enough to make quickly: two hooks, a TopK and a standard SAE on each, every stage
// run. It lives in the build folder, so the tests (separate processes under ctest, maybe at once)
// share it: the demo caches its stages, and flock lets one process make it while the others wait.
class Study {
 public:
  static Study& get() {
    static Study s;
    return s;
  }
  std::string out() const { return SAELAB_BINARY_DIR "/serve-study"; }

 private:
  Study() {
    json cfg = load_json_file(SAELAB_SOURCE_DIR "/configs/demo.json", "demo config");
    cfg.erase("quick");
    cfg["capture"] = {{"hooks", {"blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"}}, {"tokens", 8192}, {"batch_size", 16}};
    cfg["train"] = {{"steps", 30}, {"batch_size", 256}, {"checkpoint_every", 50}, {"expansion", 1},
                    {"saes", {{{"architecture", "topk"}, {"k", 8}}, {{"architecture", "standard"}, {"l1", 3.0}}}}};
    cfg["eval"] = {{"contexts", 4}, {"context_length", 32}};
    cfg["top"] = {{"contexts", 16}, {"context_length", 32}, {"top_k", 4}, {"logit_tokens", 4}};
    cfg["explain"] = {{"features", 8}};
    cfg["graph"] = {{"name", "topk-k8"}, {"ablated_features", 2}, {"ablation_contexts", 2}};
    cfg["steer"] = {{"features", 1}, {"layer", 1}, {"alphas", {0, 8}}, {"max_new_tokens", 4}, {"temperature", 0}};
    cfg["report"] = {{"features_per_sae", 4}};
    test::write_text(dir_ / "study.json", cfg.dump());
    const auto r = test::run_command("flock " SAELAB_BINARY_DIR "/serve-study.lock " + test::saelab_binary() +
                                     " --threads 1 demo --config " + (dir_ / "study.json") + " --out " + out() + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }
  test::TempDir dir_;
};

// `saelab serve` in the background; its port from the line it prints.
class Server {
 public:
  explicit Server(const std::string& extra = "", int threads = 1) {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      ::dup2(fds[1], 2);
      ::close(fds[0]);
      const std::string cmd = test::saelab_binary() + " --threads " + std::to_string(threads) + " serve --study " + Study::get().out() + " --port 0 " + extra;
      ::execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = ::fdopen(fds[0], "r");
    char line[4096];
    while (std::fgets(line, sizeof line, out_)) {
      log_ += line;
      const std::string l = line;
      const size_t at = l.find("http://127.0.0.1:");
      if (at != std::string::npos) {
        port_ = std::stoi(l.substr(at + 17));
        break;
      }
    }
    EXPECT_GT(port_, 0) << log_;
  }
  ~Server() {
    if (pid_ > 0) stop();
  }
  // Ctrl-C (or SIGTERM): the server stops cleanly and says so.
  int stop(int sig = SIGINT) {
    ::kill(pid_, sig);
    char line[4096];
    while (std::fgets(line, sizeof line, out_)) log_ += line;
    std::fclose(out_);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& log() const { return log_; }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    return c;
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  std::string log_;
  int port_ = -1;
};

json body_of(const httplib::Result& r) {
  EXPECT_TRUE(r) << "no answer";
  if (!r) return json();
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json") << r->body;
  return json::parse(r->body);
}

// An error answer: the status, and {"error": a sentence containing `part`} and nothing else.
void expect_error(const httplib::Result& r, int status, const std::string& part) {
  ASSERT_TRUE(r) << "no answer (expected " << status << ")";
  EXPECT_EQ(r->status, status) << r->body;
  const json j = json::parse(r->body);
  ASSERT_TRUE(j.is_object() && j.size() == 1 && j.contains("error")) << r->body;
  EXPECT_NE(j.at("error").get<std::string>().find(part), std::string::npos) << r->body;
  EXPECT_EQ(j.at("error").get<std::string>().find('\n'), std::string::npos) << r->body;
}

TEST(Serve, EveryEndpointAnswersFromTheStudyAndTheModel) {
  Server server;
  auto c = server.client();
  const json saes = body_of(c.Get("/api/saes"));
  ASSERT_EQ(saes.at("saes").size(), 4u) << saes.dump();
  EXPECT_TRUE(saes.at("has_db").get<bool>());
  const std::string sae = "blocks.1.hook_resid_pre/topk-k8";
  bool found = false;
  for (const auto& s : saes.at("saes")) found = found || (s.at("name") == sae && s.at("d_sae") == s.at("d_in"));
  EXPECT_TRUE(found) << saes.dump();

  // Activations: per token, the SAE's top features, as the SAE itself encodes the hook's activation.
  const std::string text = "The jury said that the city was quiet.";
  const json acts = body_of(c.Post("/api/activations", json{{"sae", sae}, {"text", text}, {"top", 5}}.dump(), "application/json"));
  LanguageModel lm = LanguageModel::open(SAELAB_SOURCE_DIR "/assets/brown-gpt");
  HookedModel hooked(lm.module(), lm.info().hook_aliases);
  const auto attached = attach_saes(lm, hooked, {Study::get().out() + "/saes/blocks.1.hook_resid_pre/topk-k8"});
  std::vector<int64_t> ids = lm.tokenizer().encode_ids(text);
  ids.insert(ids.begin(), lm.tokenizer().bos_id());
  ASSERT_EQ(acts.at("tokens").size(), ids.size());
  const torch::Tensor x = hooked.run_with_cache(torch::tensor(ids).unsqueeze(0), {"blocks.1.input"})["blocks.1.input"][0];
  const torch::Tensor codes = attached[0].sae().encode(x);
  const json& per_token = acts.at("saes")[0].at("features");
  int64_t fired = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    EXPECT_EQ(acts.at("tokens")[t].at("id"), ids[t]);
    const auto [v, i] = codes[static_cast<int64_t>(t)].topk(5);
    const json& got = per_token[t];
    for (size_t k = 0; k < got.size(); ++k) {
      EXPECT_EQ(got[k][0].get<int64_t>(), i[static_cast<int64_t>(k)].item<int64_t>()) << "token " << t;
      EXPECT_NEAR(got[k][1].get<double>(), v[static_cast<int64_t>(k)].item<double>(), 1e-4 * (1 + v[0].item<double>()));
      ++fired;
    }
    for (int64_t k = static_cast<int64_t>(got.size()); k < 5; ++k) EXPECT_LE(v[k].item<double>(), 0.0) << "token " << t;
  }
  EXPECT_GT(fired, 10);
  // One feature's activation at every token, as the SAE encodes it (fired or not).
  {
    int64_t f = -1;
    for (size_t t = 1; t < per_token.size() && f < 0; ++t) {
      if (!per_token[t].empty()) f = per_token[t][0][0].get<int64_t>();
    }
    ASSERT_GE(f, 0);
    const json one = body_of(c.Post("/api/activations", json{{"sae", sae}, {"text", text}, {"feature", f}}.dump(), "application/json"));
    const json& got = one.at("saes")[0].at("feature");
    EXPECT_EQ(got.at("id"), f);
    ASSERT_EQ(got.at("activations").size(), ids.size());
    const double scale = codes.select(1, f).abs().max().item<double>();
    for (size_t t = 0; t < ids.size(); ++t) {
      EXPECT_NEAR(got.at("activations")[t].get<double>(), codes[static_cast<int64_t>(t)][f].item<double>(), 1e-4 * (1 + scale)) << t;
    }
    expect_error(c.Post("/api/activations", json{{"sae", sae}, {"text", text}, {"feature", 1 << 20}}.dump(), "application/json"),
                 404, "is outside");
    expect_error(c.Post("/api/activations", json{{"sae", "blocks.1.hook_resid_pre"}, {"text", text}, {"feature", 1}}.dump(), "application/json"),
                 400, "needs 'sae' to name one SAE");
  }
  // Every listed feature comes with its explanation, as the database holds it ("" when it has none).
  {
    FeatureDb db = FeatureDb::open(Study::get().out() + "/features.sqlite");
    auto q = db.prepare("SELECT explanation FROM explanations WHERE sae = ? AND feature = ?");
    const json& ex = acts.at("saes")[0].at("explanations");
    int64_t named = 0;
    for (const auto& fs : per_token) {
      for (const auto& f : fs) {
        const std::string key = std::to_string(f[0].get<int64_t>());
        ASSERT_TRUE(ex.contains(key)) << key;
        q.bind(1, sae).bind(2, f[0].get<int64_t>());
        const std::string want = q.next() ? q.column_text(0) : std::string();
        while (q.next()) {
        }
        EXPECT_EQ(ex.at(key), want) << key;
        named += want.empty() ? 0 : 1;
      }
    }
    EXPECT_GT(named, 0);
  }
  // A hook name gives every SAE of the hook.
  const json both = body_of(c.Post("/api/activations", json{{"sae", "blocks.1.hook_resid_pre"}, {"text", text}}.dump(), "application/json"));
  EXPECT_EQ(both.at("saes").size(), 2u);
  EXPECT_EQ(both.at("saes")[0].at("hook"), "blocks.1.hook_resid_pre");  // the name it was captured under
  // ... and so does the hook point it names.
  const json by_point = body_of(c.Post("/api/activations", json{{"sae", "blocks.1.input"}, {"text", text}}.dump(), "application/json"));
  EXPECT_EQ(by_point.at("saes").size(), 2u);

  // A feature's page, from the database.
  const int64_t f = per_token[3][0][0].get<int64_t>();
  const json feature = body_of(c.Get("/api/features/" + sae + "/" + std::to_string(f)));
  EXPECT_EQ(feature.at("feature"), f);
  EXPECT_GT(feature.at("record").at("max").get<double>(), 0) << feature.dump();
  EXPECT_FALSE(feature.at("record").at("top").empty()) << feature.dump();
  EXPECT_EQ(feature.at("record").at("promoted").size(), 4u);

  // Search: by density range, and by a token a feature fires on.
  const json dense = body_of(c.Get("/api/search?min_density=0.01&limit=500"));
  ASSERT_FALSE(dense.at("results").empty());
  for (const auto& r : dense.at("results")) EXPECT_GE(r.at("density").get<double>(), 0.01) << r.dump();
  const json db_token = body_of(c.Get("/api/search?q=the&sae=" + sae));
  for (const auto& r : db_token.at("results")) EXPECT_EQ(r.at("sae"), sae);
  // A word that explanations name as a token: the features whose explanation names it come first.
  std::string word;
  {
    FeatureDb db = FeatureDb::open(Study::get().out() + "/features.sqlite");
    auto q = db.prepare("SELECT explanation FROM explanations WHERE explanation LIKE 'token %{\" %' ORDER BY score DESC");
    while (q.next()) {
      const std::string e = q.column_text(0);
      const size_t b = e.find("{\" ") + 3, end = e.find('"', b);
      const std::string w = e.substr(b, end - b);
      if (word.empty() && w.size() >= 2 && std::all_of(w.begin(), w.end(), [](char ch) { return std::isalpha(static_cast<unsigned char>(ch)); })) word = w;
    }
  }
  ASSERT_FALSE(word.empty()) << "no explanation names a word token";
  // A feature is found by a token it fires on (token_features), typed in upper case and without
  // the token's leading space.
  {
    FeatureDb db = FeatureDb::open(Study::get().out() + "/features.sqlite");
    auto q = db.prepare("SELECT sae, feature, token FROM token_features WHERE token LIKE ' %' AND length(token) >= 4 ORDER BY count DESC");
    std::string t_sae, typed;
    int64_t t_feature = -1;
    while (q.next()) {
      const std::string token = q.column_text(2).substr(1);
      if (t_sae.empty() && std::all_of(token.begin(), token.end(), [](char ch) { return std::isalpha(static_cast<unsigned char>(ch)); })) {
        t_sae = q.column_text(0);
        t_feature = q.column_int(1);
        typed = token;
      }
    }
    ASSERT_FALSE(t_sae.empty()) << "no feature fires on a word token";
    for (char& ch : typed) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    const json found = body_of(c.Get("/api/search?limit=500&sae=" + t_sae + "&q=" + typed));
    bool has = false;
    for (const auto& r : found.at("results")) has = has || r.at("feature").get<int64_t>() == t_feature;
    EXPECT_TRUE(has) << "'" << typed << "' does not find " << t_sae << " #" << t_feature << ": " << found.dump();
  }
  const json by_word = body_of(c.Get("/api/search?limit=500&q=" + word));
  ASSERT_FALSE(by_word.at("results").empty());
  bool naming = true;
  for (const auto& r : by_word.at("results")) {
    const std::string e = r.value("explanation", "");
    const bool names = e.find("\"" + word + "\"") != std::string::npos || e.find("\" " + word + "\"") != std::string::npos;
    EXPECT_TRUE(naming || !names) << "'" << word << "': " << r.dump() << " comes after a feature not naming it";
    naming = naming && names;
  }
  EXPECT_TRUE(by_word.at("results")[0].at("explanation").get<std::string>().find(word) != std::string::npos) << by_word.dump();
  // Each result says why it matched, in the order they are ranked.
  EXPECT_EQ(by_word.at("results")[0].at("match"), "its explanation names the token") << by_word.dump();
  // The word's tokens as the model's tokenizer cuts it after a space: one for a word token, and a
  // word the vocabulary lacks comes back as its pieces (so the page can say why no token matches).
  EXPECT_EQ(by_word.at("tokens"), json::array({" " + word})) << by_word.dump();
  const json pieces = body_of(c.Get("/api/search?q=zyxwvqj"));
  EXPECT_GT(pieces.at("tokens").size(), 1u) << pieces.dump();
  std::string joined;
  for (const auto& t : pieces.at("tokens")) joined += t.get<std::string>();
  EXPECT_EQ(joined, " zyxwvqj") << pieces.dump();

  // Steering: α 0 is the unsteered model; a large α changes the continuation; two features at once.
  const json zero = body_of(c.Post("/api/steer", json{{"sae", sae}, {"features", {f}}, {"alphas", {0}}, {"prompt", "The man said that"}, {"max_new_tokens", 8}}.dump(), "application/json"));
  EXPECT_EQ(zero.at("steered"), zero.at("unsteered"));
  EXPECT_EQ(zero.at("unsteered").get<std::string>().rfind("The man said that", 0), 0u) << zero.dump();
  const json big = body_of(c.Post("/api/steer", json{{"sae", sae}, {"features", {f, per_token[4][0][0]}}, {"alphas", {60, 60}}, {"prompt", "The man said that"}, {"max_new_tokens", 8}}.dump(), "application/json"));
  EXPECT_NE(big.at("steered"), big.at("unsteered"));
  EXPECT_EQ(big.at("unsteered"), zero.at("unsteered"));  // greedy: the same unsteered text
  // Clamp: the feature's activation set to c times its max activation, which the server reads from
  // the database; the continuation `steer` gives in clamp mode with the record's max.
  const json clamp = body_of(c.Post("/api/steer", json{{"sae", sae}, {"features", {f}}, {"alphas", {12}}, {"mode", "clamp"}, {"prompt", "The man said that"}, {"max_new_tokens", 8}}.dump(), "application/json"));
  SteerOptions so;
  so.mode = "clamp";
  so.alphas = {12.0};
  so.generate.max_new_tokens = 8;
  so.generate.temperature = 0;
  const SteerResult ref = steer(lm, hooked, attached[0], f, "The man said that", find_unembedding(lm), so, feature.at("record").at("max").get<double>());
  EXPECT_EQ(clamp.at("mode"), "clamp");
  EXPECT_EQ(clamp.at("unsteered"), ref.unsteered.text);
  EXPECT_EQ(clamp.at("steered"), ref.samples.at(0).text);
  EXPECT_NE(clamp.at("steered"), clamp.at("unsteered")) << clamp.dump();

  // The page and its assets.
  const auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_NE(page->body.find("/assets/serve.js"), std::string::npos);
  EXPECT_EQ(c.Get("/assets/serve.js")->status, 200);
  EXPECT_EQ(c.Get("/tradeoff.svg")->get_header_value("Content-Type"), "image/svg+xml");
  EXPECT_FALSE(body_of(c.Get("/api/overview")).at("saes").empty());

  EXPECT_EQ(server.stop(), 0) << server.log();
  EXPECT_NE(server.log().find("stopped"), std::string::npos) << server.log();
}

TEST(Serve, BadAndHostileRequestsGetOneSentenceAndTheServerKeepsServing) {
  Server server("--max-body-bytes 4096");
  auto c = server.client();
  const std::string sae = "blocks.1.hook_resid_pre/topk-k8";
  auto post = [&](const std::string& path, const std::string& body) { return c.Post(path.c_str(), body, "application/json"); };
  expect_error(post("/api/activations", json{{"sae", "nope"}, {"text", "hi"}}.dump()), 404, "unknown SAE or hook 'nope'");
  expect_error(c.Get("/api/features/nope/3"), 404, "unknown SAE 'nope'");
  expect_error(c.Get("/api/features/" + sae + "/99999"), 404, "feature 99999 is outside SAE 'blocks.1.hook_resid_pre/topk-k8' (d_sae");
  std::string long_text;
  for (int i = 0; i < 150; ++i) long_text += " the";
  expect_error(post("/api/activations", json{{"sae", sae}, {"text", long_text}}.dump()), 413, "the model's context holds 128");
  expect_error(post("/api/activations", "{\"sae\": "), 400, "not valid JSON");
  expect_error(post("/api/activations", "[1, 2]"), 400, "must be a JSON object");
  expect_error(post("/api/activations", json{{"sae", 3}, {"text", "x"}}.dump()), 400, "'sae' has the wrong type");
  expect_error(post("/api/activations", json{{"sae", sae}}.dump()), 400, "the request needs 'text'");
  expect_error(post("/api/activations", std::string(8000, ' ') + "{}"), 413, "larger than the server accepts");
  expect_error(post("/api/activations", std::string(40, '[') + std::string(40, ']')), 400, "nested deeper than 16");
  expect_error(post("/api/activations", "{\"sae\": \"" + sae + "\", \"text\": \"caf\xC3\"}"), 400, "UTF-8");
  expect_error(c.Get("/api/search?q=%C3%28"), 400, "not valid UTF-8");
  expect_error(c.Get("/api/search?min_density=lots"), 400, "'min_density' must be a number (got 'lots')");
  expect_error(post("/api/steer", json{{"sae", sae}, {"features", {1}}, {"alphas", {8}}, {"prompt", "Hi"}, {"max_new_tokens", 5000}}.dump()),
               400, "'max_new_tokens' must be between 1 and 64");
  expect_error(post("/api/steer", json{{"sae", sae}, {"features", {1, 2}}, {"alphas", {8, 8, 8}}, {"prompt", "Hi"}}.dump()), 400,
               "one strength, or one per feature");
  expect_error(post("/api/steer", json{{"sae", sae}, {"features", {-1}}, {"alphas", {8}}, {"prompt", "Hi"}}.dump()), 404, "feature -1 is outside");
  expect_error(post("/api/steer", json{{"sae", sae}, {"features", {1}}, {"alphas", {8}}, {"prompt", "Hi"}, {"mode", "push"}}.dump()), 400,
               "'mode' must be add or clamp (got 'push')");
  for (const char* path : {"/../../etc/passwd", "/assets/../../../etc/passwd", "/assets/%2e%2e/%2e%2e/etc/passwd", "/nothing"}) {
    const auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_GE(r->status, 400) << path;
    EXPECT_LT(r->status, 500) << path;
    EXPECT_EQ(r->body.find("root:"), std::string::npos) << path;
  }
  // Still serving.
  EXPECT_EQ(body_of(c.Get("/api/saes")).at("saes").size(), 4u);
  EXPECT_EQ(server.stop(), 0) << server.log();
}

// A second server on a port one already listens on is refused in one line, whatever address it
// names, and the first keeps every request.
TEST(Serve, ASecondServerOnABusyPortIsRefusedInOneLine) {
  Server first;
  for (const char* host : {"127.0.0.1", "0.0.0.0"}) {
    const auto r = test::run_command("timeout 60 " + test::saelab_binary() + " --threads 1 serve --study " +
                                     Study::get().out() + " --host " + host + " --port " + std::to_string(first.port()) +
                                     " 2>&1");
    EXPECT_EQ(r.exit_code, 1) << host << ": " << r.output;
    EXPECT_EQ(test::count(r.output, "error"), 1) << r.output;
    EXPECT_NE(test::last_line(r.output).find("the port is in use"), std::string::npos) << r.output;
    EXPECT_NE(test::last_line(r.output).find(":" + std::to_string(first.port())), std::string::npos) << r.output;
  }
  auto c = first.client();
  for (int i = 0; i < 8; ++i) EXPECT_EQ(body_of(c.Get("/api/saes")).at("saes").size(), 4u);
  EXPECT_EQ(first.stop(), 0) << first.log();
}

// `top --db` onto an existing database is refused before any work, the database untouched;
// --force replaces it.
TEST(TopCommand, AnExistingDatabaseIsRefusedUnlessForced) {
  test::TempDir dir;
  const std::string db = dir / "features.sqlite";
  const std::string top = test::saelab_binary() + " --threads 1 top --saes " + Study::get().out() +
                          "/saes/blocks.1.hook_resid_pre --contexts 4 --context-length 32 --no-explain --db " + db;
  const auto first = test::run_command(top + " --top-k 2 2>&1");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const std::string before = sha256_file(db);
  const auto again = test::run_command(top + " --top-k 2 2>&1");
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_EQ(test::count(again.output, "saelab: error:"), 1) << again.output;
  EXPECT_NE(test::last_line(again.output).find("saelab: error: feature database"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("feature database '" + db + "' exists (2 SAEs: blocks.1.hook_resid_pre/standard-l1_3, "
                              "blocks.1.hook_resid_pre/topk-k8): --force replaces it"), std::string::npos) << again.output;
  EXPECT_EQ(again.output.find("top activations"), std::string::npos) << "refused before the pass: " << again.output;
  EXPECT_EQ(sha256_file(db), before);
  const auto forced = test::run_command(top + " --force --top-k 3 2>&1");
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_NE(sha256_file(db), before);
}

TEST(Serve, ABusyModelAnswers503WithRetryAfterAndNothingElseFails) {
  // Two threads: the model's thread pool exists before the server installs its signal handling.
  Server server("--max-waiting 0 --wait-seconds 5", 2);
  const std::string body = json{{"sae", "blocks.1.hook_resid_pre/topk-k8"}, {"features", {1}}, {"alphas", {8}}, {"prompt", "The"},
                                {"max_new_tokens", 64}, {"temperature", 1.0}}.dump();
  std::atomic<int> ok{0}, busy{0}, other{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 6; ++i) {
    clients.emplace_back([&] {
      auto c = server.client();
      const auto r = c.Post("/api/steer", body, "application/json");
      if (r && r->status == 200) {
        ++ok;
      } else if (r && r->status == 503 && r->get_header_value("Retry-After") == "1" &&
                 json::parse(r->body).at("error").get<std::string>().find("the model is busy") != std::string::npos) {
        ++busy;
      } else {
        ++other;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_GE(ok.load(), 1);
  EXPECT_GE(busy.load(), 1);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(server.stop(SIGTERM), 0) << server.log();
  EXPECT_NE(server.log().find("stopped"), std::string::npos) << server.log();
}

TEST(Serve, TwoHundredMixedRequestsFromEightClientsAllGetWellFormedAnswersInBoundedMemory) {
  Server server;
  test::TempDir dir;
  const auto r = test::run_command(test::saelab_binary() + " bench-serve --port " + std::to_string(server.port()) +
                                   " --pid " + std::to_string(server.pid()) + " --requests 200 --clients 8 --out " +
                                   (dir / "load.json") + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json load = load_json_file(dir / "load.json", "load test");
  int64_t answered = 0;
  for (const auto& [name, e] : load.at("endpoints").items()) {
    answered += e.at("count").get<int64_t>();
    EXPECT_LE(e.at("p50_ms").get<double>(), e.at("p99_ms").get<double>()) << name;
  }
  EXPECT_EQ(answered, 200);
  EXPECT_EQ(load.at("not_ok"), 0);
  EXPECT_EQ(load.at("no_answer"), 0);
  EXPECT_GT(load.at("endpoints").at("/api/activations").at("count").get<int64_t>(), 50);
  // Memory: what 200 requests add to the server stays far below what it holds to start with.
  const double before = load.at("server_rss_kb_before").get<double>(), after = load.at("server_rss_kb_after").get<double>();
  EXPECT_GT(before, 0);
  EXPECT_LT(after, before + 200 * 1024) << "the server grew from " << before << " kB to " << after << " kB";
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST(Serve, ThePageShowsActivationsAFeatureAndSteeringInChromium) {
  Server server;
  const std::string sae = "blocks.1.hook_resid_pre%2Ftopk-k8";
  const std::string acts_url = server.url("/#/activations?sae=" + sae + "&text=The%20jury%20said%20that%20the%20city%20was%20quiet.");
  const std::string dom = test::chromium_dom(acts_url);
  EXPECT_NE(test::body_tag(dom).find("data-activations=\"yes\""), std::string::npos) << test::body_tag(dom);
  EXPECT_EQ(test::body_tag(dom).find("data-errors"), std::string::npos) << test::body_tag(dom);
  EXPECT_NE(dom.find("class=\"tok sel\""), std::string::npos);   // the strongest token selected
  EXPECT_NE(dom.find("href=\"#/feature/blocks.1.hook_resid_pre%2Ftopk-k8/"), std::string::npos);  // its features, linked
  EXPECT_GE(test::count(dom, "class=\"tok"), 9);
  test::chromium_screenshot(acts_url, SAELAB_BINARY_DIR "/serve-activations.png");

  const std::string feature = test::chromium_dom(server.url("/#/feature/" + sae + "/0"));
  EXPECT_NE(test::body_tag(feature).find("data-rendered=\"yes\""), std::string::npos);
  EXPECT_EQ(test::body_tag(feature).find("data-errors"), std::string::npos) << test::body_tag(feature);
  EXPECT_NE(feature.find("feature 0"), std::string::npos);
  EXPECT_NE(feature.find("promoted tokens"), std::string::npos);
  EXPECT_NE(feature.find("Quantile samples"), std::string::npos);  // as in the report (report.js's featureBody)
  EXPECT_NE(feature.find("id=\"quantiles\""), std::string::npos);

  const std::string steer = test::chromium_dom(server.url("/#/steer?sae=" + sae + "&features=0,1&alphas=40&run=1"));
  EXPECT_NE(test::body_tag(steer).find("data-steered=\"yes\""), std::string::npos) << test::body_tag(steer);
  EXPECT_NE(steer.find("id=\"unsteered\""), std::string::npos);
  EXPECT_NE(steer.find("id=\"steered\""), std::string::npos);
  EXPECT_NE(steer.find("<option value=\"clamp\">"), std::string::npos);  // the clamp mode is offered

  // Hostile text comes back as tokens and is shown as text.
  const std::string hostile = test::chromium_dom(server.url(
      "/#/activations?sae=" + sae + "&text=%3Cimg%20src%3Dx%20onerror%3D%22document.body.setAttribute('data-pwned'%2C1)%22%3E"));
  EXPECT_NE(test::body_tag(hostile).find("data-activations=\"yes\""), std::string::npos) << test::body_tag(hostile);
  EXPECT_EQ(test::body_tag(hostile).find("data-pwned"), std::string::npos) << "hostile text ran as code";
  EXPECT_EQ(hostile.find("<img"), std::string::npos);
  EXPECT_NE(hostile.find("&lt;img src=x onerror="), std::string::npos);  // in the text box
}

}  // namespace
}  // namespace saelab
