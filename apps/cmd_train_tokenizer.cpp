// saelab train-tokenizer: trains a SentencePiece BPE model on a corpus's training split.
#include "apps/commands.h"
#include "apps/common.h"
#include "models/corpus.h"
#include "models/sentencepiece_tokenizer.h"

namespace saelab {

namespace {

struct TrainTokenizerCommand {
  std::string corpus = "brown";
  std::string out = "tokenizer.model";
  SentencePieceTrainOptions train;
  template <class V>
  void fields(V& v) {
    v("corpus", corpus, "corpus: brown, brown:DIR, text:PATH or jsonl:PATH");
    v("out", out, "model file to write");
    train.fields(v);
  }
};

}  // namespace

void register_train_tokenizer(CLI::App& app) {
  static TrainTokenizerCommand args;
  CLI::App* cmd = app.add_subcommand("train-tokenizer", "train a SentencePiece BPE tokenizer on a corpus's train split");
  static OptionFlags<TrainTokenizerCommand> flags(cmd, &args);
  cmd->callback([] {
    start_command();
    flags.apply();
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
