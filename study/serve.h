// saelab serve: a live feature browser over a study's files, on cpp-httplib (Debian's
// libcpp-httplib-dev). Pages (one page, study/assets/serve.html + serve.js, the report's style)
// and the JSON API behind them:
//
//   GET  /api/saes                       the SAEs: name, hook, architecture, d_in, d_sae
//   GET  /api/features/{sae}/{id}        one feature from the database (as the report shows it)
//   POST /api/activations {sae, text[, top]}   per token, the top firing features of the SAE (or of
//                                        every SAE of a hook when `sae` names a hook)
//   GET  /api/search?q=&sae=&min_density=&max_density=&min_score=&limit=
//                                        features by explanation text or by a token they fire on
//   POST /api/steer {sae, features, alphas, prompt[, max_new_tokens, temperature, seed, mode]}
//                                        steered and unsteered continuations, several features at once
//   GET  /api/overview                   the study's eval.json (or null)
//
// Errors are {"error": "<one sentence>"} with a 4xx status (503 with Retry-After when the model is
// busy). Limits: the request body, the text (the model's context), the generation length, the
// requests waiting for the model (one model run at a time), the wait.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "analysis/session.h"
#include "core/options.h"

namespace saelab {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int64_t port = 8765;
  int64_t max_body_bytes = 64 * 1024;
  int64_t max_new_tokens = 64;
  int64_t max_waiting = 8;
  double wait_seconds = 20;
  int64_t http_threads = 8;

  template <class V>
  void fields(V& v) {
    v("host", host, "address to listen on (127.0.0.1; any other is reachable from elsewhere: a warning is printed)");
    v("port", port, "port (0: any free one)", in_range(0, 65535));
    v("max_body_bytes", max_body_bytes, "largest request body accepted", at_least(1));
    v("max_new_tokens", max_new_tokens, "longest continuation /api/steer generates", at_least(1));
    v("max_waiting", max_waiting, "model requests that may wait while one runs; more get 503", at_least(0));
    v("wait_seconds", wait_seconds, "longest wait for the model (then 503) and longest generation", at_least(0.001));
    v("http_threads", http_threads, "threads answering HTTP requests", at_least(1));
  }
};

/// What the server shows: the model with its SAEs, and the study's outputs (any may be empty).
struct ServeInputs {
  ModelSession model;        ///< the model and its coders (ModelSession::open)
  std::string db_path;       ///< features.sqlite
  std::string eval_json;     ///< eval.json
  std::string tradeoff_svg;  ///< tradeoff.svg
  std::string graph_json;    ///< graph.json
  std::string title = "saelab";
};

class FeatureServer {
 public:
  FeatureServer(ServeInputs inputs, ServeOptions options);
  ~FeatureServer();
  /// Binds options.host:options.port; returns the port (the one chosen when it was 0). Throws
  /// naming the address when it cannot.
  int bind();
  /// Serves until stop() (from another thread or a signal handler's thread).
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace saelab
