// saprmarks/dictionary_learning folders: ae.pt (torch.save of the state dict) + config.json
// ({"trainer": {"dict_class", "activation_dim", "dict_size", "k", "layer", "lm_name", ...},
// "buffer": {"ctx_len", ...}}). Read as dictionary_learning/dictionary.py and trainers/*.py compute
// them (nn.Linear stores weight as [out, in]: encoder.weight is [d_sae, d_in], decoder.weight
// [d_in, d_sae]):
//   AutoEncoder          f = ReLU((x − bias) encoder.weightᵀ + encoder.bias); x̂ = f decoder.weightᵀ + bias
//   AutoEncoderNew       f = ReLU(x encoder.weightᵀ + encoder.bias); x̂ = f decoder.weightᵀ + decoder.bias
//   GatedAutoEncoder     e = (x − decoder_bias) encoder.weightᵀ; f = 1[e + gate_bias > 0]·ReLU(e·exp(r_mag) + mag_bias)
//   AutoEncoderTopK      the k largest of ReLU((x − b_dec) encoder.weightᵀ + encoder.bias)
//   BatchTopKSAE         post·1[post > threshold] (a scalar), post = ReLU((x − b_dec) encoder.weightᵀ + encoder.bias)
//   MatryoshkaBatchTopKSAE  as BatchTopK with W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in] (all groups active)
//   JumpReluAutoEncoder  f = ReLU(pre·1[pre > threshold]), pre = x W_enc + b_enc (no b_dec subtracted)
// The class comes from config.json's dict_class, or from the state dict's keys when there is none.
#include <filesystem>

#include "core/json_options.h"
#include "core/torch_pickle.h"
#include "sae/sae_formats.h"

