// The table of architectures (the one place their names are spelled) and what ArchitectureRules
// gives every architecture by default.
#include "sae/architecture.h"

#include <algorithm>

namespace saelab {

const std::vector<const ArchitectureRules*>& all_architectures() {
  static const std::vector<const ArchitectureRules*> all = {
      &standard_architecture(),  &gated_architecture(),      &topk_architecture(),
      &batchtopk_architecture(), &matryoshka_architecture(), &jumprelu_architecture(),
  };
  return all;
}

const ArchitectureRules& architecture_rules(Architecture a) {
  for (const ArchitectureRules* r : all_architectures()) {
    if (r->id() == a) return *r;
  }
  TORCH_CHECK(false, "unknown architecture ", static_cast<int>(a));
}

Architecture parse_architecture(const std::string& name) {
  std::string names;
  const auto& all = all_architectures();
  for (size_t i = 0; i < all.size(); ++i) {
    if (name == all[i]->name()) return all[i]->id();
    names += (i == 0 ? "" : i + 1 == all.size() ? " or " : ", ") + std::string(all[i]->name());
  }
  TORCH_CHECK(false, "architecture must be ", names, " (got '", name, "')");
}

const char* architecture_name(Architecture a) { return architecture_rules(a).name(); }
bool uses_k(Architecture a) { return architecture_rules(a).uses_k(); }
bool uses_batch_topk(Architecture a) { return architecture_rules(a).uses_batch_topk(); }

void ArchitectureRules::add_shapes(const SaeConfig& c, TensorShapes& shapes) const { shapes["b_enc"] = {c.d_sae}; }

void ArchitectureRules::init(Sae& s) const { params(s)["b_enc"] = torch::zeros({s.config().d_sae}); }

void ArchitectureRules::centre_encoder_biases(Sae& s, const torch::Tensor& centre) const {
  torch::NoGradGuard g;
  params(s).at("b_enc").copy_(-torch::mv(p(s, "W_enc").t(), centre));
}

void ArchitectureRules::load_threshold(Sae& s, const torch::Tensor& threshold, const std::string& where) const {
  (void)s;
  (void)threshold;
  TORCH_CHECK(false, where, ": a ", name(), " coder has no threshold");
}

torch::Tensor ArchitectureRules::threshold(const Sae& s) const {
  (void)s;
  TORCH_CHECK(false, "a ", name(), " SAE has no threshold");
}

}  // namespace saelab
