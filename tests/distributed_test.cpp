// Beyond one process (the torchrun of the torch saelab's LibTorch comes from, Gloo over 127.0.0.1):
// training and capture, against one-process runs of the same options at one thread.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>

#include "core/activation_store.h"
#include "core/files.h"
#include "core/safetensors.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

using nlohmann::json;

// Activations with sparse structure: rows of 16 dims from 32 random directions.
torch::Tensor synthetic_acts(uint64_t seed, int64_t rows = 2400) {
  torch::Generator gen = at::detail::createCPUGenerator(seed);
  const torch::Tensor dirs = torch::randn({32, 16}, gen);
  const torch::Tensor active = (torch::rand({rows, 32}, gen) < 0.1).to(torch::kFloat32);
  return torch::matmul(active * (torch::rand({rows, 32}, gen) + 0.5), dirs) + 0.3;
}

// A loopback port nobody listens on now (the kernel's choice for port 0).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// docs/distributed.md's launch line: torchrun with --redirects/--tee (Debian's torch 1.13 on Python 3.11
// fails at start without them), the processes' output on the console.
std::string torchrun(int processes, const std::string& args, const std::string& env = "",
                     const std::string& flags = "") {
  return env + " timeout 300 " SAELAB_TORCHRUN " --no_python " + flags + " --nproc_per_node " + std::to_string(processes) +
         " --redirects 2 --tee 2 --master_addr 127.0.0.1 --master_port " + std::to_string(free_port()) + " " +
         test::saelab_binary() + " " + args + " 2>&1";
}

std::string one_process(const std::string& args, const std::string& env = "") {
  return env + " OMP_NUM_THREADS=1 " + test::saelab_binary() + " " + args + " 2>&1";
}

class Distributed : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_activation_store(dir / "acts/blocks.0.input", synthetic_acts(1), "blocks.0.input", 300);
    test::write_activation_store(dir / "acts/blocks.1.input", synthetic_acts(2) * 3, "blocks.1.input", 300);
  }
  // 24 steps of 128 rows; latents die within the run (dead_window 600), so AuxK and the dead
  // counters take part.
  std::string train(const std::string& out, const std::string& architectures, const std::string& extra = "") const {
    return "train --store " + (dir / "acts") + " --out " + (dir / out) + " --architectures " + architectures +
           " --k 4 --l1 0.3 --expansion 2 --steps 24 --batch-size 128 --lr-warmup-steps 4 --l1-warmup-steps 8"
           " --dead-window 600 --init-rows 500 --buffer-shards 2 --checkpoint-every 5 " + extra;
  }
  std::vector<std::string> sae_files(const std::string& out) const {
    std::vector<std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(dir / out)) {
      if (e.is_regular_file() && e.path().parent_path().parent_path().parent_path() == fs::path(dir / out)) {
        files.push_back(fs::relative(e.path(), dir / out).string());
      }
    }
    std::sort(files.begin(), files.end());
    return files;
  }
  void expect_identical(const std::string& a, const std::string& b) const {
    const auto files = sae_files(a);
    ASSERT_FALSE(files.empty());
    EXPECT_EQ(files, sae_files(b));
    for (const auto& f : files) EXPECT_EQ(sha256_file(dir / a + "/" + f), sha256_file(dir / b + "/" + f)) << f;
    EXPECT_EQ(read_file(dir / a + "/metrics.jsonl", "metrics"), read_file(dir / b + "/metrics.jsonl", "metrics"));
  }
  // Weights within rtol of the reference's magnitude (summation order differs across replicas).
  void expect_close(const std::string& a, const std::string& b, double rtol) const {
    const auto files = sae_files(a);
    ASSERT_FALSE(files.empty());
    EXPECT_EQ(files, sae_files(b));
    for (const auto& f : files) {
      if (f.find("sae_weights.safetensors") == std::string::npos) continue;
      const SafetensorsFile x = load_safetensors(dir / a + "/" + f), y = load_safetensors(dir / b + "/" + f);
      for (const auto& [name, t] : x.tensors) {
        const torch::Tensor u = t.to(torch::kFloat64), v = y.tensors.at(name).to(torch::kFloat64);
        const double err = (u - v).abs().max().item<double>(), scale = u.abs().max().item<double>();
        EXPECT_LE(err, rtol * scale + 1e-7) << f << " " << name;
      }
    }
    std::istringstream la(read_file(dir / a + "/metrics.jsonl", "metrics")), lb(read_file(dir / b + "/metrics.jsonl", "metrics"));
    std::string x, y;
    int lines = 0;
    while (std::getline(la, x)) {
      ASSERT_TRUE(static_cast<bool>(std::getline(lb, y)));
      const json p = json::parse(x), q = json::parse(y);
      EXPECT_EQ(p.at("step"), q.at("step"));
      EXPECT_EQ(p.at("sae"), q.at("sae"));
      for (const char* key : {"loss", "mse", "fvu", "l0", "dead_fraction"}) {
        const double u = p.at(key).get<double>(), v = q.at(key).get<double>();
        EXPECT_LE(std::abs(u - v), rtol * std::abs(u) + 1e-6) << x << " vs " << y;
      }
      ++lines;
    }
    EXPECT_FALSE(static_cast<bool>(std::getline(lb, y)));
    EXPECT_GT(lines, 0);
  }
  test::TempDir dir;
};

