// `saelab model-init`: a model folder for a TorchScript file someone traced or scripted, found by
// probing the model rather than asked of the user.
//
// From forward passes on short inputs: where the logits are in the output (a tensor, a tuple
// element or a dict entry of shape [1, T, vocab]), the vocabulary (their width), d_model (the most
// common width of the [1, T, d] activations at the hook points), the layers (the module list whose
// numbered children take and return [1, T, d_model]: transformer.h.{i}, model.layers.{i},
// blocks.{i}), hence the residual-stream aliases blocks.{i}.hook_resid_pre / _post, and the
// context length (a [C, d_model] position-embedding parameter, else the longest input the model
// accepts, searched up to a bound). What could not be inferred is said, never guessed silently.
#pragma once
#include <string>
#include <vector>

#include "models/model_bundle.h"

namespace saelab {

struct ModelInitOptions {
  std::string model;      ///< the TorchScript file
  std::string tokenizer;  ///< a SentencePiece .model file, or a folder with GPT-2's encoder.json/vocab.json and vocab.bpe/merges.txt
  std::string out;        ///< the model folder to write (must not exist)
  std::string name;       ///< model name (empty: the file's stem)
  int64_t context_length = 0;  ///< 0: infer
  int64_t max_probe_length = 2048;  ///< longest input tried when searching the context length
};

struct ModelInitResult {
  ModelInfo info;
  std::vector<std::string> inferred;      ///< how each field was found, one line each
  std::vector<std::string> not_inferred;  ///< what could not be found and what was written instead
};

/// Token ids 1, 2, 3, 4, 1, … [length]: ids every vocabulary has, for probing a model that has no
/// tokenizer yet.
torch::Tensor small_token_ids(int64_t length);

/// Probes `options.model`, writes `options.out` (model.pt copied, the tokenizer files copied,
/// model.json), then opens the folder as every command will. Throws naming what is wrong.
ModelInitResult init_model_folder(const ModelInitOptions& options);

}  // namespace saelab
