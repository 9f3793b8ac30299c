// saelab train-lm: trains the reference GPT on a corpus and writes a model folder.
#include <filesystem>

#include "apps/commands.h"
#include "apps/common.h"
#include "core/files.h"
#include "models/corpus.h"
#include "models/gpt.h"
#include "models/lm_data.h"
#include "models/lm_train.h"
#include "models/model_bundle.h"
#include "models/sentencepiece_tokenizer.h"

namespace saelab {

namespace {

struct TrainLmCommand {
  std::string corpus = "brown";
  std::string tokenizer;
  std::string out = "runs/brown-gpt";
  std::string name = "brown-gpt";
  template <class V>
  void fields(V& v) {
    v("corpus", corpus, "corpus: brown, brown:DIR, text:PATH or jsonl:PATH");
    v("tokenizer", tokenizer, "SentencePiece model file (saelab train-tokenizer)");
    v("out", out, "run folder: checkpoint, metrics, final model");
    v("name", name, "model name recorded in model.json", path_name());
  }
};

}  // namespace

void register_train_lm(CLI::App& app) {
  static TrainLmCommand args;
  static GptConfig model;
  static LmTrainOptions train;
  static std::string config;
  CLI::App* cmd = app.add_subcommand("train-lm", "train the reference GPT (resumes from OUT/checkpoint.pt)");
  cmd->add_option("--config", config, "JSON with \"model\" and \"train\" objects; flags override it");
  static OptionFlags<TrainLmCommand> arg_flags(cmd, &args);
  cmd->get_option("--tokenizer")->required();
  static OptionFlags<GptConfig> model_flags(cmd, &model);
  static OptionFlags<LmTrainOptions> train_flags(cmd, &train);
  cmd->callback([] {
    start_command();
    if (!config.empty()) {
      const json cfg = load_json_file(config, "training config");
      JsonFields top(cfg, config);
      if (const json* m = top.allow("model")) model = GptConfig::from_json(*m, config + ": model");
      if (const json* t = top.allow("train")) read_options(*t, config + ": train", train);
      top.finish();
    }
    arg_flags.apply();
    model_flags.apply();
    train_flags.apply();
    const RunLock lock = RunLock::folder(args.out, "model training folder");
    SentencePieceTokenizer tokenizer(args.tokenizer);
    model.vocab_size = tokenizer.vocab_size();
    model.validate();
    train.validate();

    const Corpus corpus = open_corpus(args.corpus, global_options().cache_dir);
    const auto train_stream = token_stream(tokenizer, split_documents(corpus, Split::kTrain));
    const auto val_stream = token_stream(tokenizer, split_documents(corpus, Split::kValidation));
    const torch::Tensor val = eval_contexts(val_stream, model.context_length, tokenizer.bos_id());
    const double entropy = unigram_entropy(val, tokenizer.vocab_size());
    std::fprintf(stderr, "train: %zu tokens, validation: %lld contexts of %lld, unigram entropy %.4f nats\n",
                 train_stream.size(), static_cast<long long>(val.size(0)),
                 static_cast<long long>(model.context_length), entropy);

    torch::jit::Module module = build_gpt(model, static_cast<uint64_t>(train.seed));
    const LmTrainResult r = train_lm(module, model, train, train_stream, val, tokenizer.bos_id(), args.out);
    if (!r.finished) {
      std::printf("stopped at step %lld of %lld; rerun the same command to continue\n",
                  static_cast<long long>(r.steps), static_cast<long long>(train.steps));
      return;
    }

    ModelInfo info;
    info.name = args.name;
    info.d_model = model.d_model;
    info.n_layers = model.n_layers;
    info.context_length = model.context_length;
    info.vocab_size = model.vocab_size;
    info.tokenizer = tokenizer.describe();
    info.hook_aliases = gpt_hook_aliases(model.n_layers);
    info.extra["architecture"] = model.to_json();
    info.extra["architecture"]["kind"] = "saelab-gpt (pre-LN, learned positions, tanh-GELU, tied embeddings)";
    info.extra["training"] = train.to_json();
    info.extra["training"]["corpus"] = args.corpus;
    info.extra["training"]["train_tokens"] = train_stream.size();
    info.extra["training"]["seconds"] = r.seconds;
    info.extra["training"]["final_train_loss"] = r.final_train_loss;
    info.extra["evaluation"] = {{"split", "validation"},
                                {"validation_loss", r.validation_loss},
                                {"unigram_entropy", entropy},
                                {"ratio", r.validation_loss / entropy},
                                {"tokens", val.size(0) * model.context_length},
                                {"first_contexts", {{"contexts", std::min(LmTrainResult::kFirstValidationContexts, val.size(0))},
                                                    {"validation_loss", r.first_contexts_loss}}},
                                {"units", "nats per token"}};
    namespace fs = std::filesystem;
    save_model_folder(module, info, args.out);
    const fs::path tok_dest = fs::path(args.out) / fs::path(args.tokenizer).filename();
    if (fs::absolute(tok_dest) != fs::absolute(args.tokenizer)) {
      write_file_atomic(tok_dest, read_file(args.tokenizer, "tokenizer"));
    }
    std::printf("validation loss %.4f nats/token, unigram entropy %.4f (ratio %.3f); model in %s\n",
                r.validation_loss, entropy, r.validation_loss / entropy, args.out.c_str());
  });
}

}  // namespace saelab
