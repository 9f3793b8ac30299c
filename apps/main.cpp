// saelab: dictionary-learning interpretability for TorchScript language models.
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/common.h"
#include "core/distributed.h"
#include "core/files.h"
#include "core/omp_spin.h"
#include "models/model_bundle.h"

namespace saelab {

GlobalOptions& global_options() {
  static GlobalOptions options;
  return options;
}

namespace {
OptionFlags<GlobalOptions>* global_flags = nullptr;
}  // namespace

void start_command(bool keep_freed_memory, bool distributed) {
  if (global_flags != nullptr) global_flags->apply();
  {
    const std::string& name = global_options().device;
    c10::optional<torch::Device> device;
    try {
      device = torch::Device(name);
    } catch (const c10::Error&) {
      TORCH_CHECK(false, "--device '", name, "' is not a device (cpu, cuda or cuda:N)");
    }
    TORCH_CHECK(device->is_cpu() || !device->is_cuda() || torch::cuda::is_available(), "--device ", name,
                ": this LibTorch has no CUDA (Debian's libtorch is built for the CPU); use --device cpu");
    TORCH_CHECK(device->is_cpu(), "--device ", name,
                ": saelab runs on the CPU only so far (the GPU path is not built yet); use --device cpu");
  }
  const LaunchInfo launch = launch_info();
  TORCH_CHECK(distributed || launch.world_size == 1, "this command runs in one process; under torchrun (WORLD_SIZE=",
              launch.world_size, ") only 'saelab train' and 'saelab capture' are distributed so far");
  init_runtime(RuntimeOptions{global_options().threads, 0, keep_freed_memory});
}

}  // namespace saelab

namespace {

// One line of an error: for a failure inside the model's forward pass, its cause.
std::string one_line(const std::string& msg) {
  bool in_forward = false;
  const std::string line = saelab::error_line(msg, &in_forward);
  return in_forward ? "the model's forward pass failed: " + line : line;
}

// Edit distance between two option names (insertions, deletions, substitutions).
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// For an option the command does not have: "unknown option '--hook' for 'train'; did you mean
// '--hooks'?" when one of its options (or the global ones) is a typo away; else "".
std::string near_miss_hint(const CLI::App& app, const CLI::ParseError& e) {
  const std::string what = e.what(), marker = " not expected: ";  // "The following argument(s) was/were …"
  const size_t at = what.find(marker);
  if (at == std::string::npos) return "";
  // the first unexpected word that looks like an option (CLI11 may list others before it)
  std::stringstream listed(what.substr(at + marker.size()));
  std::string word;
  while (listed >> word && word.rfind("--", 0) != 0) {
  }
  if (word.rfind("--", 0) != 0) return "";
  word = word.substr(0, word.find('='));
  const std::vector<CLI::App*> used = app.get_subcommands();
  const CLI::App* command = used.empty() ? &app : used.front();
  std::string best;
  size_t best_distance = 3;  // at most two edits away
  for (const CLI::App* scope : {command, &app}) {
    for (const CLI::Option* o : scope->get_options()) {
      for (const std::string& name : o->get_lnames()) {
        const size_t d = edit_distance(word, "--" + name);
        if (d < best_distance) {
          best_distance = d;
          best = "--" + name;
        }
      }
    }
  }
  const std::string where = used.empty() ? std::string() : " for '" + command->get_name() + "'";
  return "unknown option '" + word + "'" + where +
         (best.empty() ? "; see --help" : "; did you mean '" + best + "'?");
}

// --help without CLI11's flag notation: "--x,--no-x{false}" shows as "--x, --no-x", and a
// required option shows no default (there is none to fall back on).
class HelpFormatter : public CLI::Formatter {
 public:
  std::string make_option_name(const CLI::Option* opt, bool is_positional) const override {
    std::string s = CLI::Formatter::make_option_name(opt, is_positional);
    for (const std::string noise : {"{false}", "{true}"}) {
      for (size_t at = s.find(noise); at != std::string::npos; at = s.find(noise)) s.erase(at, noise.size());
    }
    for (size_t at = s.find(','); at != std::string::npos; at = s.find(',', at + 2)) {
      if (at + 1 < s.size() && s[at + 1] != ' ') s.insert(at + 1, " ");
    }
    return s;
  }
  std::string make_option_opts(const CLI::Option* opt) const override {
    std::string s = CLI::Formatter::make_option_opts(opt);
    if (opt->get_required()) {
      const size_t eq = s.find('=');
      if (eq != std::string::npos) s.erase(eq, s.find(' ', eq) == std::string::npos ? std::string::npos : s.find(' ', eq) - eq);
    }
    return s;
  }
};

}  // namespace

int main(int argc, char** argv) {
  using namespace saelab;
  bound_openmp_spinning(argv);
  CLI::App app{"saelab: sparse autoencoders and feature analysis for TorchScript language models"};
  app.formatter(std::make_shared<HelpFormatter>());  // before the commands, which take it from here
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();
  static OptionFlags<GlobalOptions> flags(&app, &global_options());
  global_flags = &flags;
  // Global flags (--threads, --cache, --device) also after the command's name.
  app.fallthrough();
  // In the order of the work: the study, its stages, the files in and out, the model, benchmarks.
  register_demo(app);
  register_hooks(app);
  register_capture(app);
  register_train(app);
  register_eval(app);
  register_top(app);
  register_graph(app);
  register_steer(app);
  register_serve(app);
  register_export_neuronpedia(app);
  register_convert(app);
  register_model_init(app);
  register_train_tokenizer(app);
  register_train_lm(app);
  register_generate(app);
  register_eval_lm(app);
  register_bench(app);
  register_bench_sae(app);
  register_bench_dist(app);
  register_bench_serve(app);
  set_command_line(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // The first word that is neither a global flag nor its value names the command.
    const char* word = nullptr;
    for (int i = 1; i < argc && word == nullptr; ++i) {
      const std::string a = argv[i];
      if (a == "--threads" || a == "--cache" || a == "--device") {
        ++i;
      } else if (a.empty() || a[0] != '-') {
        word = argv[i];
      }
    }
    if (word != nullptr && app.get_subcommands().empty() && e.get_exit_code() != 0) {
      std::string names;
      for (const CLI::App* sub : app.get_subcommands({})) names += (names.empty() ? "" : ", ") + sub->get_name();
      std::fprintf(stderr, "saelab: error: unknown command '%s' (commands: %s)\n", word, names.c_str());
      return 2;
    }
    if (const std::string hint = near_miss_hint(app, e); !hint.empty()) {
      std::fprintf(stderr, "saelab: error: %s\n", hint.c_str());
      return 2;
    }
    return app.exit(e);
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "\nsaelab: error: %s\n", one_line(e.what_without_backtrace()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nsaelab: error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
  return 0;
}
