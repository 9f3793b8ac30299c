#include "study/serve.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>

#include <nlohmann/json.hpp>

#include "analysis/feature_db.h"
#include "analysis/feature_queries.h"
#include "analysis/logit_effects.h"
#include "analysis/steering.h"
#include "core/files.h"
#include "core/json_options.h"
#include "models/generate.h"
#include "study/assets/report_assets.h"
#include "study/report.h"

namespace saelab {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A client's mistake: answered with `status` and {"error": message}.
struct HttpError : std::runtime_error {
  HttpError(int s, const std::string& message) : std::runtime_error(message), status(s) {}
  int status;
};

[[noreturn]] void fail(int status, const std::string& message) { throw HttpError(status, message); }

// JSON text with any invalid UTF-8 (a byte-level token's half character) replaced, never a throw.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

bool valid_utf8(const std::string& s) {
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if ((c >> 5) == 0x6) {
      len = 2, cp = c & 0x1F;
    } else if ((c >> 4) == 0xE) {
      len = 3, cp = c & 0x0F;
    } else if ((c >> 3) == 0x1E) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 0x2) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

// A request body through the one bounded JSON parser (core/json_options.h), at most 16 levels deep.
json parse_body(const httplib::Request& req) {
  if (!valid_utf8(req.body)) fail(400, "the request body is not valid UTF-8");
  json j;
  try {
    j = parse_json_text(req.body, "the request body", /*max_depth=*/16);
  } catch (const c10::Error& e) {
    fail(400, e.msg());
  }
  if (!j.is_object()) fail(400, "the request body must be a JSON object");
  return j;
}

template <class T>
T field(const json& body, const char* key, const T& fallback, bool required = false) {
  if (!body.contains(key)) {
    if (required) fail(400, std::string("the request needs '") + key + "'");
    return fallback;
  }
  try {
    return body.at(key).get<T>();
  } catch (const json::exception&) {
    fail(400, std::string("'") + key + "' has the wrong type (" + body.at(key).type_name() + ")");
  }
}

double query_number(const httplib::Request& req, const char* key, double fallback) {
  if (!req.has_param(key)) return fallback;
  const std::string v = req.get_param_value(key);
  try {
    size_t used = 0;
    const double d = std::stod(v, &used);
    if (used != v.size() || !std::isfinite(d)) throw std::invalid_argument(v);
    return d;
  } catch (const std::exception&) {
    fail(400, std::string("'") + key + "' must be a number (got '" + v.substr(0, 40) + "')");
  }
}

// One model run at a time; up to max_waiting wait for it, each at most wait_seconds.
class ModelGate {
 public:
  ModelGate(int64_t max_waiting, double wait_seconds) : max_waiting_(max_waiting), wait_(wait_seconds) {}
  class Turn {
   public:
    explicit Turn(ModelGate& g) : g_(g) {}
    ~Turn() {
      {
        std::lock_guard<std::mutex> l(g_.m_);
        g_.busy_ = false;
      }
      g_.cv_.notify_one();
    }
   private:
    ModelGate& g_;
  };
  std::unique_ptr<Turn> enter() {
    std::unique_lock<std::mutex> l(m_);
    if (busy_ && waiting_ >= max_waiting_) fail(503, "the model is busy (" + std::to_string(waiting_) + " requests waiting); retry shortly");
    ++waiting_;
    const bool ok = cv_.wait_for(l, std::chrono::duration<double>(wait_), [&] { return !busy_; });
    --waiting_;
    if (!ok) fail(503, "the model stayed busy for " + fmt_seconds() + "; retry shortly");
    busy_ = true;
    return std::make_unique<Turn>(*this);
  }

 private:
  std::string fmt_seconds() const {
    std::ostringstream s;
    s << wait_ << " s";
    return s.str();
  }
  std::mutex m_;
  std::condition_variable cv_;
  bool busy_ = false;
  int64_t waiting_ = 0, max_waiting_;
  double wait_;
};

}  // namespace

struct FeatureServer::Impl {
  ServeInputs in;
  ServeOptions opt;
  httplib::Server http;
  ModelGate gate;
  json graph;
  std::unique_ptr<Unembedding> unembedding;
  int port = -1;

