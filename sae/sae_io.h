// SAE folders on disk, in the formats researchers share SAEs in. One module per format, each
// written from that library's own loader source (sae_saelens.cpp, sae_sparsify.cpp,
// sae_dictionary_learning.cpp); this header is the one entry point.
//
// Read (load_sae tells them apart by their files):
//   SAELens      cfg.json + sae_weights.safetensors [+ sparsity.safetensors]: v6 (metadata nested,
//                sae_lens_version >= 6) and v5 / pre-6 (flat keys, activation_fn_str/_kwargs);
//                standard, gated, jumprelu, topk (with rescale_acts_by_decoder_norm), and saelab's
//                batchtopk and matryoshka_batchtopk; transcoders (d_out, W_skip, metadata.hook_name_out).
//                tanh-relu, per-token input normalisation and hook_z reshaping are refused with the reason.
//   sparsify     cfg.json + sae.safetensors (encoder.weight [d_sae, d_in], encoder.bias, W_dec, b_dec):
//                TopK, and its transcoders (transcode, skip_connection); groupmax refused with the reason.
//   circuit-tracer  a transcoder set: config.yaml + layer_{i}.safetensors (W_enc [F, d]); load_sae
//                takes a layer file (transcoder_set_layers lists them); ReLU and JumpReLU, skip path.
//   Gemma Scope  params.npz (read without Python): JumpReLU, no hook recorded (convert --hook).
//   dictionary_learning  ae.pt (a torch.save state dict, read without Python) + config.json:
//                AutoEncoder, AutoEncoderNew, GatedAutoEncoder, AutoEncoderTopK, BatchTopKSAE,
//                MatryoshkaBatchTopKSAE, JumpReluAutoEncoder.
// Every reading gives the code and reconstruction that library computes for the file; where the
// library computes something saelab's six architectures express only after a change of variables
// (decoder-norm rescaling, a fine-tuning scale, a never-learned threshold), it is folded into the
// weights on load, exactly, and recorded in LoadedSae::notes.
//
// Written (save_sae):
//   saelens      (the default) a folder SAELens v6 loads with its metadata and v5 loads too: the v6
//                keys, metadata nested with sae_lens_version, and the flat keys v5 requires
//                (hook_layer, hook_head_index, dataset_path, activation_fn_str/_kwargs). BatchTopK and
//                Matryoshka BatchTopK are written as SAELens writes them for inference: jumprelu
//                with a per-latent threshold.
//   saelens-v5   the flat pre-6 layout only.
//   sparsify     cfg.json + sae.safetensors (TopK SAEs only).
//
// Example:
//   LoadedSae s = load_sae("runs/saes/blocks.2.hook_resid_pre/topk-k32");
//   torch::Tensor f = s.sae.encode(x);            // [batch, d_sae]
//   save_sae("out/for-sparsify", s.sae, s.metadata, {}, SaeFormat::kSparsify);
#pragma once
#include <string>
#include <vector>

#include "sae/sae.h"

namespace saelab {

enum class SaeFormat { kSaeLens, kSaeLensV5, kSparsify, kDictionaryLearning };

/// "saelens", "saelens-v5", "sparsify", "dictionary_learning".
const char* format_name(SaeFormat format);
/// The formats save_sae writes, by name; throws naming them.
SaeFormat parse_write_format(const std::string& name);

struct SaeMetadata {
  std::string model_name;
  std::string hook_name;
  /// A transcoder's output hook (SAELens metadata.hook_name_out); empty for an SAE.
  std::string hook_name_out;
  int64_t context_size = 0;
  bool prepend_bos = true;
  std::string dataset_path;
  /// The layer SAEBench and SAELens v5 read (the first number in hook_name when not given); −1: unknown.
  int64_t hook_layer = -1;
  /// Attention head of a per-head hook; −1: none (null in cfg.json).
  int64_t hook_head_index = -1;
  std::string model_sha256;  ///< of the model file the SAE was trained on (saelab extension)
  /// Tokens the sparsity.safetensors densities were counted over (saelab extension; 0: unknown).
  int64_t density_tokens = 0;
  nlohmann::json to_json() const;
  /// hook_layer, or the first number in hook_name, or 0.
  int64_t layer() const;
};

struct LoadedSae {
  Sae sae;
  SaeMetadata metadata;
  torch::Tensor log10_density;  ///< [d_sae], undefined when sparsity.safetensors is absent
  std::string format;           ///< what the folder was read as, e.g. "SAELens v6", "sparsify"
  std::vector<std::string> notes;  ///< what was folded into the weights on load, one sentence each
};

/// Whether `dir` holds an SAE in one of the formats load_sae reads.
bool is_sae_folder(const std::string& dir);

/// The layer files of a circuit-tracer transcoder set (config.yaml + layer_{i}.safetensors), in
/// layer order; empty when `dir` is not one. Each file is one transcoder load_sae reads.
std::vector<std::string> transcoder_set_layers(const std::string& dir);

/// Writes transcoders as a circuit-tracer transcoder set: `dir`/config.yaml (model_kind
/// transcoder_set, the hooks below blocks.<layer>.) and layer_{l}.safetensors, l the layer of each
/// one's hook. Every layer from 0 up needs one, all reading and writing the same hook names; ReLU,
/// JumpReLU and BatchTopK (as JumpReLU) transcoders, with or without skip path.
void save_transcoder_set(const std::string& dir, const std::vector<const LoadedSae*>& transcoders);

/// Reads an SAE folder in any format above. Errors name the file and the field and say what is
/// wrong; no damaged file loads.
LoadedSae load_sae(const std::string& dir);

/// Writes the folder in `format` (not kDictionaryLearning), each file atomically; `log10_density`
/// may be undefined; weights are stored as `dtype` (float32, float16 or bfloat16). A format that
/// cannot express the SAE (sparsify and a non-TopK SAE) is refused before anything is written.
void save_sae(const std::string& dir, const Sae& sae, const SaeMetadata& metadata,
              const torch::Tensor& log10_density = {}, SaeFormat format = SaeFormat::kSaeLens,
              torch::Dtype dtype = torch::kFloat32);

}  // namespace saelab
