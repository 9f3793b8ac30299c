// saelab bench-serve: a bounded load test of a running saelab serve: mixed requests from several
// concurrent clients on loopback; latency percentiles per endpoint, whether every answer was
// well-formed JSON, and the server's memory (VmRSS / VmHWM) before and after.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "apps/commands.h"
#include "apps/common.h"
#include "core/files.h"

namespace saelab {

namespace {

struct BenchServeCommand {
  int64_t port = 8765;
  int64_t pid = 0;
  int64_t requests = 200;
  int64_t clients = 8;
  std::string out;

  template <class V>
  void fields(V& v) {
    v("port", port, "port of the saelab serve on 127.0.0.1", in_range(1, 65535));
    v("pid", pid, "the server's process id, for its memory (0: not measured)", at_least(0));
    v("requests", requests, "requests in all", in_range(1, 100000));
    v("clients", clients, "concurrent clients", in_range(1, 64));
    v("out", out, "also write the figures as JSON");
  }
};

// kB of a /proc/<pid>/status field (VmRSS, VmHWM), or -1.
int64_t proc_kb(int64_t pid, const std::string& key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  }
  return -1;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

}  // namespace

void register_bench_serve(CLI::App& app) {
  static BenchServeCommand options;
  CLI::App* cmd = app.add_subcommand("bench-serve", "load-test a running saelab serve: latency percentiles, well-formed answers, memory");
  static OptionFlags<BenchServeCommand> flags(cmd, &options);
  cmd->callback([] {
    start_command();
    flags.apply();
    httplib::Client probe("127.0.0.1", static_cast<int>(options.port));
    probe.set_read_timeout(30, 0);
    const auto listed = probe.Get("/api/saes");
    TORCH_CHECK(listed && listed->status == 200, "no saelab serve answers on 127.0.0.1:", options.port);
    const nlohmann::json listing = nlohmann::json::parse(listed->body);
    const nlohmann::json saes = listing.at("saes");
    TORCH_CHECK(!saes.empty(), "the server lists no SAE");
    const int64_t rss_before = options.pid > 0 ? proc_kb(options.pid, "VmRSS") : -1;
    const std::vector<std::string> texts = {"The jury said that the city was quiet.", "He walked to the store and bought bread.",
                                            "In 1961 the committee voted against the plan.", "She laughed, and the room fell silent."};
    std::mutex m;
    std::map<std::string, std::vector<double>> ms;
    std::atomic<int64_t> next{0}, malformed{0}, busy{0}, failed{0};
    auto client = [&](int64_t c) {
      httplib::Client http("127.0.0.1", static_cast<int>(options.port));
      http.set_read_timeout(60, 0);
      std::mt19937_64 rng(static_cast<uint64_t>(c) * 7919 + 1);
      for (int64_t i = next++; i < options.requests; i = next++) {
        const auto& s = saes[static_cast<size_t>(rng() % saes.size())];
        const std::string sae = s.at("name").get<std::string>();
        const int64_t feature = static_cast<int64_t>(rng() % s.at("d_sae").get<uint64_t>());
        const int kind = static_cast<int>(i % 10);
        std::string name;
        const auto t0 = std::chrono::steady_clock::now();
        auto send = [&]() -> httplib::Result {
          if (kind < 4) {
            name = "/api/activations";
            return http.Post(name.c_str(), nlohmann::json{{"sae", sae}, {"text", texts[rng() % texts.size()]}}.dump(),
                             "application/json");
          }
          if (kind < 8) {
            name = "/api/features";
            return http.Get(("/api/features/" + sae + "/" + std::to_string(feature)).c_str());
          }
          if (kind < 9) {
            name = "/api/search";
            return http.Get("/api/search?q=the&limit=20");
          }
          name = "/api/steer";
          return http.Post(name.c_str(), nlohmann::json{{"sae", sae}, {"features", {feature}}, {"alphas", {8}},
                                                        {"prompt", "The man said"}, {"max_tokens", 8}}.dump(),
                           "application/json");
        };
        const httplib::Result r = send();
        const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (!r) {
          ++failed;
          continue;
        }
        try {
          const nlohmann::json j = nlohmann::json::parse(r->body);
          if (r->status == 503) {
            ++busy;
          } else if (r->status != 200 || j.contains("error")) {
            ++malformed;
          }
        } catch (const std::exception&) {
          ++malformed;
        }
        std::lock_guard<std::mutex> l(m);
        ms[name].push_back(t);
      }
    };
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int64_t c = 0; c < options.clients; ++c) threads.emplace_back(client, c);
    for (auto& t : threads) t.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    nlohmann::json out = {{"server", listing.value("title", "")}, {"saes", saes.size()}, {"requests", options.requests}, {"clients", options.clients}, {"seconds", seconds},
                          {"not_ok", malformed.load()}, {"busy_503", busy.load()}, {"no_answer", failed.load()},
                          {"endpoints", nlohmann::json::object()}};
    for (const auto& [name, v] : ms) {
      out["endpoints"][name] = {{"count", v.size()}, {"p50_ms", percentile(v, 0.5)}, {"p99_ms", percentile(v, 0.99)}};
    }
    if (options.pid > 0) {
      out["server_rss_kb_before"] = rss_before;
      out["server_rss_kb_after"] = proc_kb(options.pid, "VmRSS");
      out["server_peak_rss_kb"] = proc_kb(options.pid, "VmHWM");
    }
    std::printf("%s\n", out.dump(2).c_str());
    if (!options.out.empty()) write_file_atomic(options.out, out.dump(2) + "\n");
    TORCH_CHECK(malformed.load() == 0 && failed.load() == 0, malformed.load(), " answers were not well-formed and ",
                failed.load(), " requests got no answer");
  });
}

}  // namespace saelab
