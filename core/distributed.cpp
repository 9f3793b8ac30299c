#include "core/distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <arpa/inet.h>
#include <csignal>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace saelab {

namespace {

// An integer from the environment, or `fallback` when unset; anything else is an error naming it.
long env_int(const char* name, long fallback, long lo, long hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  TORCH_CHECK(errno == 0 && end != v && *end == '\0' && x >= lo && x <= hi, "environment variable ", name, "='", v,
              "' must be an integer in ", lo, "..", hi);
  return x;
}

std::string env_string(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

// The address of this host's interface that routes to `host` (the rendezvous), found as the
// kernel would choose it: a UDP socket connected there (which sends nothing) and its local name.
// Empty when `host` does not resolve or no route exists. Gloo otherwise binds to the address the
// host name resolves to, which on many machines is 127.0.0.1 or 127.0.1.1: the other nodes are then
// told to connect to their own loopback, and the run fails or hangs while joining. A rendezvous on
// this host routes from this host's own address on that network (or from loopback when it is on
// loopback, a run on one machine).
std::string address_routing_to(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || found == nullptr) return "";
  std::string out;
  for (addrinfo* a = found; a != nullptr && out.empty(); a = a->ai_next) {
    const int fd = socket(a->ai_family, SOCK_DGRAM, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 && getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      char text[INET6_ADDRSTRLEN] = {0};
      const void* addr = local.ss_family == AF_INET
                             ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr)
                             : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr);
      if (inet_ntop(local.ss_family, addr, text, sizeof(text)) != nullptr) out = text;
    }
    close(fd);
  }
  freeaddrinfo(found);
  return out;
}

class SoloCommunicator : public Communicator {
 public:
  explicit SoloCommunicator(int world_rank = 0) { members_ = {world_rank}; }
  void all_reduce_sum(torch::Tensor&, const std::string&) override {}
  void broadcast(torch::Tensor&, int, const std::string&) override {}
  void send(torch::Tensor&, int, const std::string& what) override {
    TORCH_CHECK(false, what, ": a group of one has no other rank to send to");
  }
  void recv(torch::Tensor&, int, const std::string& what) override {
    TORCH_CHECK(false, what, ": a group of one has no other rank to receive from");
  }
  void barrier(const std::string&) override {}
  std::shared_ptr<Communicator> split(int, const std::string&) override { return std::make_shared<SoloCommunicator>(members_.front()); }
};

// The world's store and the heartbeat every process sends to it: when a collective fails, the
// processes whose heartbeat stopped are the ones named.
struct World {
  LaunchInfo info;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Store> beat_store;  // a client of its own: the heartbeat thread's
  std::chrono::milliseconds timeout{600000};
  std::atomic<bool> stop{false};
  std::thread heartbeat;

  ~World() {
    stop = true;
    if (heartbeat.joinable()) heartbeat.join();
  }

  std::string beat_key(int r) const { return "saelab/heartbeat/" + std::to_string(r); }

