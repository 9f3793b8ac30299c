#include "analysis/neuronpedia_export.h"

#include <filesystem>
#include <map>

#include "analysis/feature_db.h"
#include "core/files.h"
#include "core/staged_folder.h"
#include "sae/sae_io.h"

namespace saelab {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

struct Example {
  std::string kind;
  int64_t band = -1;
  double activation = 0;
  ojson tokens = ojson::array(), values = ojson::array();
  int64_t qualifying = -1;
};

struct SaeRow {
  std::string name, dir, hook;
  int64_t d_sae = 0, tokens_seen = 0;
};

// The three largest entries of a decoder row and their share of its L1 norm.
void neuron_alignment(const torch::Tensor& row, ojson& f) {
  ojson idx = ojson::array(), val = ojson::array(), l1 = ojson::array();
  if (row.defined()) {
    const double norm = row.abs().sum().item<double>();
    auto [v, i] = row.topk(std::min<int64_t>(3, row.numel()));
    for (int64_t j = 0; j < v.numel(); ++j) {
      idx.push_back(i[j].item<int64_t>());
      val.push_back(v[j].item<double>());
      l1.push_back(norm > 0 ? std::abs(v[j].item<double>()) / norm : 0.0);
    }
  }
  f["neuron_alignment_indices"] = idx;
  f["neuron_alignment_values"] = val;
  f["neuron_alignment_l1"] = l1;
}

}  // namespace

