// saelab eval-lm: a model's cross-entropy on a corpus split, next to the split's unigram entropy.
#include "apps/commands.h"
#include "apps/common.h"
#include "models/corpus.h"
#include "models/lm_data.h"
#include "models/lm_train.h"
#include "models/model_bundle.h"

namespace saelab {

void register_eval_lm(CLI::App& app) {
  struct Args {
    std::string model = default_model_dir();
    std::string corpus = "brown";
    std::string split = "validation";
    int64_t max_contexts = 0;
  };
  static Args args;
  CLI::App* cmd = app.add_subcommand("eval-lm", "cross-entropy of a model on a corpus split");
  cmd->add_option("--model", args.model, "model folder with model.json")->capture_default_str();
  cmd->add_option("--corpus", args.corpus, "brown, brown:DIR, text:PATH or jsonl:PATH")->capture_default_str();
  cmd->add_option("--split", args.split, "train, validation or test")->capture_default_str();
  cmd->add_option("--max-contexts", args.max_contexts, "evaluate at most this many contexts (0: all)")
      ->capture_default_str();
  cmd->callback([] {
    start_command();
    LanguageModel lm = LanguageModel::open(args.model);
    const Corpus corpus = open_corpus(args.corpus, global_options().cache_dir);
    const auto stream = token_stream(lm.tokenizer(), split_documents(corpus, parse_split(args.split)), false);
    const torch::Tensor contexts =
        eval_contexts(stream, lm.info().context_length, lm.tokenizer().bos_id(), args.max_contexts);
    const double loss = evaluate_lm([&lm](const torch::Tensor& t) { return lm.logits(t); }, contexts);
    const double entropy = unigram_entropy(contexts, lm.tokenizer().vocab_size());
    std::printf("%s split: %lld tokens, cross-entropy %.6f nats/token, unigram entropy %.6f, ratio %.3f\n",
                args.split.c_str(), static_cast<long long>(contexts.size(0) * lm.info().context_length), loss,
                entropy, loss / entropy);
  });
}

}  // namespace saelab
