// saelab model-init: a model folder (model.json, model.pt, tokenizer) for a bare TorchScript file.
#include "analysis/logit_effects.h"
#include "apps/commands.h"
#include "apps/common.h"
#include "models/model_bundle.h"
#include "models/model_init.h"

namespace saelab {

void register_model_init(CLI::App& app) {
  static ModelInitOptions o;
  CLI::App* cmd = app.add_subcommand("model-init", "make a model folder for a TorchScript file by probing the model");
  cmd->add_option("model", o.model, "the TorchScript file (traced or scripted)")->required();
  cmd->add_option("--tokenizer", o.tokenizer,
                  "a SentencePiece .model file, or a folder with GPT-2's encoder.json/vocab.json and "
                  "vocab.bpe/merges.txt")->required();
  cmd->add_option("--out", o.out, "model folder to write (must not exist)")->required();
  cmd->add_option("--name", o.name, "model name (default: the file's stem)");
  cmd->add_option("--context-length", o.context_length, "context length (default 0: inferred)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-probe-length", o.max_probe_length, "longest input tried when inferring the context length")
      ->capture_default_str()->check(CLI::Range(int64_t{8}, int64_t{1} << 20));
  cmd->callback([] {
    start_command();
    ModelInitResult r = init_model_folder(o);
    // The logit lens (final norm and unembedding) that top, steer and the study read logit effects
    // through: found now, or said now, not after an expensive pass.
    LanguageModel lm = LanguageModel::open(o.out);
    try {
      const Unembedding u = find_unembedding(lm);
      r.inferred.push_back("logit lens: unembedding " + u.unembed_name + ", final norm " +
                           (u.ln_name.empty() ? std::string("none") : u.ln_name + " (" + u.norm + ")"));
    } catch (const c10::Error& e) {
      r.not_inferred.push_back("logit lens (top, steer and the study's logit effects need it; add \"logit_lens\" to "
                               "model.json): " + e.msg());
    }
    std::printf("wrote %s (model.json, model.pt, tokenizer)\ninferred:\n", o.out.c_str());
    for (const auto& line : r.inferred) std::printf("  %s\n", line.c_str());
    if (!r.not_inferred.empty()) std::printf("not inferred (check model.json):\n");
    for (const auto& line : r.not_inferred) std::printf("  %s\n", line.c_str());
  });
}

}  // namespace saelab