NeuronpediaExportResult export_neuronpedia(const std::string& db_path, const std::string& out,
                                           const NeuronpediaExportOptions& o) {
  TORCH_CHECK(o.features_per_batch > 0, "features_per_batch must be positive (got ", o.features_per_batch, ")");
  check_path_name(o.sae_set, "--sae-set");
  if (!o.model_id.empty()) check_path_name(o.model_id, "--model-id");
  TORCH_CHECK(!fs::exists(out), "output folder '", out, "' already exists; it is written as a new folder");
  require_file(db_path, "feature database");
  FeatureDb db = FeatureDb::open(db_path);
  std::vector<SaeRow> saes;
  {
    FeatureDb::Statement q = db.prepare("SELECT sae, dir, hook, d_sae, tokens_seen FROM saes ORDER BY sae");
    while (q.next()) saes.push_back({q.column_text(0), q.column_text(1), q.column_text(2), q.column_int(3), q.column_int(4)});
  }
  TORCH_CHECK(!saes.empty(), "feature database '", db_path, "' holds no SAE");

  const fs::path target = fs::path(out).lexically_normal();
  NeuronpediaExportResult result;
  write_new_folder(target, "output folder", [&](const fs::path& tmp) {
    for (const SaeRow& s : saes) {
      // The SAE's own folder gives the model, the layer and the decoder (for neuron alignment).
      SaeMetadata meta;
      meta.hook_name = s.hook;
      torch::Tensor W_dec;
      if (!s.dir.empty() && is_sae_folder(s.dir)) {
        LoadedSae loaded = load_sae(s.dir);
        meta = loaded.metadata;
        W_dec = loaded.sae.state().at("W_dec");
        TORCH_CHECK(W_dec.size(0) == s.d_sae, "SAE '", s.dir, "' has d_sae ", W_dec.size(0), " but the database says ", s.d_sae);
      }
      const std::string model_id = o.model_id.empty() ? meta.model_name : o.model_id;
      TORCH_CHECK(!model_id.empty(), "SAE '", s.name, "' names no model; give --model-id");
      check_path_name(model_id, "model id");
      const int64_t layer = meta.layer();
      // A study holds several SAEs per hook: each is its own Neuronpedia source, told apart by
      // SAEDashboard's sae_id_suffix (the SAE's folder name): {layer}-{sae_set}__{suffix}.
      const std::string suffix = s.name.substr(s.name.rfind('/') + 1);
      check_path_name(suffix, "SAE name");
      const std::string source_id = std::to_string(layer) + "-" + o.sae_set + "__" + suffix;
      const std::string folder_name =
          model_id + "_" + o.sae_set + "_" + s.hook + "_" + std::to_string(s.d_sae) + "_" + suffix;
      check_path_name(folder_name, "export folder");
      const fs::path folder = tmp / folder_name;
      TORCH_CHECK(!fs::exists(folder), "two SAEs of the database export to the same folder '", folder_name,
                  "' (the same model, hook, width and name); export them with different --sae-set names");
      fs::create_directories(folder);

      std::vector<int64_t> skipped;
      std::string explanations;
      int64_t batch = 0;
      for (int64_t lo = 0; lo < s.d_sae; lo += o.features_per_batch, ++batch) {
        const int64_t hi = std::min(s.d_sae, lo + o.features_per_batch) - 1;
        std::map<int64_t, std::pair<double, double>> stats;  // feature → density, max activation
        {
          FeatureDb::Statement q = db.prepare(
              "SELECT feature, density, max_activation FROM features WHERE sae = ? AND feature BETWEEN ? AND ?");
          q.bind(1, s.name).bind(2, lo).bind(3, hi);
          while (q.next()) stats[q.column_int(0)] = {q.column_double(1), q.column_double(2)};
        }
        std::map<int64_t, std::vector<Example>> examples;  // feature → top examples by rank, then bands high to low
        std::map<int64_t, std::pair<int64_t, size_t>> where;  // example id → feature, index
        {
          FeatureDb::Statement q = db.prepare(
              "SELECT id, feature, kind, band, activation FROM examples WHERE sae = ? AND feature BETWEEN ? AND ? "
              "ORDER BY feature, kind = 'top' DESC, band DESC, rank");
          q.bind(1, s.name).bind(2, lo).bind(3, hi);
          while (q.next()) {
            auto& v = examples[q.column_int(1)];
            where[q.column_int(0)] = {q.column_int(1), v.size()};
            v.push_back({q.column_text(2), q.column_int(3), q.column_double(4)});
          }
        }
        {
          FeatureDb::Statement q = db.prepare(
              "SELECT t.example_id, t.offset, t.token, t.activation FROM example_tokens t JOIN examples e ON "
              "t.example_id = e.id WHERE e.sae = ? AND e.feature BETWEEN ? AND ? ORDER BY t.example_id, t.offset");
          q.bind(1, s.name).bind(2, lo).bind(3, hi);
          while (q.next()) {
            auto it = where.find(q.column_int(0));
            if (it == where.end()) continue;
            Example& e = examples[it->second.first][it->second.second];
            if (q.column_int(1) == 0) e.qualifying = static_cast<int64_t>(e.tokens.size());
            e.tokens.push_back(q.column_text(2));
            e.values.push_back(q.column_double(3));
          }
        }
        std::map<int64_t, std::map<std::string, std::pair<ojson, ojson>>> logits;  // feature → direction → tokens, effects
        {
          FeatureDb::Statement q = db.prepare(
              "SELECT feature, direction, token, effect FROM logit_effects WHERE sae = ? AND feature BETWEEN ? AND ? "
              "ORDER BY feature, direction, rank");
          q.bind(1, s.name).bind(2, lo).bind(3, hi);
          while (q.next()) {
            auto& d = logits[q.column_int(0)][q.column_text(1)];
            if (d.first.is_null()) d = {ojson::array(), ojson::array()};
            d.first.push_back(q.column_text(2));
            d.second.push_back(q.column_double(3));
          }
        }
        {
          FeatureDb::Statement q = db.prepare(
              "SELECT feature, explainer, explanation, rule, score FROM explanations WHERE sae = ? AND feature "
              "BETWEEN ? AND ? ORDER BY feature");
          q.bind(1, s.name).bind(2, lo).bind(3, hi);
          while (q.next()) {
            const ojson row = {{"id", "saelab-" + folder_name + "-" + std::to_string(q.column_int(0))},
                               {"modelId", model_id},
                               {"layer", source_id},
                               {"index", std::to_string(q.column_int(0))},
                               {"description", q.column_text(2)},
                               {"authorId", "saelab"},
                               {"typeName", q.column_text(1)},
                               {"explanationModelName", q.column_text(1)},
                               {"notes", "rule: " + q.column_text(3) + "; score " + std::to_string(q.column_double(4))}};
            explanations += row.dump() + "\n";
            ++result.explanations;
          }
        }

        ojson features = ojson::array();
        for (int64_t i = lo; i <= hi; ++i) {
          auto ex = examples.find(i);
          if (ex == examples.end() || ex->second.empty()) {
            skipped.push_back(i);  // never fired: Neuronpedia shows it as an empty feature
            continue;
          }
          const auto [density, max_act] = stats.count(i) ? stats[i] : std::pair<double, double>{0.0, 0.0};
          ojson f;
          f["feature_index"] = i;
          neuron_alignment(W_dec.defined() ? W_dec[i] : torch::Tensor(), f);
          for (const char* key : {"correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
                                  "correlated_features_indices", "correlated_features_l1", "correlated_features_pearson"}) {
            f[key] = ojson::array();
          }
          auto& lg = logits[i];
          auto side = [&](const char* direction, int which) {
            auto it = lg.find(direction);
            return it == lg.end() ? ojson::array() : (which == 0 ? it->second.first : it->second.second);
          };
          f["neg_str"] = side("suppressed", 0);
          f["neg_values"] = side("suppressed", 1);
          f["pos_str"] = side("promoted", 0);
          f["pos_values"] = side("promoted", 1);
          f["frac_nonzero"] = density;
          for (const char* key : {"freq_hist_data_bar_values", "freq_hist_data_bar_heights", "logits_hist_data_bar_heights",
                                  "logits_hist_data_bar_values"}) {
            f[key] = ojson::array();
          }
          f["n_prompts_total"] = meta.context_size > 1 ? (s.tokens_seen + meta.context_size - 2) / (meta.context_size - 1) : 0;
          f["n_tokens_in_prompt"] = meta.context_size;
          f["dataset"] = meta.dataset_path;
          f["decoder_weights_dist"] = ojson::array();
          // Bands of the firing distribution hold equal shares of the firings.
          int64_t bands = 0;
          for (const Example& e : ex->second) bands = std::max(bands, e.band + 1);
          std::map<int64_t, std::pair<double, double>> range;  // band → min, max activation
          for (const Example& e : ex->second) {
            if (e.band < 0) continue;
            auto [it, fresh] = range.try_emplace(e.band, e.activation, e.activation);
            if (!fresh) it->second = {std::min(it->second.first, e.activation), std::max(it->second.second, e.activation)};
          }
          ojson acts = ojson::array();
          for (const Example& e : ex->second) {
            const bool top = e.kind == "top";
            acts.push_back({{"bin_min", top ? -1.0 : range[e.band].first},
                            {"bin_max", top ? max_act : range[e.band].second},
                            {"bin_contains", top ? -1.0 : density / static_cast<double>(std::max<int64_t>(1, bands))},
                            {"tokens", e.tokens},
                            {"values", e.values},
                            {"qualifying_token_index", e.qualifying}});
          }
          f["activations"] = acts;
          f["vector"] = ojson::array();
          features.push_back(f);
          ++result.features;
        }
        const ojson file = {{"model_id", model_id}, {"layer", layer}, {"sae_set", o.sae_set},
                            {"sae_id_suffix", suffix}, {"features", features}};
        write_file_atomic(folder / ("batch-" + std::to_string(batch) + ".json"), file.dump() + "\n");
      }
      result.skipped += static_cast<int64_t>(skipped.size());
      write_file_atomic(folder / "skipped_indexes.json",
                        ojson({{"model_id", model_id}, {"layer", std::to_string(layer)}, {"sae_set", o.sae_set},
                               {"log_sparsity", 0}, {"skipped_indexes", skipped}}).dump() + "\n");
      write_file_atomic(folder / "run_settings.json",
                        ojson({{"exported_by", "saelab export-neuronpedia"}, {"database", db_path}, {"sae", s.name},
                               {"sae_path", s.dir}, {"sae_set", o.sae_set}, {"np_sae_id_suffix", suffix},
                               {"model_id", model_id}, {"layer", layer}, {"hook_name", s.hook},
                               {"n_features_at_a_time", o.features_per_batch}, {"tokens_seen", s.tokens_seen}})
                                .dump(2) + "\n");
      write_file_atomic(folder / "explanations.jsonl", explanations);
      result.folders.push_back((target / folder_name).string());
    }
  });
  return result;
}

}  // namespace saelab