namespace saelab::formats {

namespace fs = std::filesystem;

namespace {

// The class a state dict's keys imply (dictionary_learning's own loaders need config.json).
std::string class_from_keys(const std::map<std::string, torch::Tensor>& t) {
  if (t.count("r_mag")) return "GatedAutoEncoder";
  if (t.count("group_sizes")) return "MatryoshkaBatchTopKSAE";
  if (t.count("W_enc") && t.count("threshold")) return "JumpReluAutoEncoder";
  if (t.count("decoder.bias")) return "AutoEncoderNew";
  if (t.count("bias")) return "AutoEncoder";
  return "";
}

int64_t scalar_int(const std::map<std::string, torch::Tensor>& t, const std::string& name, const std::string& where) {
  const torch::Tensor& v = t.at(name);
  TORCH_CHECK(v.numel() == 1 && !v.is_floating_point() && v.scalar_type() != torch::kBool, where, ": tensor '", name,
              "' must be one integer (got dtype ", v.dtype(), ", shape ", v.sizes(), ")");
  return v.to(torch::kInt64).item<int64_t>();
}

}  // namespace

LoadedSae load_dictionary_learning(const std::string& dir) {
  const std::string ae_path = (fs::path(dir) / "ae.pt").string();
  const TorchPickle pickle = load_torch_pickle(ae_path, "dictionary_learning state dict");
  TORCH_CHECK(!pickle.others.count("ae"), ae_path,
              ": is a training backup (its 'ae' entry holds the state dict before the activation scale is folded "
              "into its biases); use the ae.pt written when training finished");
  for (const auto& [key, what] : pickle.others) {
    TORCH_CHECK(false, ae_path, ": entry '", key, "' is ", what, ", not a tensor (a state dict holds only tensors)");
  }
  const auto& t = pickle.tensors;

  SaeMetadata m;
  std::string dict_class;
  int64_t config_k = 0;
  const fs::path cfg_path = fs::path(dir) / "config.json";
  if (fs::exists(cfg_path)) {
    const nlohmann::json cfg = load_json_file(cfg_path.string(), "dictionary_learning config");
    const Fields top(cfg, cfg_path.string());
    const Fields trainer = top.object("trainer"), buffer = top.object("buffer");
    dict_class = trainer.get<std::string>("dict_class", "");
    config_k = trainer.get<int64_t>("k", 0);
    m.model_name = trainer.get<std::string>("lm_name", "");
    m.hook_layer = trainer.get<int64_t>("layer", -1);
    m.context_size = buffer.get<int64_t>("ctx_len", 0);
    if (buffer.get<std::string>("io", "out") != "out") {
      buffer.fail("io", "is '" + buffer.get<std::string>("io", "") + "': only SAEs trained on a module's output ('out') "
                        "are supported (in_and_out is a transcoder)");
    }
  }
  if (dict_class.empty()) dict_class = class_from_keys(t);
  if (dict_class == "MatroyshkaBatchTopKSAE") dict_class = "MatryoshkaBatchTopKSAE";  // spelt so in early 2025
  std::set<std::string> known;
  std::map<std::string, torch::Tensor> p;
  SaeConfig c;
  auto linear_shapes = [&](const std::string& enc) {
    TORCH_CHECK(t.count(enc) && t.at(enc).dim() == 2, ae_path, ": tensor '", enc, "' is missing or not a matrix");
    c.d_sae = t.at(enc).size(0);
    c.d_in = t.at(enc).size(1);
  };
  auto take = [&](const std::string& from, const std::string& to, std::vector<int64_t> shape, bool transpose = false) {
    known.insert(from);
    torch::Tensor w = weight(t, from, shape, ae_path);
    p[to] = transpose ? w.t().contiguous() : w;
  };
  // The classes built from raw parameters: W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in].
  auto take_raw_encoder_decoder = [&] {
    TORCH_CHECK(t.count("W_enc") && t.at("W_enc").dim() == 2, ae_path, ": tensor 'W_enc' is missing or not a matrix");
    c.d_in = t.at("W_enc").size(0);
    c.d_sae = t.at("W_enc").size(1);
    take("W_enc", "W_enc", {c.d_in, c.d_sae});
    take("b_enc", "b_enc", {c.d_sae});
    take("W_dec", "W_dec", {c.d_sae, c.d_in});
  };
  std::vector<std::string> notes;
  if (dict_class == "AutoEncoder" || dict_class == "AutoEncoderNew") {
    c.architecture = Architecture::kStandard;
    linear_shapes("encoder.weight");
    take("encoder.weight", "W_enc", {c.d_sae, c.d_in}, true);
    take("encoder.bias", "b_enc", {c.d_sae});
    take("decoder.weight", "W_dec", {c.d_in, c.d_sae}, true);
    const bool centred = dict_class == "AutoEncoder";
    take(centred ? "bias" : "decoder.bias", "b_dec", {c.d_in});
    c.apply_b_dec_to_input = centred;
    if (centred) {
      // AutoEncoder.from_pretrained (normalize_decoder=True, its default) divides each decoder
      // column by its norm and multiplies that latent's encoder row and bias by it, unless every
      // norm is within torch.allclose's default tolerance of 1: the same reconstructions, codes
      // scaled by the norms. saelab reads the codes its users see.
      const torch::Tensor norms = decoder_row_norms(p["W_dec"], ae_path + " (decoder.weight)");
      if (((norms - 1).abs() > 1e-8 + 1e-5).any().item<bool>()) {
        p["W_dec"] = p["W_dec"] / norms.unsqueeze(1);
        p["W_enc"] = p["W_enc"] * norms.unsqueeze(0);
        p["b_enc"] = p["b_enc"] * norms;
        notes.push_back("decoder columns normalised to unit norm, their norms folded into the encoder, as "
                        "AutoEncoder.from_pretrained does");
      }
    }
  } else if (dict_class == "GatedAutoEncoder") {
    c.architecture = Architecture::kGated;
    linear_shapes("encoder.weight");
    take("encoder.weight", "W_enc", {c.d_sae, c.d_in}, true);
    take("gate_bias", "b_gate", {c.d_sae});
    take("mag_bias", "b_mag", {c.d_sae});
    take("r_mag", "r_mag", {c.d_sae});
    take("decoder.weight", "W_dec", {c.d_in, c.d_sae}, true);
    take("decoder_bias", "b_dec", {c.d_in});
  } else if (dict_class == "AutoEncoderTopK" || dict_class == "BatchTopKSAE" || dict_class == "MatryoshkaBatchTopKSAE") {
    const bool matryoshka = dict_class == "MatryoshkaBatchTopKSAE";
    c.architecture = dict_class == "AutoEncoderTopK" ? Architecture::kTopK : Architecture::kBatchTopK;
    if (matryoshka) {
      take_raw_encoder_decoder();
      known.insert("group_sizes");  // all groups are active at inference
      notes.push_back("a Matryoshka BatchTopK SAE is read as BatchTopK: with every group active, its inference code is "
                      "the same");
    } else {
      linear_shapes("encoder.weight");
      take("encoder.weight", "W_enc", {c.d_sae, c.d_in}, true);
      take("encoder.bias", "b_enc", {c.d_sae});
      take("decoder.weight", "W_dec", {c.d_in, c.d_sae}, true);
    }
    take("b_dec", "b_dec", {c.d_in});
    known.insert("k");
    if (t.count("k")) {
      c.k = scalar_int(t, "k", ae_path);
      TORCH_CHECK(config_k == 0 || config_k == c.k, ae_path, ": tensor 'k' is ", c.k, " but config.json's trainer.k is ",
                  config_k);
    } else {
      TORCH_CHECK(config_k > 0, ae_path, ": the state dict has no 'k' and config.json gives no trainer.k");
      c.k = config_k;
    }
    if (c.architecture == Architecture::kBatchTopK) {
      known.insert("threshold");
      TORCH_CHECK(t.count("threshold"), ae_path, ": tensor 'threshold' is missing (BatchTopK SAEs encode through it)");
      const torch::Tensor& th = t.at("threshold");
      TORCH_CHECK(th.numel() == 1 && th.is_floating_point(), ae_path, ": tensor 'threshold' must be one float (got ",
                  th.sizes(), " ", th.dtype(), ")");
      double theta = th.to(torch::kFloat64).item<double>();
      TORCH_CHECK(std::isfinite(theta), ae_path, ": tensor 'threshold' is not finite");
      if (theta < 0) {
        notes.push_back("the threshold was never learned (" + std::to_string(theta) + "): post·1[post > θ] is then "
                        "ReLU, read as threshold 0");
        theta = 0;
      }
      p["threshold"] = torch::full({c.d_sae}, theta, torch::kFloat32);
    } else {
      known.insert("threshold");  // TopK's threshold is used only with use_threshold=True, not by default
    }
  } else if (dict_class == "JumpReluAutoEncoder") {
    c.architecture = Architecture::kJumpReLU;
    take_raw_encoder_decoder();
    take("b_dec", "b_dec", {c.d_in});
    take("threshold", "threshold", {c.d_sae});
    c.apply_b_dec_to_input = false;
    if ((p["threshold"] < 0).any().item<bool>()) {
      p["threshold"] = p["threshold"].clamp_min(0);  // ReLU(pre·1[pre > θ]) with θ < 0 is ReLU(pre)
      notes.push_back("negative thresholds are read as 0 (the ReLU after the threshold makes them so)");
    }
  } else {
    TORCH_CHECK(false, ae_path, ": dictionary class '", dict_class.empty() ? "(none: no config.json)" : dict_class,
                "' is not supported; saelab reads AutoEncoder, AutoEncoderNew, GatedAutoEncoder, AutoEncoderTopK, "
                "BatchTopKSAE, MatryoshkaBatchTopKSAE and JumpReluAutoEncoder");
  }
  refuse_unknown_tensors(t, known, ae_path, "dictionary_learning " + dict_class);
  try {
    c.validate();
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, ae_path, ": ", e.msg());
  }
  return LoadedSae{Sae(c, p, ae_path), m, {}, "dictionary_learning " + dict_class, notes};
}

}  // namespace saelab::formats
