// saelab serve: a live feature browser (study/serve.h) over a study folder or a model, SAEs and a
// feature database, until Ctrl-C.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <filesystem>
#include <thread>

#include "apps/analysis_args.h"
#include "apps/commands.h"
#include "study/serve.h"

namespace saelab {

namespace {

int stop_pipe_write = -1;

void on_stop_signal(int) {
  const char c = 's';
  [[maybe_unused]] const ssize_t n = write(stop_pipe_write, &c, 1);  // async-signal-safe
}

struct ServeCommand {
  std::string study;
  std::string model = default_model_dir();
  std::string saes;
  std::string db;
  bool allow_other_model = false;
  ServeOptions serve;

  template <class V>
  void fields(V& v) {
    v("study", study, "a study folder (saelab demo --out): its saes/, features.sqlite, eval.json, tradeoff.svg, graph.json");
    v("model", model, "model folder with model.json");
    v("saes", saes, "SAE folder(s), comma-separated (default: the study's saes/)");
    v("db", db, "feature database (default: the study's features.sqlite)");
    v("allow_other_model", allow_other_model, "use SAEs whose metadata names another model file");
    serve.fields(v);
  }
};

bool loopback(const std::string& host) { return host == "127.0.0.1" || host == "localhost" || host == "::1"; }

}  // namespace

void register_serve(CLI::App& app) {
  static ServeCommand options;
  CLI::App* cmd = app.add_subcommand("serve", "a live feature browser: activations on any text, features, search, steering (HTTP on 127.0.0.1)");
  static OptionFlags<ServeCommand> flags(cmd, &options);
  cmd->callback([] {
    start_command(/*keep_freed_memory=*/false);
    flags.apply();
    namespace fs = std::filesystem;
    const fs::path study = options.study;
    auto in_study = [&](const char* name) { return options.study.empty() ? std::string() : (study / name).string(); };
    if (!options.study.empty()) {
      TORCH_CHECK(fs::is_directory(study), "--study '", options.study, "' is not a folder (saelab demo --out)");
    }
    const std::string saes = !options.saes.empty() ? options.saes : in_study("saes");
    TORCH_CHECK(!saes.empty(), "give --study or --saes");
    std::vector<std::string> dirs;
    for (const auto& item : split_list(saes)) {
      for (auto& d : find_sae_dirs(item)) dirs.push_back(d);
    }
    ModelSession s = ModelSession::open(options.model, dirs, options.allow_other_model);
    const size_t n_saes = s.saes.size();
    const std::string model_name = s.lm.info().name;
    ServeInputs in;
    in.model = std::move(s);
    in.db_path = !options.db.empty() ? options.db : in_study("features.sqlite");
    if (!options.db.empty()) TORCH_CHECK(fs::exists(options.db), "--db '", options.db, "' does not exist");
    in.eval_json = in_study("eval.json");
    in.tradeoff_svg = in_study("tradeoff.svg");
    in.graph_json = in_study("graph.json");
    in.title = "saelab — " + (options.study.empty() ? model_name : options.study);
    if (!loopback(options.serve.host)) {
      std::fprintf(stderr, "saelab: warning: serving on %s, reachable from other machines; the server has no authentication\n",
                   options.serve.host.c_str());
    }
    // Ctrl-C and SIGTERM stop the server cleanly, whichever thread the signal lands on (the model's
    // thread pool may have started before this point): the handler writes a byte to a pipe, and a
    // waiter thread reading it stops the server.
    int fds[2];
    TORCH_CHECK(pipe(fds) == 0, "serve: cannot create a pipe: ", std::strerror(errno));
    stop_pipe_write = fds[1];
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    FeatureServer server(std::move(in), options.serve);
    const int port = server.bind();
    std::printf("serving %zu SAE(s) at http://%s:%d/ (Ctrl-C stops)\n", n_saes, options.serve.host.c_str(), port);
    std::fflush(stdout);
    std::thread waiter([&] {
      char c = 0;
      while (read(fds[0], &c, 1) < 0 && errno == EINTR) {
      }
      server.stop();
    });
    server.run();
    on_stop_signal(0);  // wakes the waiter when the server stopped by itself
    waiter.join();
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    close(fds[0]);
    close(fds[1]);
    std::printf("stopped\n");
  });
}

}  // namespace saelab
