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

void register_train_lm(CLI::App& app) {
  struct Args {
    std::string corpus = "brown";
    std::string tokenizer;
    std::string out = "runs/brown-gpt";
    std::string config;
    std::string name = "brown-gpt";
  };
  static Args args;
  static GptConfig model;
  static LmTrainOptions train;
  CLI::App* cmd = app.add_subcommand("train-lm", "train the reference GPT (resumes from OUT/checkpoint.pt)");
  cmd->add_option("--corpus", args.corpus, "brown, brown:DIR, text:PATH or jsonl:PATH")->capture_default_str();
  cmd->add_option("--tokenizer", args.tokenizer, "SentencePiece model file (saelab train-tokenizer)")->required();
  cmd->add_option("--out", args.out, "run folder: checkpoint, metrics, final model")->capture_default_str();
  cmd->add_option("--name", args.name, "model name recorded in model.json")->capture_default_str();
  cmd->add_option("--config", args.config, "JSON with \"model\" and \"train\" objects; flags override it");
  static FlagBinder<GptConfig> mflags(cmd, &model);
  mflags.add("--d-model", &GptConfig::d_model, "residual width");
  mflags.add("--n-layers", &GptConfig::n_layers, "transformer blocks");
  mflags.add("--n-heads", &GptConfig::n_heads, "attention heads");
  mflags.add("--context-length", &GptConfig::context_length, "context length");
  static FlagBinder<LmTrainOptions> tflags(cmd, &train);
  tflags.add("--steps", &LmTrainOptions::steps, "optimizer steps");
  tflags.add("--batch-size", &LmTrainOptions::batch_size, "contexts per step");
  tflags.add("--lr", &LmTrainOptions::lr, "peak learning rate");
  tflags.add("--warmup-steps", &LmTrainOptions::warmup_steps, "linear warm-up steps");
  tflags.add("--weight-decay", &LmTrainOptions::weight_decay, "AdamW weight decay");
  tflags.add("--eval-every", &LmTrainOptions::eval_every, "validate every N steps");
  tflags.add("--checkpoint-every", &LmTrainOptions::checkpoint_every, "checkpoint every N steps");
  tflags.add("--seed", &LmTrainOptions::seed, "seed");
  tflags.add("--stop-after", &LmTrainOptions::stop_after, "stop this run after N steps (resume later)");
  cmd->callback([] {
    start_command();
    if (!args.config.empty()) {
      const json cfg = load_json_file(args.config, "training config");
      JsonFields top(cfg, args.config);
      if (const json* m = top.allow("model")) model = GptConfig::from_json(*m, args.config + ": model");
      if (const json* t = top.allow("train")) {
        JsonFields f(*t, args.config + ": train");
        f.read("steps", train.steps);
        f.read("batch_size", train.batch_size);
        f.read("lr", train.lr);
        f.read("min_lr_ratio", train.min_lr_ratio);
        f.read("warmup_steps", train.warmup_steps);
        f.read("weight_decay", train.weight_decay);
        f.read("grad_clip", train.grad_clip);
        f.read("eval_every", train.eval_every);
        f.read("eval_rows", train.eval_rows);
        f.read("checkpoint_every", train.checkpoint_every);
        f.read("seed", train.seed);
        f.finish();
      }
      top.finish();
    }
    mflags.apply();
    tflags.apply();
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
    info.hook_aliases = residual_aliases("blocks.", model.n_layers);
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