TEST_F(Distributed, ModuleParallelRanksWriteTheSameSaeFoldersAsOneProcess) {
  const std::string archs = "topk batchtopk standard jumprelu";
  const auto one = test::run_command(one_process(train("one", archs)));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const auto two = test::run_command(torchrun(2, train("two", archs)));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  expect_identical("one", "two");
  const json run = load_json_file(dir / "two/run.json", "run");
  EXPECT_TRUE(run.at("complete").get<bool>());
  EXPECT_EQ(run.at("launch").at("world_size"), 2);
  EXPECT_EQ(run.at("launch").at("data_parallel"), 1);
  // 8 SAEs (2 hooks x 4), hook-major, split in halves: each rank reads one hook only.
  const json groups = run.at("launch").at("module_groups");
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].at("ranks"), json::array({0}));
  EXPECT_EQ(groups[1].at("saes")[0], "blocks.1.input/topk-k4");
  EXPECT_EQ(groups[1].at("saes").size(), 4u);
}

TEST_F(Distributed, DataParallelReplicasEqualOneProcessOnTheWholeBatch) {
  // BatchTopK and Matryoshka select over the whole global batch: the replicas find its threshold
  // together.
  const std::string archs = "topk batchtopk matryoshka_batchtopk standard gated jumprelu";
  const auto one = test::run_command(one_process(train("one", archs)));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const auto two = test::run_command(torchrun(2, train("two", archs, "--data-parallel 2")));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  expect_close("one", "two", 1e-3);
  const json run = load_json_file(dir / "two/run.json", "run");
  EXPECT_EQ(run.at("launch").at("module_groups").size(), 1u);
  EXPECT_EQ(run.at("launch").at("module_groups")[0].at("ranks"), json::array({0, 1}));
}

TEST_F(Distributed, FourRanksCombineTwoModuleGroupsOfTwoReplicas) {
  const std::string archs = "topk standard";
  const auto one = test::run_command(one_process(train("one", archs)));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const auto four = test::run_command(torchrun(4, train("four", archs, "--data-parallel 2")));
  ASSERT_EQ(four.exit_code, 0) << four.output;
  expect_close("one", "four", 1e-3);
  const json groups = load_json_file(dir / "four/run.json", "run").at("launch").at("module_groups");
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[1].at("ranks"), json::array({2, 3}));
  EXPECT_EQ(groups[1].at("saes"), json::array({"blocks.1.input/topk-k4", "blocks.1.input/standard-l1_0.3"}));
}

