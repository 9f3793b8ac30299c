#include "analysis/attached_sae.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/files.h"

namespace saelab {

std::vector<std::string> find_sae_dirs(const std::string& path) {
  namespace fs = std::filesystem;
  TORCH_CHECK(fs::exists(path), "SAE folder '", path, "' does not exist");
  if (is_sae_folder(path) || fs::is_regular_file(path)) return {path};  // a folder, or a transcoder set's layer file
  if (auto layers = transcoder_set_layers(path); !layers.empty()) return layers;
  std::vector<std::string> dirs;
  for (auto it = fs::recursive_directory_iterator(path); it != fs::recursive_directory_iterator(); ++it) {
    if (!it->is_directory()) continue;
    const std::string dir = it->path().string();
    if (is_sae_folder(dir)) dirs.push_back(dir);
    if (auto layers = transcoder_set_layers(dir); !layers.empty()) {
      dirs.insert(dirs.end(), layers.begin(), layers.end());
      it.disable_recursion_pending();
    }
  }
  std::sort(dirs.begin(), dirs.end());
  TORCH_CHECK(!dirs.empty(), "'", path, "' holds no SAE (no cfg.json or ae.pt in it or below it)");
  return dirs;
}

std::vector<AttachedSae> attach_saes(LanguageModel& lm, HookedModel& hooked, const std::vector<std::string>& dirs,
                                     bool allow_other_model) {
  namespace fs = std::filesystem;
  TORCH_CHECK(!dirs.empty(), "no SAE given");
  std::string model_sha;
  std::vector<AttachedSae> out;
  std::set<std::string> hooks;
  for (const auto& dir : dirs) {
    AttachedSae a{"", dir, "", "", load_sae(dir)};
    const std::string& hook_name = a.loaded.metadata.hook_name;
    TORCH_CHECK(!hook_name.empty(), "SAE '", dir, "' names no hook point (", a.loaded.format,
                " files do not always record one); give it one with `saelab convert ", dir, " OUT --hook NAME`");
    auto resolve = [&](const std::string& name) {
      try {
        return hooked.preferred_name(name);
      } catch (const c10::Error& e) {
        // Other libraries name hooks relative to the model's base module (sparsify's h.6 for
        // transformer.h.6): a single hook point ending in ".<name>" is that one.
        std::vector<std::string> matches;
        for (const auto& point : hooked.hook_points()) {
          if (point.size() > name.size() && point.compare(point.size() - name.size(), name.size(), name) == 0 &&
              point[point.size() - name.size() - 1] == '.') {
            matches.push_back(point);
          }
        }
        // An SAE of another model says so first: that is the usual reason its hook is missing.
        const std::string& trained_on = a.loaded.metadata.model_name;
        const std::string other = !trained_on.empty() && trained_on != lm.info().name
                                      ? "SAE '" + dir + "' was trained on model '" + trained_on + "', not '" + lm.info().name + "': "
                                      : std::string();
        TORCH_CHECK(matches.size() == 1, other, "SAE '", dir, "' was trained at hook '", name, "', which model '",
                    lm.info().name, "' does not have: ", e.msg());
        return hooked.preferred_name(matches.front());
      }
    };
    a.hook = resolve(hook_name);
    const std::string& out_name = a.loaded.metadata.hook_name_out;
    const SaeConfig& c = a.sae().config();
    TORCH_CHECK(!out_name.empty() || (c.out_width() == c.d_in && !c.skip), "SAE '", dir,
                "' is a transcoder (d_out ", c.out_width(), c.skip ? ", a skip path" : "",
                ") but names no output hook (metadata.hook_name_out)");
    a.hook_out = out_name.empty() ? a.hook : resolve(out_name);
    TORCH_CHECK(!a.transcoder() || !hooked.same_hook(a.hook, a.hook_out), "transcoder '", dir, "' reads and writes hook '",
                a.hook, "'");
    const std::string& sha = a.loaded.metadata.model_sha256;
    if (!sha.empty() && !allow_other_model) {
      if (model_sha.empty()) model_sha = sha256_file(lm.model_path());
      TORCH_CHECK(sha == model_sha, "SAE '", dir, "' was trained on another model file (SHA-256 ", sha.substr(0, 12),
                  "…, this model's is ", model_sha.substr(0, 12), "…); pass --allow-other-model to use it anyway");
    }
    const fs::path p(dir);
    a.name = p.has_parent_path() ? p.parent_path().filename().string() + "/" + p.filename().string()
                                 : p.filename().string();
    hooks.insert(a.hook);
    hooks.insert(a.hook_out);
    out.push_back(std::move(a));
  }
  // Widths: one probe pass capturing every hook the SAEs use.
  const ActivationCache cache = hooked.run_with_cache(torch::full({1, 2}, lm.tokenizer().bos_id(), torch::kInt64),
                                                     {hooks.begin(), hooks.end()});
  for (const auto& a : out) {
    const torch::Tensor& x = cache[a.hook];
    TORCH_CHECK(x.size(-1) == a.sae().config().d_in, "SAE '", a.dir, "' has d_in ", a.sae().config().d_in,
                " but hook '", a.hook, "' of model '", lm.info().name, "' has width ", x.size(-1));
    const torch::Tensor& y = cache[a.hook_out];
    TORCH_CHECK(y.size(-1) == a.sae().config().out_width(), "transcoder '", a.dir, "' has d_out ",
                a.sae().config().out_width(), " but hook '", a.hook_out, "' of model '", lm.info().name, "' has width ",
                y.size(-1));
  }
  return out;
}

std::string AttachedSae::hooks_text() const {
  return transcoder() ? "reads " + hook + ", writes " + hook_out : "reads " + hook;
}

torch::Tensor coder_output(const Sae& sae, const torch::Tensor& x) {
  const torch::Tensor x32 = x.to(torch::kFloat32);
  return sae.predict(x32, sae.encode(x32)).to(x.dtype());
}

void splice_coders(HookScope& scope, const std::vector<const AttachedSae*>& coders, bool include_bos, bool with_error) {
  std::set<std::string> written;
  for (const AttachedSae* a : coders) {
    TORCH_CHECK(written.insert(a->hook_out).second, "two coders write hook '", a->hook_out, "' in one splice");
  }
  for (const AttachedSae* a : coders) {
    const Sae* sae = &a->sae();
    // The prediction for the activation v at the output hook, from x at the input hook.
    auto splice = [sae, include_bos, with_error](const torch::Tensor& v, const torch::Tensor& x) {
      const int64_t skip = include_bos ? 0 : 1;
      torch::Tensor out = v.clone();
      const torch::Tensor part = out.narrow(1, skip, v.size(1) - skip);
      torch::Tensor r = coder_output(*sae, x.narrow(1, skip, x.size(1) - skip));
      if (with_error) r = r + (part - r);
      part.copy_(r);
      return out;
    };
    if (!a->transcoder()) {
      scope.replace(a->hook, [splice](const torch::Tensor& v) { return splice(v, v); });
    } else {
      scope.capture(a->hook);
      const std::string in = a->hook;
      HookScope* s = &scope;
      scope.replace(a->hook_out, [splice, s, in](const torch::Tensor& v) { return splice(v, s->captured(in)); });
    }
  }
}

}  // namespace saelab
