#include "models/gpt.h"

#include <c10/util/Exception.h>
#include <fmt/format.h>

#include <cmath>
#include <unordered_set>

#include "core/json_options.h"

namespace saelab {

void GptConfig::validate() const {
  TORCH_CHECK(vocab_size > 0, "model.vocab_size must be positive (got ", vocab_size, ")");
  TORCH_CHECK(d_model > 0, "model.d_model must be positive (got ", d_model, ")");
  TORCH_CHECK(n_layers > 0, "model.n_layers must be positive (got ", n_layers, ")");
  TORCH_CHECK(n_heads > 0 && d_model % n_heads == 0, "model.n_heads must divide d_model (got n_heads ", n_heads,
              ", d_model ", d_model, ")");
  TORCH_CHECK(d_mlp >= 0, "model.d_mlp must be >= 0 (got ", d_mlp, ")");
  TORCH_CHECK(context_length > 0, "model.context_length must be positive (got ", context_length, ")");
}

nlohmann::json GptConfig::to_json() const {
  nlohmann::json j = options_json(*this);
  j["d_mlp"] = mlp_width();
  return j;
}

GptConfig GptConfig::from_json(const nlohmann::json& j, const std::string& where) {
  GptConfig c;
  read_options(j, where, c);
  c.validate();
  return c;
}

nlohmann::json gpt_hook_aliases(int64_t n_layers) {
  // Every LayerNorm here is torch.layer_norm with eps 1e-5 (layer_norm below).
  auto normalized = [](const std::string& norm) {
    return nlohmann::json{{"point", norm + ".input"}, {"normalize", "layernorm"}, {"eps", 1e-5}};
  };
  nlohmann::json a = nlohmann::json::object();
  for (int64_t i = 0; i < n_layers; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    a[b + "hook_resid_pre"] = b + "input";
    a[b + "hook_resid_mid"] = b + "ln2.input";
    a[b + "hook_resid_post"] = b + "output";
    a[b + "hook_attn_out"] = b + "attn.output";
    a[b + "hook_mlp_out"] = b + "mlp.output";
    a[b + "ln1.hook_normalized"] = normalized(b + "ln1");
    a[b + "ln2.hook_normalized"] = normalized(b + "ln2");
  }
  a["hook_embed"] = "embed.output";
  a["hook_pos_embed"] = "pos_embed.output";
  a["ln_final.hook_normalized"] = normalized("ln_final");
  return a;
}

namespace {

using torch::jit::Module;

torch::Tensor normal(std::vector<int64_t> shape, double std) {
  return (torch::randn(shape) * std).requires_grad_(true);
}
torch::Tensor zeros(std::vector<int64_t> shape) { return torch::zeros(shape).requires_grad_(true); }
torch::Tensor ones(std::vector<int64_t> shape) { return torch::ones(shape).requires_grad_(true); }

Module layer_norm(int64_t d) {
  Module m("__torch__.saelab.LayerNorm");
  m.register_parameter("weight", ones({d}), false);
  m.register_parameter("bias", zeros({d}), false);
  m.register_attribute("d", c10::IntType::get(), d);
  m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    return torch.layer_norm(x, [self.d], self.weight, self.bias, 1e-5)
)");
  return m;
}

Module attention(const GptConfig& c) {
  const int64_t d = c.d_model;
  const double resid_std = 0.02 / std::sqrt(2.0 * static_cast<double>(c.n_layers));
  Module m("__torch__.saelab.Attention");
  m.register_parameter("W_qkv", normal({3 * d, d}, 0.02), false);  // [3 d_model, d_model]: q, k, v stacked
  m.register_parameter("b_qkv", zeros({3 * d}), false);
  m.register_parameter("W_O", normal({d, d}, resid_std), false);    // [d_model, d_model]
  m.register_parameter("b_O", zeros({d}), false);
  m.register_attribute("n_heads", c10::IntType::get(), c.n_heads);
  m.register_attribute("d_head", c10::IntType::get(), d / c.n_heads);
  m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    B = x.size(0)
    T = x.size(1)
    D = x.size(2)
    qkv = torch.linear(x, self.W_qkv, self.b_qkv)
    q = qkv.narrow(2, 0, D).reshape([B, T, self.n_heads, self.d_head]).transpose(1, 2)
    k = qkv.narrow(2, D, D).reshape([B, T, self.n_heads, self.d_head]).transpose(1, 2)
    v = qkv.narrow(2, 2 * D, D).reshape([B, T, self.n_heads, self.d_head]).transpose(1, 2)
    scores = torch.matmul(q, k.transpose(2, 3)) * (1.0 / (self.d_head ** 0.5))
    future = torch.triu(x.new_ones([T, T]), 1) > 0.5
    scores = scores.masked_fill(future, float('-inf'))
    pattern = torch.softmax(scores, -1)
    z = torch.matmul(pattern, v).transpose(1, 2).reshape([B, T, D])
    return torch.linear(z, self.W_O, self.b_O)
)");
  return m;
}