  Impl(ServeInputs inputs, ServeOptions options)
      : in(std::move(inputs)), opt(std::move(options)), gate(opt.max_waiting, opt.wait_seconds) {
    TORCH_CHECK(in.model.hooked != nullptr, "serve needs a model");
    TORCH_CHECK(!in.model.saes.empty(), "serve needs at least one SAE");
    if (!in.graph_json.empty() && fs::exists(in.graph_json)) graph = load_json_file(in.graph_json, "feature graph");
    unembedding = std::make_unique<Unembedding>(find_unembedding(in.model.lm));
    routes();
  }

  const AttachedSae& sae_named(const std::string& name) const {
    for (const auto& a : in.model.saes) {
      if (a.name == name) return a;
    }
    fail(404, "unknown SAE '" + name.substr(0, 200) + "' (GET /api/saes lists them)");
  }
  // An SAE by name, or every SAE of a hook.
  std::vector<const AttachedSae*> saes_for(const std::string& name) const {
    std::vector<const AttachedSae*> out;
    for (const auto& a : in.model.saes) {
      if (a.name == name) return {&a};
    }
    // A hook by any of its names: the point, its alias, the name the SAE was trained at.
    for (const auto& a : in.model.saes) {
      try {
        if (in.model.hooked->same_hook(a.hook, name)) out.push_back(&a);
      } catch (const c10::Error&) {
        break;  // not a hook name of this model
      }
    }
    if (out.empty()) fail(404, "unknown SAE or hook '" + name.substr(0, 200) + "' (GET /api/saes lists them)");
    return out;
  }
  void check_feature(const AttachedSae& a, int64_t f) const {
    const int64_t d = a.sae().config().d_sae;
    if (f < 0 || f >= d) {
      fail(404, "feature " + std::to_string(f) + " is outside SAE '" + a.name + "' (d_sae " + std::to_string(d) + ")");
    }
  }
  // The prompt's ids (BOS first), refused when longer than the model's context.
  std::vector<int64_t> ids_of(const std::string& text, int64_t room = 0) const {
    if (!valid_utf8(text)) fail(400, "the text is not valid UTF-8");
    const int64_t n_ctx = in.model.lm.info().context_length;
    if (static_cast<int64_t>(text.size()) > 64 * n_ctx) {
      fail(413, "the text is " + std::to_string(text.size()) + " bytes, far more than the model's context of " +
                    std::to_string(n_ctx) + " tokens");
    }
    std::vector<int64_t> ids = in.model.lm.tokenizer().encode_ids(text);
    ids.insert(ids.begin(), in.model.lm.tokenizer().bos_id());
    if (static_cast<int64_t>(ids.size()) + room > n_ctx) {
      fail(413, "the text is " + std::to_string(ids.size()) + " tokens with BOS" +
                    (room > 0 ? " (+" + std::to_string(room) + " to generate)" : std::string()) +
                    "; the model's context holds " + std::to_string(n_ctx));
    }
    return ids;
  }

  json saes_json() const {
    json out = json::array();
    for (const auto& a : in.model.saes) {
      const SaeConfig& c = a.sae().config();
      json one = {{"name", a.name}, {"hook", a.hook}, {"architecture", architecture_name(c.architecture)},
                  {"d_in", c.d_in}, {"d_sae", c.d_sae}};
      if (a.transcoder()) one["hook_out"] = a.hook_out, one["d_out"] = c.out_width();
      out.push_back(one);
    }
    return out;
  }

  json feature_json(const std::string& sae, int64_t f) const {
    const AttachedSae& a = sae_named(sae);
    check_feature(a, f);
    json j = {{"sae", a.name}, {"hook", a.hook}, {"feature", f}};
    if (a.transcoder()) j["hook_out"] = a.hook_out;
    if (!in.db_path.empty() && fs::exists(in.db_path)) {
      FeatureDb db = FeatureDb::open(in.db_path);
      FeatureRecords records(db);
      j["record"] = records.get(a.name, f, graph);
    } else {
      j["record"] = nullptr;
    }
    return j;
  }

