// One registration function per subcommand (one file each).
#pragma once
#include <CLI/CLI.hpp>

namespace saelab {

void register_train_tokenizer(CLI::App& app);
void register_train_lm(CLI::App& app);
void register_generate(CLI::App& app);
void register_eval_lm(CLI::App& app);
void register_bench(CLI::App& app);
void register_demo(CLI::App& app);
void register_hooks(CLI::App& app);
void register_capture(CLI::App& app);
void register_train(CLI::App& app);
void register_bench_sae(CLI::App& app);
void register_bench_dist(CLI::App& app);
void register_eval(CLI::App& app);
void register_top(CLI::App& app);
void register_graph(CLI::App& app);
void register_steer(CLI::App& app);
void register_convert(CLI::App& app);
void register_model_init(CLI::App& app);
void register_export_neuronpedia(CLI::App& app);
void register_serve(CLI::App& app);
void register_bench_serve(CLI::App& app);

}  // namespace saelab
