#include "analysis/logit_effects.h"

#include <limits>

#include "analysis/feature_db.h"
#include "analysis/seen_tokens.h"
#include "sae/sae.h"
#include "sae/topk_kernels.h"

namespace saelab {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Unembedding find_unembedding(LanguageModel& lm) {
  std::map<std::string, torch::Tensor> params;
  for (const auto& p : lm.module().named_parameters(/*recurse=*/true)) params[p.name] = p.value.detach();
  const nlohmann::json& extra = lm.info().extra;
  return unembedding_from(params, extra.contains("logit_lens") ? extra.at("logit_lens") : nlohmann::json(),
                          lm.tokenizer().vocab_size(), lm.info().name);
}

Unembedding unembedding_from(const std::map<std::string, torch::Tensor>& params, const nlohmann::json& l,
                             int64_t vocab, const std::string& model) {
  std::string ln_name, un_name, norm;
  double softcap = 0;
  if (!l.is_null()) {
    TORCH_CHECK(l.is_object(), "model.json logit_lens must be an object (got ", l.type_name(), ")");
    auto text = [&](const char* key) -> std::string {
      if (!l.contains(key) || l.at(key).is_null()) return "";
      TORCH_CHECK(l.at(key).is_string(), "model.json logit_lens.", key, " must be a string (got ", l.at(key).dump(), ")");
      return l.at(key).get<std::string>();
    };
    ln_name = text("final_norm");
    un_name = text("unembed");
    norm = text("norm");
    TORCH_CHECK(un_name.empty() || params.count(un_name), "model.json logit_lens.unembed names '", un_name,
                "', which the model has no parameter called");
    TORCH_CHECK(ln_name.empty() || params.count(ln_name), "model.json logit_lens.final_norm names '", ln_name,
                "', which the model has no parameter called");
    TORCH_CHECK(norm.empty() || norm == "layernorm" || norm == "rmsnorm" || norm == "rmsnorm_plus_one" || norm == "none",
                "model.json logit_lens.norm must be layernorm, rmsnorm, rmsnorm_plus_one or none (got '", norm, "')");
    if (l.contains("softcap") && !l.at("softcap").is_null()) {
      TORCH_CHECK(l.at("softcap").is_number() && l.at("softcap").get<double>() > 0,
                  "model.json logit_lens.softcap must be a positive number (got ", l.at("softcap").dump(), ")");
      softcap = l.at("softcap").get<double>();
    }
  }
  auto find = [&](std::initializer_list<const char*> suffixes) -> std::string {
    for (const char* suf : suffixes) {
      for (const auto& [name, t] : params) {
        if (name == suf || ends_with(name, std::string(".") + suf)) return name;
      }
    }
    return "";
  };
  if (un_name.empty()) un_name = find({"unembed.weight", "lm_head.weight", "W_U", "unembed.W_U", "embed_out.weight"});
  if (un_name.empty()) un_name = find({"wte.weight", "embed.weight", "embed_tokens.weight"});  // tied embeddings
  TORCH_CHECK(!un_name.empty(), "model '", model, "' has no parameter that looks like an unembedding "
              "(unembed.weight, lm_head.weight, W_U, or a tied wte / embed weight); name it in model.json "
              "\"logit_lens\": {\"unembed\": ...}");
  if (ln_name.empty() && norm != "none") {
    ln_name = find({"ln_final.weight", "ln_f.weight", "final_layer_norm.weight", "norm.weight"});
  }
  Unembedding u;
  u.softcap = softcap;
  u.unembed_name = un_name;
  u.ln_name = ln_name;
  torch::Tensor W = params.at(un_name).to(torch::kFloat32);
  TORCH_CHECK(W.dim() == 2, "unembedding '", un_name, "' is not a matrix (shape ", W.sizes(), ")");
  if (W.size(0) >= vocab && W.size(1) < vocab) W = W.t();  // stored [vocab, d_model]
  u.W_U = W.contiguous();
  if (norm == "none" || ln_name.empty()) {
    TORCH_CHECK(norm.empty() || norm == "none", "model.json logit_lens.norm is '", norm, "' but model '", model,
                "' has no final norm parameter (ln_final / ln_f / final_layer_norm / norm .weight); name it in "
                "logit_lens.final_norm");
    u.centre = false;
    return u;
  }
  const torch::Tensor w = params.at(ln_name).to(torch::kFloat32);
  const std::string bias_name = ln_name.substr(0, ln_name.size() - std::string("weight").size()) + "bias";
  if (ends_with(ln_name, "weight") && params.count(bias_name)) u.ln_bias = params.at(bias_name).to(torch::kFloat32);
  TORCH_CHECK(w.dim() == 1 && w.size(0) == u.W_U.size(0), "final norm '", ln_name, "' of shape ", w.sizes(),
              " does not match the unembedding's d_model ", u.W_U.size(0));
  if (norm.empty()) {
    // Only a bias makes the type certain: LayerNorm has one; RMSNorm, Gemma's RMSNorm and a
    // LayerNorm without bias all store a weight alone, and they read a direction differently.
    const std::string bias = ln_name.substr(0, ln_name.size() - std::string("weight").size()) + "bias";
    TORCH_CHECK(params.count(bias) > 0, "model '", model, "': the final norm '", ln_name, "' has a weight and no bias, "
                "so its type is ambiguous (RMSNorm x̂·w, Gemma's RMSNorm x̂·(1 + w), or a LayerNorm without bias); "
                "name it in model.json \"logit_lens\": {\"norm\": \"rmsnorm\" | \"rmsnorm_plus_one\" | \"layernorm\"}");
    norm = "layernorm";
  }
  u.norm = norm;
  u.centre = norm == "layernorm";
  u.ln_weight = norm == "rmsnorm_plus_one" ? w + 1.0 : w;
  return u;
}

torch::Tensor logit_lens(const Unembedding& u, const torch::Tensor& normalized) {
  torch::Tensor h = normalized.to(torch::kFloat32);
  if (u.ln_weight.defined()) h = h * u.ln_weight;
  if (u.ln_bias.defined()) h = h + u.ln_bias;
  torch::Tensor z = torch::matmul(h, u.W_U);
  if (u.softcap > 0) z = torch::tanh(z / u.softcap) * u.softcap;
  return z;
}

torch::Tensor feature_logit_effects(const Sae& sae, const Unembedding& u, const torch::Tensor& features) {
  torch::NoGradGuard g;
  torch::Tensor d = sae.param("W_dec").detach().index_select(0, features);  // [n, d_model]
  TORCH_CHECK(d.size(1) == u.W_U.size(0), "the SAE's d_in ", d.size(1), " is not the model's d_model ", u.W_U.size(0),
              ": logit effects need an SAE on the residual stream");
  if (u.centre) d = d - d.mean(1, true);
  if (u.ln_weight.defined()) d = d * u.ln_weight;
  return torch::matmul(d, u.W_U);
}

LogitEffects logit_effects(const Sae& sae, const Unembedding& u, int64_t n, const torch::Tensor& ranked) {
  const int64_t d_sae = sae.config().d_sae, vocab = u.W_U.size(1);
  TORCH_CHECK(!ranked.defined() || (ranked.dim() == 1 && ranked.size(0) == vocab && ranked.scalar_type() == torch::kBool),
              "logit_effects: the ranked tokens must be a [vocab] bool mask");
  const int64_t candidates = ranked.defined() ? ranked.sum().item<int64_t>() : vocab;
  TORCH_CHECK(candidates > 0, "logit_effects: no token is left to rank");
  n = std::min(n, candidates);
  const torch::Tensor left_out = ranked.defined() ? ranked.logical_not().unsqueeze(0) : torch::Tensor();
  LogitEffects out;
  out.promoted_ids = torch::empty({d_sae, n}, torch::kInt64);
  out.promoted = torch::empty({d_sae, n});
  out.suppressed_ids = torch::empty({d_sae, n}, torch::kInt64);
  out.suppressed = torch::empty({d_sae, n});
  const int64_t chunk = 1024;
  for (int64_t s = 0; s < d_sae; s += chunk) {
    const int64_t m = std::min(chunk, d_sae - s);
    const torch::Tensor e = feature_logit_effects(sae, u, torch::arange(s, s + m, torch::kInt64));
    // row_topk: one read of each row for n far below the vocabulary (torch::topk selects over a copy)
    const float inf = std::numeric_limits<float>::infinity();
    auto [pv, pi] = row_topk(left_out.defined() ? e.masked_fill(left_out, -inf) : e, n);
    auto [sv, si] = row_topk(left_out.defined() ? (-e).masked_fill(left_out, -inf) : -e, n);
    out.promoted.narrow(0, s, m).copy_(pv);
    out.promoted_ids.narrow(0, s, m).copy_(pi);
    out.suppressed.narrow(0, s, m).copy_(-sv);
    out.suppressed_ids.narrow(0, s, m).copy_(si);
  }
  return out;
}

std::string display_token(const Tokenizer& tokenizer, int64_t id) {
  const std::string piece = tokenizer.id_to_piece(id);
  std::string text = tokenizer.decode({id});
  if (piece.rfind("\xE2\x96\x81", 0) == 0 && (text.empty() || text[0] != ' ')) text = " " + text;
  return text;
}

void write_logit_effects(FeatureDb& db, const std::string& sae_name, const LogitEffects& e, const Tokenizer& tokenizer) {
  db.transaction([&] {
    auto row = db.prepare(
        "INSERT INTO logit_effects(sae, feature, direction, rank, token_id, token, effect) VALUES (?, ?, ?, ?, ?, ?, ?)");
    const auto pi = e.promoted_ids.accessor<int64_t, 2>(), si = e.suppressed_ids.accessor<int64_t, 2>();
    const auto pv = e.promoted.accessor<float, 2>(), sv = e.suppressed.accessor<float, 2>();
    std::unordered_map<int64_t, std::string> cache;
    auto text = [&](int64_t id) -> const std::string& {
      auto it = cache.find(id);
      if (it == cache.end()) it = cache.emplace(id, display_token(tokenizer, id)).first;
      return it->second;
    };
    for (int64_t f = 0; f < e.promoted_ids.size(0); ++f) {
      for (int64_t r = 0; r < e.promoted_ids.size(1); ++r) {
        row.bind(1, sae_name).bind(2, f).bind(3, std::string("promoted")).bind(4, r).bind(5, pi[f][r])
            .bind(6, text(pi[f][r])).bind(7, static_cast<double>(pv[f][r])).run();
        row.bind(1, sae_name).bind(2, f).bind(3, std::string("suppressed")).bind(4, r).bind(5, si[f][r])
            .bind(6, text(si[f][r])).bind(7, static_cast<double>(sv[f][r])).run();
      }
    }
  });
}

void write_logit_effects_of(FeatureDb& db, const std::vector<AttachedSae>& saes, const LanguageModel& lm,
                            const Unembedding& u, int64_t n, const std::string& cache_dir) {
  const SeenTokens seen = tokens_seen_in_training(lm, cache_dir);
  for (const auto& a : saes) write_logit_effects(db, a.name, logit_effects(a.sae(), u, n, seen.seen), lm.tokenizer());
  db.transaction([&] {
    db.prepare("INSERT OR REPLACE INTO notes(topic, note) VALUES (?, ?)").bind(1, std::string("logit_effects")).bind(2, seen.note).run();
  });
}

}  // namespace saelab