  json activations_json(const json& body) {
    const std::string name = field<std::string>(body, "sae", "", true);
    const std::string text = field<std::string>(body, "text", "", true);
    const int64_t top = field<int64_t>(body, "top", 8);
    if (top < 1 || top > 64) fail(400, "'top' must be between 1 and 64 (got " + std::to_string(top) + ")");
    const std::vector<const AttachedSae*> saes = saes_for(name);
    // One feature's activation at every token (Neuronpedia's view of a feature on your text).
    const int64_t feature = field<int64_t>(body, "feature", -1);
    if (body.contains("feature")) {
      if (saes.size() != 1) fail(400, "'feature' needs 'sae' to name one SAE, not a hook");
      if (feature < 0 || feature >= saes.front()->sae().config().d_sae) {
        fail(404, "feature " + std::to_string(feature) + " is outside " + saes.front()->name + " (0 to " +
                      std::to_string(saes.front()->sae().config().d_sae - 1) + ")");
      }
    }
    const std::vector<int64_t> ids = ids_of(text);
    std::vector<std::string> hooks;
    for (const auto* a : saes) {
      if (std::find(hooks.begin(), hooks.end(), a->hook) == hooks.end()) hooks.push_back(a->hook);
    }
    json tokens = json::array();
    for (int64_t id : ids) tokens.push_back({{"id", id}, {"text", in.model.lm.tokenizer().token_text(id)}});
    json out = {{"tokens", tokens}, {"saes", json::array()}};
    {
      const auto turn = gate.enter();
      torch::NoGradGuard no_grad;
      const ActivationCache cache = in.model.hooked->run_with_cache(torch::tensor(ids, torch::kInt64).unsqueeze(0), hooks);
      for (const auto* a : saes) {
        const torch::Tensor codes = a->sae().encode(cache[a->hook][0].to(torch::kFloat32));  // [T, d_sae]
        const auto [vals, idx] = codes.topk(std::min<int64_t>(top, codes.size(1)), 1);
        json per_token = json::array();
        for (int64_t t = 0; t < codes.size(0); ++t) {
          json fs_ = json::array();
          for (int64_t k = 0; k < vals.size(1); ++k) {
            const double v = vals[t][k].item<double>();
            if (v > 0) fs_.push_back({idx[t][k].item<int64_t>(), v});
          }
          per_token.push_back(fs_);
        }
        out["saes"].push_back({{"sae", a->name}, {"hook", a->hook}, {"features", per_token}, {"explanations", json::object()}});
        if (feature >= 0) {
          const torch::Tensor acts = codes.select(1, feature).to(torch::kFloat64).contiguous();
          out["saes"].back()["feature"] = {{"id", feature},
                                           {"activations", std::vector<double>(acts.data_ptr<double>(), acts.data_ptr<double>() + acts.numel())}};
        }
      }
    }
    // The explanation of every feature listed, from the database (after the model's turn).
    if (!in.db_path.empty() && fs::exists(in.db_path)) {
      FeatureDb db = FeatureDb::open(in.db_path);
      FeatureQueries q(db);
      for (auto& s : out["saes"]) {
        const std::string sae = s.at("sae").get<std::string>();
        json& ex = s["explanations"];
        for (const auto& fs_ : s.at("features")) {
          for (const auto& f : fs_) {
            const std::string key = std::to_string(f[0].get<int64_t>());
            if (ex.contains(key)) continue;
            ex[key] = q.explanation(sae, f[0].get<int64_t>()).value_or(std::string());
          }
        }
      }
    }
    return out;
  }

