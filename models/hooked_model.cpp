#include "models/hooked_model.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/library.h>

#include <algorithm>
#include <unordered_set>

namespace saelab {

namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

thread_local HookScope* t_active_scope = nullptr;

torch::Tensor hook_op(const torch::Tensor& x, c10::string_view name) {
  HookScope* scope = t_active_scope;
  if (scope == nullptr) return x;
  return scope->dispatch(x, std::string(name));
}

// CONSERVATIVE: the op has effects the optimiser must not reorder or remove.
TORCH_LIBRARY(saelab, m) {
  m.def(torch::schema("hook(Tensor x, str name) -> Tensor", c10::AliasAnalysisKind::CONSERVATIVE), hook_op);
}

const c10::Symbol kHook = c10::Symbol::fromQualString("saelab::hook");

// "blocks.2.attn" for a value reached from the graph's self by GetAttr nodes; empty otherwise.
std::string module_path(Value* v, Value* self) {
  std::vector<std::string> parts;
  while (v != self) {
    Node* n = v->node();
    if (n->kind() != c10::prim::GetAttr) return "";
    parts.push_back(n->s(c10::attr::name));
    v = n->input(0);
  }
  std::string path;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) path += (path.empty() ? "" : ".") + *it;
  return path;
}

Node* find_call(torch::jit::Block* block) {
  for (Node* n : block->nodes()) {
    if (n->kind() == c10::prim::CallMethod) return n;
    for (torch::jit::Block* b : n->blocks()) {
      if (Node* found = find_call(b)) return found;
    }
  }
  return nullptr;
}

Value* insert_hook(Graph& g, Value* x, const std::string& name) {
  return g.insert(kHook, {x, name});
}

void hook_output(Graph& g, Value* out, const std::string& name) {
  if (out->type()->cast<c10::TensorType>()) {
    Value* hooked = insert_hook(g, out, name);
    out->replaceAllUsesWith(hooked);
    hooked->node()->replaceInput(0, out);
    return;
  }
  auto tuple = out->type()->cast<c10::TupleType>();
  if (!tuple || tuple->elements().empty() || !tuple->elements()[0]->cast<c10::TensorType>()) return;
  Node* unpack = g.insertNode(g.createTupleUnpack(out));
  std::vector<Value*> elems(unpack->outputs().begin(), unpack->outputs().end());
  elems[0] = insert_hook(g, elems[0], name);
  Node* pack = g.insertNode(g.createTuple(elems, tuple->schema() ? tuple : nullptr));
  out->replaceAllUsesWith(pack->output());
  unpack->replaceInput(0, out);
}

HookTarget parse_alias(const std::string& name, const nlohmann::json& v) {
  if (v.is_string()) return HookTarget{v.get<std::string>(), "", 0};
  TORCH_CHECK(v.is_object() && v.contains("point") && v["point"].is_string(), "hook alias '", name,
              "' must name a hook point, or be {\"point\": P, \"normalize\": \"layernorm\"|\"rmsnorm\", \"eps\": E}");
  HookTarget t{v["point"].get<std::string>(), "", 0};
  for (auto it = v.begin(); it != v.end(); ++it) {
    TORCH_CHECK(it.key() == "point" || it.key() == "normalize" || it.key() == "eps", "hook alias '", name,
                "' has an unknown field '", it.key(), "' (point, normalize, eps)");
  }
  TORCH_CHECK(v.contains("normalize") && v["normalize"].is_string() &&
                  (v["normalize"] == "layernorm" || v["normalize"] == "rmsnorm"),
              "hook alias '", name, "': normalize must be \"layernorm\" or \"rmsnorm\"");
  TORCH_CHECK(v.contains("eps") && v["eps"].is_number() && v["eps"].get<double>() > 0 && v["eps"].get<double>() < 1,
              "hook alias '", name, "': eps must be a number in (0, 1)");
  t.normalize = v["normalize"].get<std::string>();
  t.eps = v["eps"].get<double>();
  return t;
}

}  // namespace

torch::Tensor HookTarget::apply(const torch::Tensor& x) const {
  if (!computed()) return x;
  // In float32 at least, as the families' norms compute (HF's RMSNorm upcasts).
  torch::Tensor h = x.dtype() == torch::kFloat64 ? x : x.to(torch::kFloat32);
  if (normalize == "layernorm") h = h - h.mean(-1, true);
  const torch::Tensor scale = (h.pow(2).mean(-1, true) + eps).sqrt();
  return (h / scale).to(x.dtype());
}