TEST_F(Distributed, ARunStoppedOnTwoRanksResumesOnOneAndOnThreeWithTheSameResult) {
  const std::string archs = "topk gated jumprelu";
  const auto whole = test::run_command(one_process(train("whole", archs)));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  for (const int then : {1, 3}) {
    const std::string out = "resumed" + std::to_string(then);
    const auto first = test::run_command(torchrun(2, train(out, archs, "--stop-after 7")));
    ASSERT_EQ(first.exit_code, 0) << first.output;
    EXPECT_NE(first.output.find("stopped at step 7 of 24"), std::string::npos) << first.output;
    const auto second = then == 1 ? test::run_command(one_process(train(out, archs)))
                                  : test::run_command(torchrun(3, train(out, archs)));
    ASSERT_EQ(second.exit_code, 0) << second.output;
    EXPECT_NE(second.output.find("resuming from step 7"), std::string::npos) << second.output;
    expect_identical("whole", out);
  }
}

TEST_F(Distributed, AKilledRankStopsTheOthersNamingItAndARerunCompletes) {
  const std::string archs = "topk standard";
  const auto whole = test::run_command(one_process(train("whole", archs)));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  // A hang is bounded by torchrun()'s `timeout 300` (the collective timeout is 600 s): its exit 124
  // is a failure here, whatever the machine's speed; no wall-clock time is asserted.
  const auto killed =
      test::run_command(torchrun(2, train("out", archs, "--data-parallel 2"), "SAELAB_FAULT=train_step:12 SAELAB_FAULT_RANK=1"));
  EXPECT_NE(killed.exit_code, 0);
  EXPECT_NE(killed.exit_code, 124) << "the other rank hung: " << killed.output;
  EXPECT_NE(killed.output.find("saelab: error: "), std::string::npos) << killed.output;
  EXPECT_NE(killed.output.find("rank 0 of 2: "), std::string::npos) << killed.output;
  // Who names the killed rank depends on the launcher: torch 1.13's torchrun leaves rank 0 running
  // until its heartbeat check says "rank 1 stopped"; torch 2.x's stops rank 0 at once (saelab then
  // says it was stopped by SIGTERM) and names the failed rank in its own report.
  const bool saelab_named_it = killed.output.find("rank 1 stopped") != std::string::npos;
  const bool torchrun_named_it = killed.output.find("exitcode: -9) local_rank: 1") != std::string::npos &&
                                 killed.output.find("stopped by SIGTERM from the launcher") != std::string::npos;
  EXPECT_TRUE(saelab_named_it || torchrun_named_it) << killed.output;
  const auto rerun = test::run_command(torchrun(2, train("out", archs, "--data-parallel 2")));
  ASSERT_EQ(rerun.exit_code, 0) << rerun.output;
  EXPECT_NE(rerun.output.find("resuming from step 10"), std::string::npos) << rerun.output;
  expect_close("whole", "out", 1e-3);
}

TEST_F(Distributed, TorchrunMaxRestartsResumesAKilledRunByItself) {
  const std::string archs = "topk standard";
  const auto whole = test::run_command(one_process(train("whole", archs)));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  // Rank 1 dies at step 12 of the first attempt; torchrun restarts both processes, which rejoin
  // under the next attempt's store prefix and resume from the checkpoint of step 10.
  const auto r = test::run_command(torchrun(2, train("out", archs, "--data-parallel 2"),
                                            "SAELAB_FAULT=train_step:12 SAELAB_FAULT_RANK=1 SAELAB_FAULT_ATTEMPT=0",
                                            "--max_restarts 1 --monitor_interval 1"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("failed (exitcode: -9) local_rank: 1"), std::string::npos) << r.output;  // torchrun saw it die
  EXPECT_NE(r.output.find("resuming from step 10"), std::string::npos) << r.output;
  EXPECT_TRUE(load_json_file(dir / "out/run.json", "run").at("complete").get<bool>());
  expect_close("whole", "out", 1e-3);
}

// Every file below `root` (the lock file aside), by relative path, with its SHA-256.
std::map<std::string, std::string> tree_hashes(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file() && e.path().filename() != ".saelab.lock") {
      out[fs::relative(e.path(), root).string()] = sha256_file(e.path());
    }
  }
  return out;
}