  json search_json(const httplib::Request& req) const {
    if (in.db_path.empty() || !fs::exists(in.db_path)) fail(404, "this server has no feature database to search");
    const std::string q = req.has_param("q") ? req.get_param_value("q") : "";
    const std::string sae = req.has_param("sae") ? req.get_param_value("sae") : "";
    if (!valid_utf8(q) || !valid_utf8(sae)) fail(400, "the query is not valid UTF-8");
    if (q.size() > 200) fail(400, "the query is longer than 200 bytes");
    if (!sae.empty()) sae_named(sae);
    const double lo = query_number(req, "min_density", 0), hi = query_number(req, "max_density", 1);
    const double min_score = query_number(req, "min_score", -2);
    const double limit = query_number(req, "limit", 50);
    if (limit < 1 || limit > 500) fail(400, "'limit' must be between 1 and 500");
    std::string like;
    for (char c : q) {
      if (c == '%' || c == '_' || c == '\\') like += '\\';
      like += c;
    }
    FeatureDb db = FeatureDb::open(in.db_path);
    // The token forms a word takes: as typed, lower case, capitalised and upper case, each with and
    // without the leading space the tokenizer keeps. Matched through token_features' index on token.
    std::string word = q;
    while (!word.empty() && word.front() == ' ') word.erase(word.begin());
    while (!word.empty() && word.back() == ' ') word.pop_back();
    std::string lower = word, upper = word, capital;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    capital = lower;
    if (!capital.empty()) capital[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(capital[0])));
    auto s = db.prepare(
        "WITH hit AS (SELECT DISTINCT sae, feature FROM token_features WHERE ?6 <> '' AND token IN (?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)) "
        "SELECT f.sae, f.feature, f.density, f.max_activation, e.explanation, e.score, "
        "CASE WHEN ?5 = '' THEN 3 "
        "WHEN e.explanation LIKE ?8 ESCAPE '\\' OR e.explanation LIKE ?9 ESCAPE '\\' THEN 0 "
        "WHEN h.sae IS NOT NULL THEN 1 ELSE 2 END AS match FROM features f "
        "LEFT JOIN explanations e ON e.sae = f.sae AND e.feature = f.feature "
        "LEFT JOIN hit h ON h.sae = f.sae AND h.feature = f.feature "
        "WHERE (?1 = '' OR f.sae = ?1) AND f.density >= ?2 AND f.density <= ?3 AND (?4 <= -2 OR e.score >= ?4) "
        "AND (?5 = '' OR e.explanation LIKE '%' || ?5 || '%' ESCAPE '\\' OR h.sae IS NOT NULL) "
        "ORDER BY match, e.score IS NULL, e.score DESC, f.density DESC LIMIT ?7");
    // Most relevant first: an explanation that names the query as one of its tokens ("the" or
    // " the", quoted as the rules write tokens), then a feature among whose top tokens it is, then
    // an explanation that merely contains it; within each, the best score.
    s.bind(1, sae).bind(2, lo).bind(3, hi).bind(4, min_score).bind(5, like).bind(6, word).bind(7, static_cast<int64_t>(limit));
    s.bind(8, "%\"" + like + "\"%").bind(9, "%\" " + like + "\"%");
    int slot = 10;
    for (const std::string& form : {word, lower, capital, upper}) {
      s.bind(slot, form);
      s.bind(slot + 1, " " + form);
      slot += 2;
    }
    static const char* const kMatch[] = {"its explanation names the token", "it fires on the token",
                                         "its explanation mentions the text", "every feature"};
    json out = json::array();
    while (s.next()) {
      json r = {{"sae", s.column_text(0)}, {"feature", s.column_int(1)}, {"density", s.column_double(2)},
                {"max", s.column_double(3)}, {"match", kMatch[std::clamp<int64_t>(s.column_int(6), 0, 3)]}};
      const std::string e = s.column_text(4);
      if (!e.empty()) {
        r["explanation"] = e;
        r["score"] = s.column_double(5);
      }
      out.push_back(r);
    }
    // How the word tokenizes in running text, after a space: a word of several tokens (" jury" =
    // " j" + "ury") is no one token's features, which the page says. Encoded after a full stop and
    // the stop's own tokens dropped, so that neither SentencePiece's prefix space nor GPT-2's lack
    // of one at the start of a text changes the pieces.
    json tokens = json::array();
    if (!word.empty()) {
      const Tokenizer& tok = in.model.lm.tokenizer();
      const std::vector<int64_t> lead = tok.encode_ids("."), all = tok.encode_ids(". " + word);
      const bool prefix = all.size() > lead.size() && std::equal(lead.begin(), lead.end(), all.begin());
      const std::vector<int64_t> ids = prefix ? std::vector<int64_t>(all.begin() + static_cast<std::ptrdiff_t>(lead.size()), all.end())
                                              : tok.encode_ids(" " + word);
      for (int64_t id : ids) tokens.push_back(display_token(tok, id));
    }
    return {{"query", q}, {"tokens", tokens}, {"results", out}};
  }

  json steer_json(const json& body) {
    const AttachedSae& a = sae_named(field<std::string>(body, "sae", "", true));
    const std::vector<int64_t> features = field<std::vector<int64_t>>(body, "features", {}, true);
    std::vector<double> alphas = field<std::vector<double>>(body, "alphas", {}, true);
    const std::string prompt = field<std::string>(body, "prompt", "", true);
    SteerOptions so;
    so.mode = field<std::string>(body, "mode", "add");
    if (so.mode != "add" && so.mode != "clamp") fail(400, "'mode' must be add or clamp (got '" + so.mode.substr(0, 40) + "')");
    so.generate.max_new_tokens = field<int64_t>(body, "max_new_tokens", 24);
    so.generate.temperature = field<double>(body, "temperature", 0.0);
    so.generate.seed = field<int64_t>(body, "seed", 0);
    if (features.empty() || features.size() > 8) fail(400, "'features' must list 1 to 8 features");
    if (alphas.size() == 1) alphas.resize(features.size(), alphas.front());
    if (alphas.size() != features.size()) fail(400, "'alphas' must hold one strength, or one per feature");
    for (double x : alphas) {
      if (!std::isfinite(x) || std::abs(x) > 1000) fail(400, "every alpha must be a number within ±1000");
    }
    for (int64_t f : features) check_feature(a, f);
    if (so.generate.max_new_tokens < 1 || so.generate.max_new_tokens > opt.max_new_tokens) {
      fail(400, "'max_new_tokens' must be between 1 and " + std::to_string(opt.max_new_tokens));
    }
    if (!(so.generate.temperature >= 0 && so.generate.temperature <= 10)) fail(400, "'temperature' must be between 0 and 10");
    if (so.generate.seed < 0) fail(400, "'seed' must be non-negative");
    const std::vector<int64_t> ids = ids_of(prompt, so.generate.max_new_tokens);
    std::vector<double> max_act(features.size(), 0.0);
    if (so.mode == "clamp") {
      if (in.db_path.empty() || !fs::exists(in.db_path)) fail(400, "clamp mode needs the feature database (max activations)");
      FeatureDb db = FeatureDb::open(in.db_path);
      FeatureQueries q(db);
      for (size_t i = 0; i < features.size(); ++i) {
        max_act[i] = q.max_activation(a.name, features[i]).value_or(0.0);
        if (!(max_act[i] > 0)) fail(400, "feature " + std::to_string(features[i]) + " never fired in the database: clamp needs its max activation");
      }
    }
    for (size_t i = 0; i < features.size(); ++i) steering_hook(a.sae(), features[i], alphas[i], max_act[i], so);  // checks
    const auto turn = gate.enter();
    torch::NoGradGuard no_grad;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(opt.wait_seconds);
    auto check_time = [&] {
      if (std::chrono::steady_clock::now() > deadline) fail(503, "the generation took longer than the server's limit; ask for fewer tokens");
    };
    const std::vector<int64_t> plain = generate(in.model.lm, ids, so.generate, [&](const torch::Tensor& tokens) {
      check_time();
      return in.model.lm.logits_from_output(in.model.hooked->forward(tokens));
    });
    const std::vector<int64_t> steered = generate(in.model.lm, ids, so.generate, [&](const torch::Tensor& tokens) {
      check_time();
      HookScope scope(*in.model.hooked);
      install_steering(scope, a, features, alphas, max_act, so);
      return in.model.lm.logits_from_output(in.model.hooked->forward(tokens));
    });
    return {{"sae", a.name}, {"features", features}, {"alphas", alphas}, {"mode", so.mode}, {"prompt", prompt},
            {"unsteered", generated_text(in.model.lm, ids, plain)}, {"steered", generated_text(in.model.lm, ids, steered)}};
  }

  // Runs a handler: its JSON as the answer, or its error as {"error"} with the right status.
  static void answer(httplib::Response& res, const std::function<json()>& f) {
    try {
      res.set_content(dump(f()), "application/json");
    } catch (const HttpError& e) {
      res.status = e.status;
      if (e.status == 503) res.set_header("Retry-After", "1");
      res.set_content(dump(json{{"error", e.what()}}), "application/json");
    } catch (const c10::Error& e) {
      const std::string msg = e.msg();
      res.status = 400;
      res.set_content(dump(json{{"error", msg.substr(0, msg.find('\n'))}}), "application/json");
    } catch (const std::exception& e) {
      res.status = 400;
      const std::string msg = e.what();
      res.set_content(dump(json{{"error", msg.substr(0, msg.find('\n'))}}), "application/json");
    }
  }

  void routes() {
    http.set_payload_max_length(static_cast<size_t>(opt.max_body_bytes));
    http.set_read_timeout(5, 0);
    http.set_write_timeout(5, 0);
    const size_t threads = static_cast<size_t>(opt.http_threads);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    const std::string page = kServeHtml;
    http.Get("/", [page](const httplib::Request&, httplib::Response& res) { res.set_content(page, "text/html; charset=utf-8"); });
    http.Get("/assets/report.css", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kReportCss, "text/css; charset=utf-8");
    });
    http.Get("/assets/report.js", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kReportJs, "text/javascript; charset=utf-8");
    });
    http.Get("/assets/serve.js", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kServeJs, "text/javascript; charset=utf-8");
    });
    http.Get("/tradeoff.svg", [this](const httplib::Request&, httplib::Response& res) {
      if (in.tradeoff_svg.empty() || !fs::exists(in.tradeoff_svg)) {
        res.status = 404;
        res.set_content(dump(json{{"error", "this study has no trade-off plot"}}), "application/json");
        return;
      }
      res.set_content(read_file(in.tradeoff_svg, "trade-off plot"), "image/svg+xml");
    });
    http.Get("/api/saes", [this](const httplib::Request&, httplib::Response& res) {
      answer(res, [&] { return json{{"title", in.title}, {"saes", saes_json()}, {"has_db", !in.db_path.empty() && fs::exists(in.db_path)}}; });
    });
    http.Get("/api/overview", [this](const httplib::Request&, httplib::Response& res) {
      answer(res, [&] {
        return in.eval_json.empty() || !fs::exists(in.eval_json) ? json(nullptr) : load_json_file(in.eval_json, "eval report");
      });
    });
    http.Get(R"(/api/features/(.+)/(-?\d{1,12}))", [this](const httplib::Request& req, httplib::Response& res) {
      answer(res, [&] { return feature_json(req.matches[1].str(), std::stoll(req.matches[2].str())); });
    });
    http.Post("/api/activations", [this](const httplib::Request& req, httplib::Response& res) {
      answer(res, [&] { return activations_json(parse_body(req)); });
    });
    http.Get("/api/search", [this](const httplib::Request& req, httplib::Response& res) {
      answer(res, [&] { return search_json(req); });
    });
    http.Post("/api/steer", [this](const httplib::Request& req, httplib::Response& res) {
      answer(res, [&] { return steer_json(parse_body(req)); });
    });
    // Anything else, an oversized body or a handler's uncaught error: JSON, never a trace.
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string msg = "no such page or API: " + req.method + " " + req.path.substr(0, 200);
      if (res.status == 413) msg = "the request body is larger than the server accepts";
      if (res.status == 400) msg = "the request is malformed";
      res.set_content(dump(json{{"error", msg}}), "application/json");
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      res.status = 500;
      res.set_content(dump(json{{"error", "the server failed on this request"}}), "application/json");
    });
  }
};