HookedModel::HookedModel(torch::jit::Module module, nlohmann::json aliases)
    : module_(std::move(module)), aliases_(std::move(aliases)) {
  TORCH_CHECK(module_.find_method("forward").has_value(), "the TorchScript module has no forward method");
  graph_ = torch::jit::toGraphFunction(module_.get_method("forward").function()).graph()->copy();
  Value* self = graph_->inputs().at(0);
  while (Node* call = find_call(graph_->block())) {
    const std::string method = call->s(c10::attr::name);
    const std::string path = module_path(call->input(0), self);
    auto cls = call->input(0)->type()->expect<c10::ClassType>();
    torch::jit::GraphFunction& callee = torch::jit::toGraphFunction(cls->getMethod(method));
    const bool hooked = !path.empty() && method == "forward";
    if (hooked) {
      // The first tensor argument, but not a parameter: a traced call to a module whose weight is
      // shared (a tied unembedding) passes that weight first, read from another module by GetAttr.
      size_t arg = 0;
      for (size_t i = 1; i < call->inputs().size() && arg == 0; ++i) {
        if (call->input(i)->type()->cast<c10::TensorType>() && call->input(i)->node()->kind() != c10::prim::GetAttr) arg = i;
      }
      for (size_t i = 1; i < call->inputs().size() && arg == 0; ++i) {
        if (call->input(i)->type()->cast<c10::TensorType>()) arg = i;
      }
      if (arg > 0) {
        torch::jit::WithInsertPoint guard(call);
        call->replaceInput(arg, insert_hook(*graph_, call->input(arg), path + ".input"));
      }
    }
    Node* next = call->next();
    // The callee's own graph (not its optimised, already inlined one) keeps its module calls.
    const std::vector<Value*> outs = torch::jit::inlineCallTo(call, &callee, callee.graph().get());
    if (hooked && outs.size() == 1) {
      torch::jit::WithInsertPoint guard(next);
      hook_output(*graph_, outs[0], path + ".output");
    }
  }
  std::unordered_set<std::string> seen;
  std::function<void(torch::jit::Block*)> collect = [&](torch::jit::Block* block) {
    for (Node* n : block->nodes()) {
      if (n->kind() == kHook) {
        const std::string name = torch::jit::toIValue(n->input(1))->toStringRef();
        if (seen.insert(name).second) points_.push_back(name);
      }
      for (torch::jit::Block* b : n->blocks()) collect(b);
    }
  };
  collect(graph_->block());
  function_ = std::make_unique<torch::jit::GraphFunction>("saelab_hooked_forward", graph_, nullptr);
  TORCH_CHECK(aliases_.is_object(), "hook aliases must be an object of name -> hook point");
  for (auto it = aliases_.begin(); it != aliases_.end(); ++it) {
    HookTarget t = parse_alias(it.key(), it.value());
    TORCH_CHECK(seen.count(t.point), "hook alias '", it.key(), "' names '", t.point,
                "', which is not a hook point of this model");
    targets_[it.key()] = std::move(t);
  }
}

HookTarget HookedModel::target(const std::string& name) const {
  if (std::find(points_.begin(), points_.end(), name) != points_.end()) return HookTarget{name, "", 0};
  auto it = targets_.find(name);
  if (it != targets_.end()) return it->second;
  std::vector<std::string> all = points_;
  for (auto a = aliases_.begin(); a != aliases_.end(); ++a) all.push_back(a.key());
  std::string hint;
  for (const auto& c : closest_names(name, all)) hint += (hint.empty() ? "" : ", ") + c;
  TORCH_CHECK(false, "unknown hook point '", name, "' (closest: ", hint, "; `saelab hooks MODEL` lists them all)");
}

std::string HookedModel::preferred_name(const std::string& name) const {
  const HookTarget t = target(name);
  if (targets_.count(name)) return name;
  // The TransformerLens-style alias of a plain point: blocks.{i}.hook_* first, then any other.
  std::string best;
  for (const auto& [alias, at] : targets_) {
    if (at.computed() || at.point != t.point) continue;
    const bool tl = alias.rfind("blocks.", 0) == 0 && alias.find(".hook_") != std::string::npos;
    if (best.empty() || (tl && !(best.rfind("blocks.", 0) == 0 && best.find(".hook_") != std::string::npos))) best = alias;
  }
  return best.empty() ? name : best;
}

bool HookedModel::same_hook(const std::string& a, const std::string& b) const {
  const HookTarget x = target(a), y = target(b);
  return x.point == y.point && x.normalize == y.normalize && x.eps == y.eps;
}