// The bundled model over the bundled corpus, two hooks, seven shards per hook.
std::string capture_args(const std::string& out) {
  return "capture --hooks blocks.0.input,blocks.2.input --tokens 6500 --shard-rows 1000 --batch-size 4 --out " + out;
}

TEST_F(Distributed, CaptureOnTwoRanksWritesTheSameStoreAsOneProcess) {
  const auto one = test::run_command(one_process(capture_args(dir / "c1")));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const auto two = test::run_command(torchrun(2, capture_args(dir / "c2")));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("captured 6500 rows at 2 hook point(s)"), std::string::npos) << two.output;
  const auto a = tree_hashes(dir / "c1"), b = tree_hashes(dir / "c2");
  EXPECT_EQ(a.size(), 1u + 2u * 8u);  // capture.json, and per hook a manifest and seven shards
  EXPECT_EQ(a, b);  // shards, provenance, manifests (shard list, norm sum) and capture.json
  EXPECT_FALSE(fs::exists(dir / "c2/blocks.0.hook_resid_pre/.parts"));
}

TEST_F(Distributed, AKilledRankOfACaptureResumesOnOneProcessWithTheSameStore) {
  const auto one = test::run_command(one_process(capture_args(dir / "c1")));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  // Rank 1 owns shards 3..6; it dies right after writing its second.
  const auto killed =
      test::run_command(torchrun(2, capture_args(dir / "c2"), "SAELAB_FAULT=shard_written:2 SAELAB_FAULT_RANK=1"));
  ASSERT_NE(killed.exit_code, 0) << killed.output;
  const json m = json::parse(read_file(dir / "c2/blocks.2.hook_resid_pre/manifest.json", "manifest"));
  EXPECT_FALSE(m.at("complete").get<bool>());
  EXPECT_TRUE(fs::exists(dir / "c2/blocks.2.hook_resid_pre/.parts"));
  EXPECT_THROW(ActivationStore::open(dir / "c2/blocks.2.hook_resid_pre"), c10::Error);
  const auto resumed = test::run_command(one_process(capture_args(dir / "c2")));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(tree_hashes(dir / "c1"), tree_hashes(dir / "c2"));
}

// Two hosts: network namespaces joined by a veth pair (10.231.<n>.1 and .2), one torchrun on each
// with --nnodes 2, module-parallel training. This machine's host name resolves to loopback (as on
// many), which is what Gloo would advertise without GLOO_SOCKET_IFNAME; saelab binds to its address
// on the route to the rendezvous instead. Needs root (ip netns), as CI has.
class TwoHosts {
 public:
  TwoHosts() {
    const std::string id = std::to_string(::getpid() % 100000);
    ns_[0] = "saelab-h0-" + id;
    ns_[1] = "saelab-h1-" + id;
    veth_[0] = "sl" + id + "a";
    veth_[1] = "sl" + id + "b";
    net_ = "10.231." + std::to_string(::getpid() % 250) + ".";
    const std::string setup = "set -e; ip netns add " + ns_[0] + "; ip netns add " + ns_[1] + "; ip link add " + veth_[0] +
                              " netns " + ns_[0] + " type veth peer name " + veth_[1] + " netns " + ns_[1] + ";" +
                              " ip -n " + ns_[0] + " addr add " + net_ + "1/24 dev " + veth_[0] + ";" +
                              " ip -n " + ns_[1] + " addr add " + net_ + "2/24 dev " + veth_[1] + ";" +
                              " ip -n " + ns_[0] + " link set lo up; ip -n " + ns_[1] + " link set lo up;" +
                              " ip -n " + ns_[0] + " link set " + veth_[0] + " up; ip -n " + ns_[1] + " link set " + veth_[1] + " up";
    const auto r = test::run_command("(" + setup + ") 2>&1");
    ok_ = r.exit_code == 0;
    error_ = r.output;
  }
  ~TwoHosts() { test::run_command("ip netns del " + ns_[0] + " 2>/dev/null; ip netns del " + ns_[1] + " 2>/dev/null"); }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  std::string master() const { return net_ + "1"; }
  const std::string& veth(int host) const { return veth_[host]; }
  // One torchrun per host, started together, as a bash script written to `script`; both outputs,
  // each line prefixed by its host, and "exit <host 0> <host 1>" last.
  std::string launch(const std::string& script, const std::string& args, int port, const std::string& env0 = "",
                     const std::string& env1 = "") const {
    std::string text = "#!/usr/bin/env bash\n";
    for (int h = 0; h < 2; ++h) {
      // One thread, as the one-process reference (torchrun sets OMP_NUM_THREADS only for several
      // processes per node).
      text += "(ip netns exec " + ns_[h] + " env OMP_NUM_THREADS=1 " + (h == 0 ? env0 : env1) + " timeout 120 " SAELAB_TORCHRUN
              " --no_python --nnodes 2 --node_rank " + std::to_string(h) + " --nproc_per_node 1 --redirects 2 --tee 2"
              " --master_addr " + master() + " --master_port " + std::to_string(port) + " " + test::saelab_binary() +
              " " + args + " 2>&1 | sed 's/^/[host " + std::to_string(h) + "] /'; exit ${PIPESTATUS[0]}) &\n"
              "p" + std::to_string(h) + "=$!\n";
    }
    text += "wait $p0; a=$?; wait $p1; b=$?\necho \"exit $a $b\"\n[ $a -eq 0 ] && [ $b -eq 0 ]\n";
    test::write_text(script, text);
    return "bash " + script + " 2>&1";
  }

