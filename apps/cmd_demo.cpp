// saelab demo: the main job on the bundled model and corpus. For now: load the reference model,
// print a generated sample and its validation loss next to the unigram entropy.
#include "apps/commands.h"
#include "apps/common.h"
#include "models/corpus.h"
#include "models/generate.h"
#include "models/lm_data.h"
#include "models/lm_train.h"
#include "models/model_bundle.h"

namespace saelab {

void register_demo(CLI::App& app) {
  struct Args {
    std::string model = default_model_dir();
    std::string prompt = "The jury said that the city";
  };
  static Args args;
  CLI::App* cmd = app.add_subcommand("demo", "run the main pipeline on the bundled model and Brown corpus");
  cmd->add_option("--model", args.model, "model folder with model.json")->capture_default_str();
  cmd->add_option("--prompt", args.prompt, "prompt for the generated sample")->capture_default_str();
  cmd->callback([] {
    start_command();
    LanguageModel lm = LanguageModel::open(args.model);
    const ModelInfo& info = lm.info();
    std::printf("model: %s (%lld layers, d_model %lld, context %lld, vocabulary %lld, %s tokenizer)\n",
                info.name.c_str(), static_cast<long long>(info.n_layers), static_cast<long long>(info.d_model),
                static_cast<long long>(info.context_length), static_cast<long long>(lm.tokenizer().vocab_size()),
                lm.tokenizer().kind().c_str());
    GenerateOptions gen;
    gen.seed = 1;
    const auto prompt = prompt_ids(lm, args.prompt);
    const auto ids = generate(lm, prompt, gen);
    std::printf("\nsample (temperature %.1f, top-k %lld):\n  %s\n\n", gen.temperature,
                static_cast<long long>(gen.top_k), generated_text(lm, prompt, ids).c_str());

    const Corpus corpus = open_corpus("brown", global_options().cache_dir);
    const auto stream = token_stream(lm.tokenizer(), split_documents(corpus, Split::kValidation), false);
    const torch::Tensor contexts = eval_contexts(stream, info.context_length, lm.tokenizer().bos_id());
    const double loss = evaluate_lm([&lm](const torch::Tensor& t) { return lm.logits(t); }, contexts);
    const double entropy = unigram_entropy(contexts, lm.tokenizer().vocab_size());
    std::printf("Brown validation split: %lld tokens\n", static_cast<long long>(contexts.numel() - contexts.size(0)));
    std::printf("  cross-entropy   %.4f nats/token (perplexity %.1f)\n", loss, std::exp(loss));
    std::printf("  unigram entropy %.4f nats/token\n", entropy);
    std::printf("  ratio           %.3f (quality bar: <= 0.7)\n", loss / entropy);
  });
}

}  // namespace saelab
