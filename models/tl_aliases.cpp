#include "models/tl_aliases.h"

#include <algorithm>
#include <set>

namespace saelab {

namespace {

// The first of `names` that is a child of `block` with hook points, or "".
std::string child(const std::set<std::string>& points, const std::string& block, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    const std::string path = block + n;
    if (points.count(path + ".input") || points.count(path + ".output")) return path;
  }
  return "";
}

}  // namespace

nlohmann::json transformer_lens_aliases(const std::vector<std::string>& point_list, const std::string& prefix,
                                        int64_t n_layers) {
  const std::set<std::string> points(point_list.begin(), point_list.end());
  nlohmann::json a = nlohmann::json::object();
  auto set = [&](const std::string& alias, const std::string& point) {
    if (points.count(point)) a[alias] = point;
  };
  for (int64_t i = 0; i < n_layers; ++i) {
    const std::string block = prefix + std::to_string(i);
    const std::string b = block + ".", tl = "blocks." + std::to_string(i) + ".";
    set(tl + "hook_resid_pre", block + ".input");
    set(tl + "hook_resid_post", block + ".output");
    const std::string attn = child(points, b, {"attn", "self_attn", "attention"});
    const std::string mlp = child(points, b, {"mlp", "feed_forward"});
    // Gemma 2 / 3 and OLMo 2 put a norm after attention and after the MLP; there
    // post_attention_layernorm is that post-norm, not the pre-MLP norm it is in Llama.
    const std::string post_mlp_norm = child(points, b, {"post_feedforward_layernorm"});
    const std::string pre_mlp_norm = !post_mlp_norm.empty()
                                         ? child(points, b, {"pre_feedforward_layernorm"})
                                         : child(points, b, {"ln_2", "ln2", "post_attention_layernorm"});
    const std::string post_attn_norm = !post_mlp_norm.empty() ? child(points, b, {"post_attention_layernorm"}) : "";
    if (!pre_mlp_norm.empty()) {
      set(tl + "hook_resid_mid", pre_mlp_norm + ".input");
    } else if (!mlp.empty()) {
      set(tl + "hook_resid_mid", mlp + ".input");
    }
    if (!post_attn_norm.empty()) {
      set(tl + "hook_attn_out", post_attn_norm + ".output");
    } else if (!attn.empty()) {
      set(tl + "hook_attn_out", attn + ".output");
    }
    if (!post_mlp_norm.empty()) {
      set(tl + "hook_mlp_out", post_mlp_norm + ".output");
    } else if (!mlp.empty()) {
      set(tl + "hook_mlp_out", mlp + ".output");
    }
    if (!mlp.empty()) {
      const std::string m = mlp + ".";
      const std::string gate = child(points, m, {"gate_proj"});
      const std::string in = child(points, m, {"c_fc", "dense_h_to_4h", "fc1", "fc_in"});
      const std::string out = child(points, m, {"down_proj", "c_proj", "dense_4h_to_h", "fc2", "fc_out"});
      if (!gate.empty()) {
        set(tl + "mlp.hook_pre", gate + ".output");
      } else if (!in.empty()) {
        set(tl + "mlp.hook_pre", in + ".output");
      }
      if (!out.empty()) set(tl + "mlp.hook_post", out + ".input");
    }
  }
  return a;
}

}  // namespace saelab