 private:
  std::string ns_[2], veth_[2], net_, error_;
  bool ok_ = false;
};

TEST_F(Distributed, TwoHostsInNetworkNamespacesTrainAndCaptureLikeOneProcessWithAndWithoutGlooSocketIfname) {
  ASSERT_EQ(::geteuid(), 0u) << "this test needs root to make network namespaces (ip netns)";
  TwoHosts hosts;
  ASSERT_TRUE(hosts.ok()) << "cannot make two network namespaces with ip netns: " << hosts.error();
  const std::string archs = "topk standard";
  const auto one = test::run_command(one_process(train("one", archs)));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  // Without GLOO_SOCKET_IFNAME: the address that routes to the rendezvous, not the host name's.
  auto two = test::run_command(hosts.launch(dir / "plain.sh", train("plain", archs), 29400 + ::getpid() % 500));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  expect_identical("one", "plain");
  // With it, each host naming its interface.
  two = test::run_command(hosts.launch(dir / "ifname.sh", train("ifname", archs), 29900 + ::getpid() % 500,
                                       "GLOO_SOCKET_IFNAME=" + hosts.veth(0), "GLOO_SOCKET_IFNAME=" + hosts.veth(1)));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  expect_identical("one", "ifname");
  // Capture across the two hosts writes the store one process writes, byte for byte.
  const auto c1 = test::run_command(one_process(capture_args(dir / "c1")));
  ASSERT_EQ(c1.exit_code, 0) << c1.output;
  const auto c2 = test::run_command(hosts.launch(dir / "capture.sh", capture_args(dir / "c2"), 30400 + ::getpid() % 500));
  ASSERT_EQ(c2.exit_code, 0) << c2.output;
  const auto a = tree_hashes(dir / "c1"), b = tree_hashes(dir / "c2");
  EXPECT_EQ(a.size(), b.size());
  for (const auto& [file, hash] : a) {
    EXPECT_EQ(b.count(file) ? b.at(file) : std::string("missing"), hash) << file;
  }
}

TEST_F(Distributed, OtherCommandsRefuseToRunUnderTorchrun) {
  const auto r = test::run_command(torchrun(2, "eval --saes x --out " + (dir / "c")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("saelab: error: this command runs in one process; under torchrun (WORLD_SIZE=2) only "
                          "'saelab train' and 'saelab capture' are distributed so far"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace saelab
