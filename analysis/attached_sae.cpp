#include "analysis/attached_sae.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/files.h"

namespace saelab {

std::vector<std::string> find_sae_dirs(const std::string& path) {
  namespace fs = std::filesystem;
  TORCH_CHECK(fs::exists(path), "SAE folder '", path, "' does not exist");
  if (is_sae_folder(path)) return {path};
  std::vector<std::string> dirs;
  for (const auto& e : fs::recursive_directory_iterator(path)) {
    if (e.is_directory() && is_sae_folder(e.path().string())) dirs.push_back(e.path().string());
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
    AttachedSae a{"", dir, "", load_sae(dir)};
    const std::string& hook_name = a.loaded.metadata.hook_name;
    TORCH_CHECK(!hook_name.empty(), "SAE '", dir, "' names no hook point (", a.loaded.format,
                " files do not always record one); give it one with `saelab convert ", dir, " OUT --hook NAME`");
    try {
      a.hook = hooked.preferred_name(hook_name);
    } catch (const c10::Error& e) {
      // Other libraries name hooks relative to the model's base module (sparsify's h.6 for
      // transformer.h.6): a single hook point ending in ".<name>" is that one.
      std::vector<std::string> matches;
      for (const auto& point : hooked.hook_points()) {
        if (point.size() > hook_name.size() && point.compare(point.size() - hook_name.size(), hook_name.size(), hook_name) == 0 &&
            point[point.size() - hook_name.size() - 1] == '.') {
          matches.push_back(point);
        }
      }
      TORCH_CHECK(matches.size() == 1, "SAE '", dir, "' was trained at hook '", hook_name, "', which model '",
                  lm.info().name, "' does not have: ", e.msg());
      a.hook = hooked.preferred_name(matches.front());
    }
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
    out.push_back(std::move(a));
  }
  // Widths: one probe pass capturing every hook the SAEs use.
  const ActivationCache cache = hooked.run_with_cache(torch::full({1, 2}, lm.tokenizer().bos_id(), torch::kInt64),
                                                     {hooks.begin(), hooks.end()});
  for (const auto& a : out) {
    const torch::Tensor& x = cache[a.hook];
    TORCH_CHECK(x.size(-1) == a.sae().config().d_in, "SAE '", a.dir, "' has d_in ", a.sae().config().d_in,
                " but hook '", a.hook, "' of model '", lm.info().name, "' has width ", x.size(-1));
  }
  return out;
}

}  // namespace saelab
