// saelab hooks: lists a model's hook points with their shapes on a sample input.
#include "apps/commands.h"
#include "apps/common.h"
#include "models/hooked_model.h"
#include "models/model_bundle.h"
#include "models/model_init.h"
#include "core/files.h"

#include <optional>

namespace saelab {

void register_hooks(CLI::App& app) {
  struct Args {
    std::string model = default_model_dir();
    int64_t length = 8;
  };
  static Args args;
  CLI::App* cmd = app.add_subcommand("hooks", "list every hook point of a model with its shape");
  cmd->add_option("model", args.model, "model folder with model.json, or a bare TorchScript file")->capture_default_str();
  cmd->add_option("--length", args.length, "tokens in the sample input")->capture_default_str();
  cmd->callback([] {
    start_command();
    // A bare TorchScript file needs no model.json: its hook points show on small token ids.
    const bool bare = starts_like_zip(args.model);
    std::optional<LanguageModel> lm;
    torch::jit::Module module;
    std::string name = args.model;
    int64_t T = args.length;
    TORCH_CHECK(T >= 1, "--length must be at least 1 (got ", T, ")");
    if (bare) {
      module = load_torchscript(args.model);
      module.eval();
    } else {
      lm.emplace(LanguageModel::open(args.model));
      module = lm->module();
      name = lm->info().name;
      TORCH_CHECK(T <= lm->info().context_length, "--length ", T, " is past the context of model '", name, "' (",
                  lm->info().context_length, " tokens)");
    }
    HookedModel hooked(module, bare ? nlohmann::json::object() : lm->info().hook_aliases);
    const torch::Tensor tokens = bare ? small_token_ids(T).unsqueeze(0)
                                      : torch::randint(0, lm->tokenizer().vocab_size(), {1, T}, torch::kInt64);
    ActivationCache cache;
    try {
      cache = hooked.run_with_cache(tokens, hooked.hook_points());
    } catch (const std::exception& e) {
      TORCH_CHECK(false, "model '", args.model, "' fails on a [1, ", T, "] input of token ids: ", error_line(e));
    }
    std::map<std::string, std::string> alias_of;
    for (auto it = hooked.aliases().begin(); it != hooked.aliases().end(); ++it) {
      const HookTarget t = hooked.target(it.key());
      alias_of[t.point] += " " + it.key() + (t.computed() ? " (normalized: " + t.normalize + ")" : "");
    }
    std::printf("%zu hook points of %s (sample input [1, %lld]):\n", hooked.hook_points().size(), name.c_str(),
                static_cast<long long>(T));
    for (const auto& p : hooked.hook_points()) {
      const torch::Tensor& t = cache[p];
      std::string shape = "[";
      for (int64_t i = 0; i < t.dim(); ++i) shape += (i ? ", " : "") + std::to_string(t.size(i));
      shape += "]";
      std::printf("  %-36s %-16s %s%s\n", p.c_str(), shape.c_str(), c10::toString(t.scalar_type()),
                  alias_of.count(p) ? ("  alias:" + alias_of[p]).c_str() : "");
    }
  });
}

}  // namespace saelab
