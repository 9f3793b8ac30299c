// saelab train-tokenizer: trains a SentencePiece BPE model on a corpus's training split.
#include "apps/commands.h"
#include "apps/common.h"
#include "models/corpus.h"
#include "models/sentencepiece_tokenizer.h"

namespace saelab {

void register_train_tokenizer(CLI::App& app) {
  struct Args {
    std::string corpus = "brown";
    std::string out = "tokenizer.model";
    SentencePieceTrainOptions train;
  };
  static Args args;
  CLI::App* cmd = app.add_subcommand("train-tokenizer", "train a SentencePiece BPE tokenizer on a corpus's train split");
  cmd->add_option("--corpus", args.corpus, "brown, brown:DIR, text:PATH or jsonl:PATH")->capture_default_str();
  cmd->add_option("--out", args.out, "model file to write")->capture_default_str();
  cmd->add_option("--vocab-size", args.train.vocab_size, "vocabulary size")->capture_default_str();
  cmd->add_option("--model-type", args.train.model_type, "bpe or unigram")->capture_default_str();
  cmd->callback([] {
    start_command();
    const Corpus corpus = open_corpus(args.corpus, global_options().cache_dir);
    const auto docs = split_documents(corpus, Split::kTrain);
    std::fprintf(stderr, "training a %lld-piece %s tokenizer on %zu documents\n",
                 static_cast<long long>(args.train.vocab_size), args.train.model_type.c_str(), docs.size());
    train_sentencepiece(docs, args.train, args.out);
    SentencePieceTokenizer tok(args.out);
    std::printf("wrote %s (%lld pieces)\n", args.out.c_str(), static_cast<long long>(tok.vocab_size()));
  });
}

}  // namespace saelab
