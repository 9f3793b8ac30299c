// Processes launched together by torchrun, on torch.distributed's c10d (Gloo on the CPU).
//
// saelab reads the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT, and TORCHELASTIC_USE_AGENT_STORE / TORCHELASTIC_RESTART_COUNT, so that it joins the
// rendezvous store torchrun's agent hosts, as torch.distributed.init_process_group does). Started
// without RANK and WORLD_SIZE it is a group of one, and every collective is a no-op.
//
// Example (2 processes on this machine; several machines: the same on each node with
// --nnodes N --node_rank R --master_addr HOST, or --rdzv_endpoint):
//   torchrun --no_python --nproc_per_node 2 --redirects 2 --tee 2 build/saelab train ...
//
// A collective that fails because another process stopped (or that waits longer than
// SAELAB_DIST_TIMEOUT seconds, default 600) throws one line naming the processes that no longer
// send their heartbeat to the store.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace saelab {

/// Where this process stands in its launch (all zeros and size 1 without torchrun).
struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  bool launched = false;  ///< RANK and WORLD_SIZE were set
};

/// RANK / WORLD_SIZE / LOCAL_RANK from the environment, validated (an unparsable or inconsistent
/// value is an error naming the variable).
LaunchInfo launch_info();

class Communicator {
 public:
  virtual ~Communicator() = default;
  int rank() const { return rank_; }
  int size() const { return size_; }
  /// Ranks of the world in this group, ordered (group rank i is world rank members()[i]).
  const std::vector<int>& members() const { return members_; }

  /// Sums `t` (a contiguous CPU tensor) over the group, in place. `what` names the operation in
  /// errors ("the gradient all-reduce of step 12").
  virtual void all_reduce_sum(torch::Tensor& t, const std::string& what) = 0;
  /// Copies root's `t` into every member's `t` (same shape and dtype everywhere).
  virtual void broadcast(torch::Tensor& t, int root, const std::string& what) = 0;
  /// Point to point: `t` (uint8 or any dtype; the receiver's has the same shape) from this rank
  /// to `dst` / from `src` into `t`.
  virtual void send(torch::Tensor& t, int dst, const std::string& what) = 0;
  virtual void recv(torch::Tensor& t, int src, const std::string& what) = 0;
  virtual void barrier(const std::string& what) = 0;

  /// Sends `bytes` from every member to `root`; root gets them in rank order (others: empty).
  std::vector<std::string> gather_bytes(const std::string& bytes, int root, const std::string& what);
  /// The group of the members with the same `color` (every member calls it), ordered by rank.
  virtual std::shared_ptr<Communicator> split(int color, const std::string& name) = 0;

 protected:
  int rank_ = 0;
  int size_ = 1;
  std::vector<int> members_{0};
};

/// The world: every process of the launch (a group of one without torchrun). The process group is
/// created at the first call.
std::shared_ptr<Communicator> world_communicator();

/// Every member runs `f`; when any of them throws, all stop: those that threw with their own error
/// (its first line), the others with one line naming them, instead of waiting for them at the
/// next collective. `what` names the stage ("opening the run"). In a group of one, `f` just runs.
void run_together(Communicator& group, const std::string& what, const std::function<void()>& f);

}  // namespace saelab