  // "rank 1 stopped", or what is known when the store itself is gone.
  std::string who_stopped() const {
    try {
      std::vector<int64_t> before(info.world_size), after(info.world_size);
      for (int r = 0; r < info.world_size; ++r) before[r] = store->add(beat_key(r), 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // three heartbeats
      for (int r = 0; r < info.world_size; ++r) after[r] = store->add(beat_key(r), 0);
      std::string dead;
      for (int r = 0; r < info.world_size; ++r) {
        if (r != info.rank && after[r] == before[r]) dead += (dead.empty() ? "" : ", ") + std::to_string(r);
      }
      if (dead.empty()) return "another rank failed (every rank still sends its heartbeat: see their own errors)";
      return (dead.find(',') == std::string::npos ? "rank " : "ranks ") + dead + " stopped";
    } catch (const std::exception&) {
      return "the rendezvous store is gone (rank 0 or the launcher stopped)";
    }
  }
};

World* g_world = nullptr;

[[noreturn]] void lost_peer(const std::string& what, const std::exception& e) {
  std::string detail = e.what();
  const size_t nl = detail.find('\n');
  if (nl != std::string::npos) detail.resize(nl);
  const std::string who = g_world != nullptr ? g_world->who_stopped() : "another rank failed";
  TORCH_CHECK(false, "rank ", g_world != nullptr ? g_world->info.rank : 0, " of ",
              g_world != nullptr ? g_world->info.world_size : 1, ": ", what, " failed: ", who, " (", detail,
              "); rerun the same command to resume from the last checkpoint");
}

class GlooCommunicator : public Communicator {
 public:
  GlooCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, std::vector<int> members,
                   std::chrono::milliseconds timeout, std::string bind_host)
      : store_(std::move(store)), timeout_(timeout), bind_host_(std::move(bind_host)) {
    rank_ = rank;
    size_ = static_cast<int>(members.size());
    members_ = std::move(members);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const std::string iface = env_string("GLOO_SOCKET_IFNAME");
    // The interface GLOO_SOCKET_IFNAME names; else `bind_host` (loopback for a rendezvous on
    // loopback, else this host's address on the route to the rendezvous); else the one the host
    // name resolves to.
    options->devices.push_back(!iface.empty()      ? c10d::ProcessGroupGloo::createDeviceForInterface(iface)
                               : !bind_host_.empty() ? c10d::ProcessGroupGloo::createDeviceForHostname(bind_host_)
                                                    : c10d::ProcessGroupGloo::createDefaultDevice());
    try {
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, rank_, size_, options);
    } catch (const std::exception& e) {
      lost_peer("joining the process group", e);
    }
  }

  void all_reduce_sum(torch::Tensor& t, const std::string& what) override {
    std::vector<at::Tensor> v{t};
    run([&] { return pg_->allreduce(v); }, what);
  }
  void broadcast(torch::Tensor& t, int root, const std::string& what) override {
    std::vector<at::Tensor> v{t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    run([&] { return pg_->broadcast(v, o); }, what);
  }
  void send(torch::Tensor& t, int dst, const std::string& what) override {
    std::vector<at::Tensor> v{t};
    run([&] { return pg_->send(v, dst, 0); }, what);
  }
  void recv(torch::Tensor& t, int src, const std::string& what) override {
    std::vector<at::Tensor> v{t};
    run([&] { return pg_->recv(v, src, 0); }, what);
  }
  void barrier(const std::string& what) override {
    run([&] { return pg_->barrier(); }, what);
  }

  std::shared_ptr<Communicator> split(int color, const std::string& name) override {
    // Every member learns every member's colour, then each colour gets a process group of its own
    // under its own store prefix.
    torch::Tensor colors = torch::zeros({size_}, torch::kInt64);
    colors[rank_] = color;
    all_reduce_sum(colors, "forming the groups '" + name + "'");
    std::vector<int> members;
    int my_rank = 0;
    for (int r = 0; r < size_; ++r) {
      if (colors[r].item<int64_t>() != color) continue;
      if (r == rank_) my_rank = static_cast<int>(members.size());
      members.push_back(members_[r]);
    }
    if (members.size() == 1) {
      return std::make_shared<SoloCommunicator>(members.front());
    }
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("group/" + name + "/" + std::to_string(color), store_);
    return std::make_shared<GlooCommunicator>(prefixed, my_rank, members, timeout_, bind_host_);
  }

 private:
  template <class F>
  void run(F&& start, const std::string& what) {
    try {
      c10::intrusive_ptr<c10d::Work> work = start();
      work->wait(timeout_);
    } catch (const std::exception& e) {
      lost_peer(what, e);
    }
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
  std::chrono::milliseconds timeout_;
  std::string bind_host_;
};

}  // namespace

LaunchInfo launch_info() {
  LaunchInfo info;
  const bool has_rank = std::getenv("RANK") != nullptr, has_world = std::getenv("WORLD_SIZE") != nullptr;
  if (!has_rank && !has_world) return info;
  TORCH_CHECK(has_rank && has_world, "environment variables RANK and WORLD_SIZE go together (torchrun sets both); ",
              has_rank ? "WORLD_SIZE" : "RANK", " is missing");
  info.world_size = static_cast<int>(env_int("WORLD_SIZE", 1, 1, 1 << 20));
  info.rank = static_cast<int>(env_int("RANK", 0, 0, info.world_size - 1));
  info.local_rank = static_cast<int>(env_int("LOCAL_RANK", 0, 0, 1 << 20));
  info.launched = true;
  return info;
}

std::vector<std::string> Communicator::gather_bytes(const std::string& bytes, int root, const std::string& what) {
  std::vector<std::string> out;
  if (size_ == 1) {
    out.push_back(bytes);
    return out;
  }
  torch::Tensor sizes = torch::zeros({size_}, torch::kInt64);
  sizes[rank_] = static_cast<int64_t>(bytes.size());
  all_reduce_sum(sizes, what);
  if (rank_ == root) {
    out.resize(size_);
    for (int r = 0; r < size_; ++r) {
      if (r == root) {
        out[r] = bytes;
        continue;
      }
      const int64_t n = sizes[r].item<int64_t>();
      if (n == 0) continue;
      torch::Tensor buf = torch::empty({n}, torch::kUInt8);
      recv(buf, r, what);
      out[r].assign(reinterpret_cast<const char*>(buf.data_ptr<uint8_t>()), static_cast<size_t>(n));
    }
  } else if (!bytes.empty()) {
    torch::Tensor buf = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
    std::memcpy(buf.data_ptr<uint8_t>(), bytes.data(), bytes.size());
    send(buf, root, what);
  }
  return out;
}

// torchrun 2.x stops every other rank with SIGTERM as soon as one fails, before saelab's own
// heartbeat check can name it; each stopped rank then says so in one line (the launcher's report
// above it names the rank that failed). Only async-signal-safe calls in the handler.
namespace {
char g_sigterm_line[256];
size_t g_sigterm_length = 0;

void say_why_on_sigterm(const LaunchInfo& info) {
  const int n = std::snprintf(g_sigterm_line, sizeof g_sigterm_line,
                              "saelab: error: rank %d of %d: stopped by SIGTERM from the launcher (torchrun stops "
                              "every rank when one fails; its report names that rank)\n",
                              info.rank, info.world_size);
  g_sigterm_length = n > 0 ? std::min(static_cast<size_t>(n), sizeof g_sigterm_line - 1) : 0;
  struct sigaction action {};
  action.sa_handler = [](int) {
    [[maybe_unused]] const ssize_t written = ::write(2, g_sigterm_line, g_sigterm_length);
    ::_exit(128 + SIGTERM);
  };
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGTERM, &action, nullptr);
}
}  // namespace

