// saelab convert: SAE folders from one library's format to another's (sae/sae_io.h).
#include <filesystem>
#include <map>

#include "analysis/attached_sae.h"
#include "apps/commands.h"
#include "apps/common.h"
#include "core/files.h"
#include "core/staged_folder.h"
#include "sae/sae_io.h"

namespace saelab {

namespace {

struct ConvertOptions {
  std::string to = "saelens";
  std::string hook;
  std::string hook_out;
  std::string model_name;
  int64_t context_size = 0;
  std::string dtype = "float32";

  template <class V>
  void fields(V& v) {
    v("to", to, "format to write: saelens (loads in SAELens v6 and v5), saelens-v5 (flat pre-6 keys), sparsify, or "
      "circuit-tracer (transcoders of one name at every layer as a transcoder set: OUT, or OUT/<name> for several names)",
      non_empty());
    v("hook", hook, "hook point to record (for files that name none, e.g. dictionary_learning's and Gemma Scope's)");
    v("hook_out", hook_out, "the output hook to record: the coder is a transcoder from --hook to this hook (e.g. Gemma Scope's transcoders)");
    v("model_name", model_name, "model name to record (empty: keep the file's)");
    v("context_size", context_size, "context length to record (0: keep the file's)", at_least(0));
    v("dtype", dtype, "weight dtype to write: float32, float16 or bfloat16", non_empty());
  }
};

torch::Dtype parse_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "float16") return torch::kFloat16;
  if (name == "bfloat16") return torch::kBFloat16;
  TORCH_CHECK(false, "--dtype must be float32, float16 or bfloat16 (got '", name, "')");
}

}  // namespace

void register_convert(CLI::App& app) {
  static std::string in, out;
  static ConvertOptions options;
  CLI::App* cmd = app.add_subcommand(
      "convert", "convert SAE folders between SAELens (v6, v5), sparsify, dictionary_learning and circuit-tracer formats");
  cmd->add_option("in", in, "SAE folder, or a folder of them (a training run, a sparsify run)")->required();
  cmd->add_option("out", out, "folder to write (must not exist)")->required();
  static OptionFlags<ConvertOptions> flags(cmd, &options);
  cmd->callback([] {
    start_command();
    flags.apply();
    namespace fs = std::filesystem;
    const bool transcoder_set = options.to == "circuit-tracer";
    const SaeFormat format = transcoder_set ? SaeFormat::kSaeLens : parse_write_format(options.to);
    const torch::Dtype dtype = parse_dtype(options.dtype);
    const std::vector<std::string> dirs = find_sae_dirs(in);
    TORCH_CHECK((options.hook.empty() && options.hook_out.empty()) || dirs.size() == 1, "--hook and --hook-out name one "
                "coder's hooks, but '", in, "' holds ", dirs.size(), " SAEs");
    // Everything is read and checked first, then written into a temporary sibling renamed at the
    // end: a failure leaves no OUT that looks complete.
    std::vector<LoadedSae> loaded;
    for (const auto& dir : dirs) {
      loaded.push_back(load_sae(dir));
      SaeMetadata& m = loaded.back().metadata;
      if (!options.hook.empty()) m.hook_name = options.hook;
      if (!options.hook_out.empty()) {
        TORCH_CHECK(!loaded.back().sae.config().apply_b_dec_to_input, "'", dir, "' subtracts b_dec from its input, so it "
                    "reconstructs that input (an SAE); --hook-out is for transcoders");
        m.hook_name_out = options.hook_out;
      }
      if (!options.model_name.empty()) m.model_name = options.model_name;
      if (options.context_size > 0) m.context_size = options.context_size;
    }
    const fs::path target = fs::path(out).lexically_normal();
    if (transcoder_set) {
      // One set per transcoder name (a run's folder name, e.g. topk-k32), its layers from the hooks.
      std::map<std::string, std::vector<const LoadedSae*>> sets;
      for (size_t i = 0; i < dirs.size(); ++i) {
        const fs::path p(dirs[i]);
        const std::string name = fs::is_regular_file(p) ? p.parent_path().filename().string() : p.filename().string();
        sets[name].push_back(&loaded[i]);
      }
      write_new_folder(target, "output folder", [&](const fs::path& tmp) {
        for (const auto& [name, members] : sets) {
          const fs::path dir = sets.size() == 1 ? tmp : tmp / name;
          try {
            save_transcoder_set(dir.string(), members);
          } catch (const c10::Error& e) {
            TORCH_CHECK(false, "transcoders named '", name, "': ", e.msg());
          }
          std::printf("%zu transcoders '%s' -> %s (circuit-tracer transcoder set)\n", members.size(), name.c_str(),
                      (sets.size() == 1 ? target : target / name).string().c_str());
        }
      });
      return;
    }
    write_new_folder(target, "output folder", [&](const fs::path& tmp) {
      for (size_t i = 0; i < dirs.size(); ++i) {
        fs::path rel = fs::path(dirs[i]).lexically_relative(fs::path(in));
        if (rel.extension() == ".safetensors") rel.replace_extension();  // a transcoder set's layer_<N> file: folder layer_<N>
        const bool self = rel.empty() || rel == ".";
        const LoadedSae& s = loaded[i];
        save_sae((self ? tmp : tmp / rel).string(), s.sae, s.metadata,
                 format == SaeFormat::kSparsify ? torch::Tensor() : s.log10_density, format, dtype);
        const SaeConfig& c = s.sae.config();
        std::printf("%s (%s) -> %s (%s): %s, d_in %lld, d_sae %lld%s, hook '%s'\n", dirs[i].c_str(), s.format.c_str(),
                    (self ? target : target / rel).string().c_str(), format_name(format),
                    architecture_name(c.architecture), static_cast<long long>(c.d_in), static_cast<long long>(c.d_sae),
                    uses_k(c.architecture) ? (", k " + std::to_string(c.k)).c_str() : "", s.metadata.hook_name.c_str());
        for (const auto& note : s.notes) std::printf("  note: %s\n", note.c_str());
      }
    });
  });
}

}  // namespace saelab