c10::IValue HookedModel::forward(const torch::Tensor& tokens) {
  HookScope* scope = t_active_scope;
  if (scope != nullptr) scope->begin_forward();
  try {
    return (*function_)({module_._ivalue(), tokens});
  } catch (const std::exception&) {
    if (scope != nullptr && scope->stopped()) return c10::IValue();
    throw;
  }
}

const torch::Tensor& ActivationCache::operator[](const std::string& name) const {
  auto it = activations.find(name);
  TORCH_CHECK(it != activations.end(), "the activation cache holds no '", name, "'");
  return it->second;
}

ActivationCache HookedModel::run_with_cache(const torch::Tensor& tokens, const std::vector<std::string>& names) {
  TORCH_CHECK(!names.empty(), "run_with_cache needs at least one hook point");
  torch::NoGradGuard no_grad;
  HookScope scope(*this);
  for (const auto& name : names) scope.capture(name);
  scope.stop_after_last_hook();
  forward(tokens);
  scope.check_all_fired();
  ActivationCache cache;
  for (const auto& name : names) cache.activations[name] = scope.captured(name);
  return cache;
}

std::vector<int64_t> HookedModel::hook_shape(const std::string& name) {
  return run_with_cache(torch::zeros({1, 2}, torch::kInt64), {name})[name].sizes().vec();
}

HookScope::HookScope(const HookedModel& model) : model_(model) {
  TORCH_CHECK(t_active_scope == nullptr, "a HookScope is already active on this thread; scopes do not nest");
  t_active_scope = this;
}

HookScope::~HookScope() { t_active_scope = nullptr; }

void HookScope::add_hook(const std::string& point, HookFn fn) {
  const HookTarget t = model_.target(point);
  TORCH_CHECK(!t.computed(), "hook '", point, "' is computed from ", t.point, " (", t.normalize,
              " without its weight); it can be captured but not replaced or steered");
  hooks_[t.point].push_back(std::move(fn));
}

// Captures of a computed name are kept under "<point>|<normalize>|<eps>", apart from the point's own.
static std::string capture_key(const HookTarget& t) {
  return t.computed() ? t.point + "|" + t.normalize + "|" + std::to_string(t.eps) : t.point;
}

void HookScope::capture(const std::string& point) {
  const HookTarget t = model_.target(point);
  hooks_[t.point].push_back([this, t](const torch::Tensor& x) {
    captured_[capture_key(t)] = t.computed() ? t.apply(x.detach()) : x.detach().clone();
    return x;
  });
}

void HookScope::replace(const std::string& point, HookFn fn) { add_hook(point, std::move(fn)); }

void HookScope::add(const std::string& point, const torch::Tensor& vector) {
  add_hook(point, [v = vector.detach()](const torch::Tensor& x) {
    TORCH_CHECK(x.size(-1) == v.size(-1), "steering vector of size ", v.size(-1),
                " does not match the activation's last dimension ", x.size(-1));
    return x + v.to(x.dtype());
  });
}

const torch::Tensor& HookScope::captured(const std::string& point) const {
  auto it = captured_.find(capture_key(model_.target(point)));
  TORCH_CHECK(it != captured_.end(), "nothing was captured at '", point, "' (capture it before the forward pass)");
  return it->second;
}

void HookScope::begin_forward() {
  fired_.clear();
  stopped_ = false;
}

torch::Tensor HookScope::dispatch(const torch::Tensor& x, const std::string& name) {
  auto it = hooks_.find(name);
  if (it == hooks_.end()) return x;
  torch::Tensor y = x;
  for (const auto& fn : it->second) y = fn(y);
  fired_[name]++;
  if (stop_ && fired_.size() == hooks_.size()) {
    stopped_ = true;
    throw std::runtime_error("saelab: forward pass stopped after the last hook");
  }
  return y;
}

void HookScope::check_all_fired() const {
  if (stopped_) return;
  std::string missing;
  for (const auto& [name, fns] : hooks_) {
    if (fired_.count(name) == 0) missing += (missing.empty() ? "" : ", ") + name;
  }
  TORCH_CHECK(missing.empty(), "hook point(s) ", missing, " never ran during the forward pass");
}

std::vector<std::string> closest_names(const std::string& name, const std::vector<std::string>& candidates,
                                       size_t max_count) {
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      }
      std::swap(prev, cur);
    }
    return prev[b.size()];
  };
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& c : candidates) scored.emplace_back(distance(name, c), c);
  std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && i < max_count; ++i) out.push_back(scored[i].second);
  return out;
}

}  // namespace saelab