std::shared_ptr<Communicator> world_communicator() {
  static std::mutex mutex;
  static std::shared_ptr<Communicator> world;
  std::lock_guard<std::mutex> lock(mutex);
  if (world) return world;
  const LaunchInfo info = launch_info();
  if (!info.launched || info.world_size == 1) {
    world = std::make_shared<SoloCommunicator>();
    return world;
  }
  const std::string host = env_string("MASTER_ADDR");
  TORCH_CHECK(!host.empty(), "environment variable MASTER_ADDR is not set (torchrun sets it with RANK and WORLD_SIZE)");
  TORCH_CHECK(std::getenv("MASTER_PORT") != nullptr, "environment variable MASTER_PORT is not set (torchrun sets it)");
  const int port = static_cast<int>(env_int("MASTER_PORT", 0, 1, 65535));
  const bool is_loopback = host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
  // The address Gloo binds to and tells the other ranks: loopback for a rendezvous on this machine's
  // loopback; otherwise, unless GLOO_SOCKET_IFNAME names an interface, this host's address on the
  // route to the rendezvous (not whatever the host name resolves to).
  std::string bind_host = is_loopback ? (host == "::1" ? "::1" : "127.0.0.1") : "";
  if (!is_loopback && env_string("GLOO_SOCKET_IFNAME").empty()) {
    // No route: the rendezvous store below fails first, naming the address.
    bind_host = address_routing_to(host, port);
  }
  static World w;  // lives until exit; its destructor stops the heartbeat
  w.info = info;
  w.timeout = std::chrono::seconds(env_int("SAELAB_DIST_TIMEOUT", 600, 1, 86400));
  // As torch.distributed's env:// rendezvous: under torchrun's agent every worker is a client of
  // the agent's store (one prefix per restart attempt); launched otherwise, rank 0 hosts it.
  const bool agent_store = env_string("TORCHELASTIC_USE_AGENT_STORE") == "True";
  c10d::TCPStoreOptions o;
  o.port = static_cast<uint16_t>(port);
  o.isServer = !agent_store && info.rank == 0;
  o.numWorkers = info.world_size;
  o.waitWorkers = false;
  o.multiTenant = true;
  o.timeout = w.timeout;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(host, o);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "rank ", info.rank, " of ", info.world_size, ": cannot reach the rendezvous store at ", host, ":",
                port, " (", std::string(e.what()).substr(0, 200), ")");
  }
  if (agent_store) {
    store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + env_string("TORCHELASTIC_RESTART_COUNT"), store);
  }
  w.store = store;
  {
    c10d::TCPStoreOptions client = o;
    client.isServer = false;
    c10::intrusive_ptr<c10d::Store> beat = c10::make_intrusive<c10d::TCPStore>(host, client);
    if (agent_store) {
      beat = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + env_string("TORCHELASTIC_RESTART_COUNT"), beat);
    }
    w.beat_store = beat;
  }
  g_world = &w;
  say_why_on_sigterm(info);
  store->add(w.beat_key(info.rank), 1);
  w.heartbeat = std::thread([] {
    while (!g_world->stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      try {
        g_world->beat_store->add(g_world->beat_key(g_world->info.rank), 1);
      } catch (const std::exception&) {
        return;  // the store is gone; the next collective reports it
      }
    }
  });
  std::vector<int> members(info.world_size);
  for (int r = 0; r < info.world_size; ++r) members[r] = r;
  world = std::make_shared<GlooCommunicator>(c10::make_intrusive<c10d::PrefixStore>("saelab", store), info.rank, members,
                                             w.timeout, bind_host);
  return world;
}

void run_together(Communicator& group, const std::string& what, const std::function<void()>& f) {
  std::string error;
  try {
    f();
  } catch (const std::exception& e) {
    if (group.size() == 1) throw;
    error = e.what();
  }
  if (group.size() == 1) return;
  torch::Tensor failed = torch::zeros({group.size()}, torch::kInt64);
  failed[group.rank()] = error.empty() ? 0 : 1;
  group.all_reduce_sum(failed, what);
  if (!error.empty()) {
    const size_t nl = error.find('\n');
    TORCH_CHECK(false, error.substr(0, nl));
  }
  std::string who;
  for (int r = 0; r < group.size(); ++r) {
    if (failed[r].item<int64_t>() != 0) who += (who.empty() ? "" : ", ") + std::to_string(group.members()[r]);
  }
  TORCH_CHECK(who.empty(), "rank ", group.members()[group.rank()], ": ", what, " failed on rank ", who,
              " (its own error says why)");
}

}  // namespace saelab