Module mlp(const GptConfig& c) {
  const int64_t d = c.d_model, h = c.mlp_width();
  const double resid_std = 0.02 / std::sqrt(2.0 * static_cast<double>(c.n_layers));
  Module m("__torch__.saelab.Mlp");
  m.register_parameter("W_in", normal({h, d}, 0.02), false);  // [d_mlp, d_model]
  m.register_parameter("b_in", zeros({h}), false);
  m.register_parameter("W_out", normal({d, h}, resid_std), false);  // [d_model, d_mlp]
  m.register_parameter("b_out", zeros({d}), false);
  m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    return torch.linear(torch.gelu(torch.linear(x, self.W_in, self.b_in), approximate='tanh'), self.W_out, self.b_out)
)");
  return m;
}

Module block(const GptConfig& c) {
  Module m("__torch__.saelab.Block");
  m.register_module("ln1", layer_norm(c.d_model));
  m.register_module("attn", attention(c));
  m.register_module("ln2", layer_norm(c.d_model));
  m.register_module("mlp", mlp(c));
  m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    x = x + self.attn.forward(self.ln1.forward(x))
    return x + self.mlp.forward(self.ln2.forward(x))
)");
  return m;
}

}  // namespace

torch::jit::Module build_gpt(const GptConfig& config, uint64_t seed) {
  config.validate();
  torch::manual_seed(seed);
  const int64_t d = config.d_model;
  Module root("__torch__.saelab.Gpt");

  Module embed("__torch__.saelab.Embed");
  const torch::Tensor w_e = normal({config.vocab_size, d}, 0.02);  // [vocab, d_model]
  embed.register_parameter("weight", w_e, false);
  embed.define(R"(
def forward(self, tokens: Tensor) -> Tensor:
    return torch.embedding(self.weight, tokens)
)");

  Module pos("__torch__.saelab.PosEmbed");
  pos.register_parameter("weight", normal({config.context_length, d}, 0.01), false);  // [context, d_model]
  pos.define(R"(
def forward(self, tokens: Tensor) -> Tensor:
    B = tokens.size(0)
    T = tokens.size(1)
    return self.weight.narrow(0, 0, T).unsqueeze(0).expand([B, T, self.weight.size(1)])
)");

  Module blocks("__torch__.saelab.Blocks");
  for (int64_t i = 0; i < config.n_layers; ++i) blocks.register_module(std::to_string(i), block(config));

  Module unembed("__torch__.saelab.Unembed");
  unembed.register_parameter("weight", w_e, false);  // tied: the very tensor embed holds
  unembed.define(R"(
def forward(self, x: Tensor) -> Tensor:
    return torch.matmul(x, self.weight.t())
)");

  root.register_module("embed", embed);
  root.register_module("pos_embed", pos);
  root.register_module("blocks", blocks);
  root.register_module("ln_final", layer_norm(d));
  root.register_module("unembed", unembed);
  root.register_attribute("context_length", c10::IntType::get(), config.context_length);
  root.register_attribute("d_model", c10::IntType::get(), config.d_model);
  root.register_attribute("n_layers", c10::IntType::get(), config.n_layers);

  std::string src = R"(
def forward(self, tokens: Tensor) -> Tensor:
    x = self.embed.forward(tokens) + self.pos_embed.forward(tokens)
)";
  for (int64_t i = 0; i < config.n_layers; ++i) {
    src += fmt::format("    x = getattr(self.blocks, \"{}\").forward(x)\n", i);
  }
  src += "    return self.unembed.forward(self.ln_final.forward(x))\n";
  root.define(src);
  return root;
}

std::vector<std::pair<std::string, torch::Tensor>> unique_parameters(const torch::jit::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  std::unordered_set<const void*> seen;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    if (seen.insert(p.value.unsafeGetTensorImpl()).second) out.emplace_back(p.name, p.value);
  }
  return out;
}

}  // namespace saelab
