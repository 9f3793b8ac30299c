// Hook points on any TorchScript model (scripted or traced).
//
// The forward graph is copied and every submodule call is inlined; at each call site a custom
// operator saelab::hook(Tensor x, str name) -> Tensor is spliced in on the first tensor argument
// (`<module path>.input`) and on the result (`<module path>.output`; element 0 when the module
// returns a tuple). The operator returns its input untouched unless a HookScope on the calling
// thread listens to that name, so with no hooks active the model runs as before.
//
// Hooks are scoped (RAII): a HookScope installs them for the current thread and removes them when it
// goes out of scope. Kinds: capture (copy out), replace (any function of the activation: SAE
// splicing), add (steering), and stop (end the forward pass once every hook of the scope has fired).
#pragma once
#include <torch/script.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace saelab {

/// A function of an activation [batch, pos, d] (or whatever the module passes) returning the
/// tensor that flows on. Returning the argument leaves the model unchanged.
using HookFn = std::function<torch::Tensor(const torch::Tensor&)>;

/// Where a hook name reads. Most names are a hook point or an alias of one; an alias may also be
/// computed at a point: TransformerLens' `ln2.hook_normalized` is the norm's input centred
/// (LayerNorm) and divided by its scale, before the weight, which no module returns, so it is read
/// from `<norm>.input`. A computed name can be captured but not replaced or steered.
struct HookTarget {
  std::string point;      ///< the hook point the activation is taken at
  std::string normalize;  ///< "" (the activation itself), "layernorm" or "rmsnorm"
  double eps = 0;         ///< the norm's epsilon, when normalize is set
  bool computed() const { return !normalize.empty(); }
  /// The activation this target names, from the tensor at `point` [..., d].
  torch::Tensor apply(const torch::Tensor& x) const;
};

/// Activations captured in one forward pass, by the names they were asked for.
struct ActivationCache {
  std::map<std::string, torch::Tensor> activations;  // name → [batch, pos, d] (whatever the module passes)
  /// Throws naming `name` when it was not captured.
  const torch::Tensor& operator[](const std::string& name) const;
};

class HookedModel {
 public:
  /// Builds the hooked graph of `module.forward`. `aliases` maps extra names to hook points
  /// (model.json "hook_aliases", e.g. blocks.0.hook_resid_pre → blocks.0.input), or to computed
  /// targets ({"point": "blocks.0.ln2.input", "normalize": "layernorm", "eps": 1e-5}).
  explicit HookedModel(torch::jit::Module module, nlohmann::json aliases = nlohmann::json::object());

  /// Hook points in the order the forward pass reaches them.
  const std::vector<std::string>& hook_points() const { return points_; }
  const nlohmann::json& aliases() const { return aliases_; }

  /// Resolves an alias or point name to its hook point; an unknown name is an error listing the
  /// closest valid names.
  std::string resolve(const std::string& name) const { return target(name).point; }
  /// What `name` reads (a point, or a computed alias); an unknown name is an error as in resolve.
  HookTarget target(const std::string& name) const;
  /// The name artifacts record for `name`: an alias as given; a hook point under its
  /// TransformerLens-style alias when it has one (blocks.2.input → blocks.2.hook_resid_pre); else
  /// the point. Throws on an unknown name.
  std::string preferred_name(const std::string& name) const;
  /// True when two names (points or aliases) read the same activation.
  bool same_hook(const std::string& a, const std::string& b) const;

  /// Runs the hooked forward pass (hooks of the thread's active HookScope apply).
  c10::IValue forward(const torch::Tensor& tokens);

  /// Runs `tokens` [batch, pos] capturing the activations at `names` (points or aliases), stopping
  /// the pass once the last of them has fired — TransformerLens' run_with_cache with a names
  /// filter. Throws naming a point the pass never reached. Keeps no autograd graph; must not be
  /// called inside a HookScope.
  ///
  /// Example:
  ///   HookedModel hooked(lm.module(), lm.info().hook_aliases);
  ///   const ActivationCache cache = hooked.run_with_cache(tokens, {"blocks.2.hook_resid_pre"});
  ///   const torch::Tensor& x = cache["blocks.2.hook_resid_pre"];  // [batch, pos, d_model]
  ActivationCache run_with_cache(const torch::Tensor& tokens, const std::vector<std::string>& names);

  /// The shape of the activation at `name` for a [1, 2] input of token 0 (e.g. [1, 2, d_model]).
  std::vector<int64_t> hook_shape(const std::string& name);

  torch::jit::Module& module() { return module_; }

 private:
  torch::jit::Module module_;
  std::shared_ptr<torch::jit::Graph> graph_;
  std::unique_ptr<torch::jit::GraphFunction> function_;
  std::vector<std::string> points_;
  nlohmann::json aliases_;
  std::map<std::string, HookTarget> targets_;  // alias → target
};

/// Installs hooks on the calling thread for its lifetime. Not copyable; scopes do not nest.
class HookScope {
 public:
  explicit HookScope(const HookedModel& model);
  ~HookScope();
  HookScope(const HookScope&) = delete;
  HookScope& operator=(const HookScope&) = delete;

  /// Copies the activation at `point` into captured(point) (the last call wins).
  void capture(const std::string& point);
  /// Replaces the activation at `point` with fn(activation).
  void replace(const std::string& point, HookFn fn);
  /// Adds `vector` (broadcast over leading dimensions, e.g. [d]) to the activation at `point`.
  void add(const std::string& point, const torch::Tensor& vector);
  /// Ends the forward pass as soon as every hook of this scope has fired at least once; the
  /// forward call then returns None.
  void stop_after_last_hook(bool on = true) { stop_ = on; }

  /// The tensor captured at `point` in the last forward pass.
  const torch::Tensor& captured(const std::string& point) const;
  /// True if the last forward pass ended early.
  bool stopped() const { return stopped_; }

  /// Throws, naming the points, if some hook of the scope did not fire in the last forward pass
  /// (the module is never called, e.g. a branch not taken).
  void check_all_fired() const;

  // Called by the hook operator.
  torch::Tensor dispatch(const torch::Tensor& x, const std::string& name);
  void begin_forward();

 private:
  void add_hook(const std::string& point, HookFn fn);

  const HookedModel& model_;
  std::map<std::string, std::vector<HookFn>> hooks_;  // resolved point → functions, in order added
  std::map<std::string, torch::Tensor> captured_;
  std::map<std::string, int> fired_;
  bool stop_ = false;
  bool stopped_ = false;
};

/// The closest names to `name` among `candidates` (edit distance), for error messages.
std::vector<std::string> closest_names(const std::string& name, const std::vector<std::string>& candidates,
                                       size_t max_count = 3);

}  // namespace saelab