FeatureServer::FeatureServer(ServeInputs inputs, ServeOptions options)
    : impl_(std::make_unique<Impl>(std::move(inputs), std::move(options))) {}

FeatureServer::~FeatureServer() { stop(); }

int FeatureServer::bind() {
  Impl& s = *impl_;
  // SO_REUSEADDR only: a restart may take the port over from connections still closing, but a
  // port another server listens on is refused. (The library's default adds SO_REUSEPORT, with
  // which a second server binds beside the first and the kernel splits requests between them.)
  s.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  if (s.opt.port == 0) {
    s.port = s.http.bind_to_any_port(s.opt.host);
  } else {
    s.port = s.http.bind_to_port(s.opt.host, static_cast<int>(s.opt.port)) ? static_cast<int>(s.opt.port) : -1;
  }
  TORCH_CHECK(s.port > 0, "cannot listen on ", s.opt.host, ":", s.opt.port, ": the port is in use (another server, "
              "perhaps another saelab serve, listens there: stop it or choose another --port), or ", s.opt.host,
              " is not an address of this machine");
  return s.port;
}

void FeatureServer::run() { impl_->http.listen_after_bind(); }

void FeatureServer::stop() {
  if (impl_ && impl_->http.is_running()) impl_->http.stop();
}

}  // namespace saelab
