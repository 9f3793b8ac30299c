#include "models/model_init.h"

#include "models/tl_aliases.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>

#include "core/files.h"
#include "core/staged_folder.h"
#include "models/hooked_model.h"
#include "models/tl_aliases.h"

namespace saelab {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kProbeLength = 8;

bool is_logits(const c10::IValue& v, int64_t T) {
  if (!v.isTensor()) return false;
  const torch::Tensor& t = v.toTensor();
  return t.is_floating_point() && t.dim() == 3 && t.size(0) == 1 && t.size(1) == T;
}

// Where the [1, T, vocab] logits are in a forward pass's output (the widest such tensor).
LogitsSpec find_logits(const c10::IValue& out, int64_t T, int64_t* vocab, std::string* where) {
  LogitsSpec best;
  int64_t width = 0;
  auto consider = [&](const c10::IValue& v, const LogitsSpec& spec, const std::string& what) {
    if (is_logits(v, T) && v.toTensor().size(2) > width) {
      width = v.toTensor().size(2);
      best = spec;
      *where = what;
    }
  };
  if (out.isTensor()) {
    consider(out, LogitsSpec{"tensor", 0, "logits"}, "the output tensor");
  } else if (out.isTuple()) {
    const auto& elems = out.toTupleRef().elements();
    for (size_t i = 0; i < elems.size(); ++i) {
      consider(elems[i], LogitsSpec{"tuple", static_cast<int64_t>(i), "logits"}, "element " + std::to_string(i) + " of the output tuple");
    }
  } else if (out.isGenericDict()) {
    for (const auto& e : out.toGenericDict()) {
      if (e.key().isString()) {
        consider(e.value(), LogitsSpec{"dict", 0, e.key().toStringRef()}, "key '" + e.key().toStringRef() + "' of the output dict");
      }
    }
  }
  TORCH_CHECK(width > 0, "the model's output (", out.tagKind(), ") holds no [1, ", T,
              ", vocab] tensor of logits for a [1, ", T, "] input of token ids");
  *vocab = width;
  return best;
}

bool runs_at(torch::jit::Module& module, int64_t length) {
  try {
    torch::NoGradGuard no_grad;
    module.forward({small_token_ids(length).unsqueeze(0)});
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// The tokenizer entry for model.json, and the files to copy beside it.
nlohmann::json tokenizer_entry(const std::string& path, std::vector<fs::path>* files) {
  TORCH_CHECK(!path.empty(), "--tokenizer is required: a SentencePiece .model file, or a folder with GPT-2's "
                             "encoder.json (or vocab.json) and vocab.bpe (or merges.txt)");
  if (fs::is_regular_file(path)) {
    files->push_back(path);
    return {{"kind", "sentencepiece"}, {"model", fs::path(path).filename().string()}};
  }
  TORCH_CHECK(fs::is_directory(path), "tokenizer '", path, "' does not exist");
  auto first = [&](std::initializer_list<const char*> names) -> fs::path {
    for (const char* n : names) {
      if (fs::is_regular_file(fs::path(path) / n)) return fs::path(path) / n;
    }
    return {};
  };
  const fs::path encoder = first({"encoder.json", "vocab.json"}), merges = first({"vocab.bpe", "merges.txt"});
  if (encoder.empty() || merges.empty()) {
    const fs::path spm = first({"tokenizer.model", "spiece.model", "sentencepiece.model"});
    TORCH_CHECK(!spm.empty(), "tokenizer folder '", path, "' holds neither GPT-2's encoder.json/vocab.json and "
                              "vocab.bpe/merges.txt nor a SentencePiece tokenizer.model");
    files->push_back(spm);
    return {{"kind", "sentencepiece"}, {"model", spm.filename().string()}};
  }
  files->push_back(encoder);
  files->push_back(merges);
  return {{"kind", "gpt2"}, {"encoder", encoder.filename().string()}, {"merges", merges.filename().string()}};
}

std::string shape_of(const torch::Tensor& t) { return c10::str(t.sizes()); }

}  // namespace

torch::Tensor small_token_ids(int64_t length) { return torch::arange(length, torch::kInt64).remainder(4) + 1; }

ModelInitResult init_model_folder(const ModelInitOptions& o) {
  TORCH_CHECK(!o.out.empty(), "--out is required: the model folder to write");
  TORCH_CHECK(!fs::exists(o.out), "output folder '", o.out, "' already exists; it is written as a new folder");
  TORCH_CHECK(o.max_probe_length >= kProbeLength, "max_probe_length must be at least ", kProbeLength);
  ModelInitResult r;
  std::vector<fs::path> tokenizer_files;
  r.info.tokenizer = tokenizer_entry(o.tokenizer, &tokenizer_files);
  torch::jit::Module module = load_torchscript(o.model);
  module.eval();
  ModelInfo& info = r.info;
  info.name = o.name.empty() ? fs::path(o.model).stem().string() : o.name;

  // Logits and vocabulary.
  torch::NoGradGuard no_grad;
  c10::IValue out;
  try {
    out = module.forward({small_token_ids(kProbeLength).unsqueeze(0)});
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "model '", o.model, "' fails on a [1, ", kProbeLength, "] input of token ids: ", error_line(e));
  }
  std::string logits_where;
  info.logits = find_logits(out, kProbeLength, &info.vocab_size, &logits_where);
  r.inferred.push_back("logits: " + logits_where + ", so vocab_size " + std::to_string(info.vocab_size));

  // d_model and the layers, from the hook points.
  HookedModel hooked(module);
  const ActivationCache cache = hooked.run_with_cache(small_token_ids(kProbeLength).unsqueeze(0), hooked.hook_points());
  std::map<int64_t, int64_t> widths;  // width → hook points of shape [1, T, width]
  for (const auto& [name, t] : cache.activations) {
    if (t.dim() == 3 && t.size(0) == 1 && t.size(1) == kProbeLength && t.size(2) != info.vocab_size) ++widths[t.size(2)];
  }
  TORCH_CHECK(!widths.empty(), "no hook point of model '", o.model, "' carries a [1, ", kProbeLength, ", d] activation");
  info.d_model = std::max_element(widths.begin(), widths.end(), [](auto a, auto b) { return a.second < b.second; })->first;
  r.inferred.push_back("d_model " + std::to_string(info.d_model) + ": the width of " +
                       std::to_string(widths[info.d_model]) + " of the [1, T, d] activations");
  auto residual = [&](const std::string& point) {
    auto it = cache.activations.find(point);
    return it != cache.activations.end() && it->second.dim() == 3 && it->second.size(2) == info.d_model;
  };
  std::map<std::string, std::set<int64_t>> blocks;  // module list prefix → indices of residual blocks
  for (const auto& point : hooked.hook_points()) {
    const std::string suffix = ".input";
    if (point.size() <= suffix.size() || point.compare(point.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const std::string path = point.substr(0, point.size() - suffix.size());
    const size_t dot = path.rfind('.');
    const std::string last = dot == std::string::npos ? path : path.substr(dot + 1);
    if (last.empty() || last.size() > 6 || !std::all_of(last.begin(), last.end(), ::isdigit)) continue;
    if (residual(path + ".input") && residual(path + ".output")) {
      blocks[dot == std::string::npos ? "" : path.substr(0, dot + 1)].insert(std::stoll(last));
    }
  }
  std::string prefix;
  size_t most = 0;
  for (const auto& [p, idx] : blocks) {
    const bool contiguous = !idx.empty() && *idx.begin() == 0 && *idx.rbegin() == static_cast<int64_t>(idx.size()) - 1;
    if (contiguous && idx.size() > most) most = idx.size(), prefix = p;
  }
  if (most > 0) {
    info.n_layers = static_cast<int64_t>(most);
    info.hook_aliases = transformer_lens_aliases(hooked.hook_points(), prefix, info.n_layers);
    // A parallel block (GPT-NeoX) feeds its MLP norm the block's input: no resid_mid there.
    for (int64_t i = 0; i < info.n_layers; ++i) {
      const std::string mid = "blocks." + std::to_string(i) + ".hook_resid_mid";
      if (!info.hook_aliases.contains(mid)) continue;
      const torch::Tensor& x = cache[prefix + std::to_string(i) + ".input"];
      const torch::Tensor& m = cache[info.hook_aliases[mid].get<std::string>()];
      if (x.sizes() == m.sizes() && torch::equal(x, m)) info.hook_aliases.erase(mid);
    }
    r.inferred.push_back("n_layers " + std::to_string(info.n_layers) + ": the blocks " + prefix + "0.." + prefix +
                         std::to_string(info.n_layers - 1) + " take and return [1, T, " + std::to_string(info.d_model) +
                         "]; " + std::to_string(info.hook_aliases.size()) +
                         " TransformerLens aliases (blocks.{i}.hook_resid_pre, ...) from their submodules' names");
  } else {
    r.not_inferred.push_back("n_layers and the residual aliases: no numbered module list carries [1, T, d_model]; "
                             "n_layers is 0 and hook_aliases empty (name hook points as `saelab hooks` lists them)");
  }

  // Context length: a position-embedding parameter, else the longest input the model accepts.
  if (o.context_length > 0) {
    info.context_length = o.context_length;
    r.inferred.push_back("context_length " + std::to_string(info.context_length) + ": given");
  } else {
    for (const auto& p : module.named_parameters(true)) {
      std::string lower = p.name;
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      if (p.value.dim() == 2 && p.value.size(1) == info.d_model &&
          (lower.find("wpe") != std::string::npos || lower.find("pos") != std::string::npos)) {
        info.context_length = p.value.size(0);
        r.inferred.push_back("context_length " + std::to_string(info.context_length) + ": parameter " + p.name + " " +
                             shape_of(p.value));
        break;
      }
    }
    if (info.context_length == 0) {
      int64_t ok = kProbeLength, bad = 0;
      for (int64_t L = 2 * kProbeLength; L <= o.max_probe_length; L *= 2) {
        if (!runs_at(module, L)) {
          bad = L;
          break;
        }
        ok = L;
      }
      if (bad > 0) {
        while (bad - ok > 1) {
          const int64_t mid = ok + (bad - ok) / 2;
          (runs_at(module, mid) ? ok : bad) = mid;
        }
        info.context_length = ok;
        r.inferred.push_back("context_length " + std::to_string(ok) + ": the longest input the model runs on");
      } else {
        info.context_length = ok;
        r.not_inferred.push_back("context_length: the model ran on every length tried, up to " + std::to_string(ok) +
                                 "; " + std::to_string(ok) + " is written (set it to the length it was trained on)");
      }
    }
  }
  r.not_inferred.push_back("prepend_bos: true is written (saelab puts the tokenizer's BOS first); set it to false if "
                           "the model was trained without one");

  // Written beside a temporary name, checked by opening it as every command does, then renamed.
  write_new_folder(o.out, "output folder", [&](const fs::path& tmp) {
    fs::copy_file(o.model, tmp / "model.pt");
    for (const auto& f : tokenizer_files) fs::copy_file(f, tmp / f.filename(), fs::copy_options::overwrite_existing);
    info.model_file = "model.pt";
    write_file_atomic(tmp / "model.json", info.to_json().dump(2) + "\n");
    LanguageModel::open(tmp.string());
  });
  return r;
}

}  // namespace saelab
