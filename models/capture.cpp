#include "models/capture.h"

#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>

#include "core/activation_store.h"
#include "core/files.h"
#include "core/json_options.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "models/corpus.h"
#include "models/hooked_model.h"

namespace saelab {

namespace fs = std::filesystem;

void CaptureOptions::validate() const {
  TORCH_CHECK(!hooks.empty(), "give at least one hook point to capture (--hooks)");
  TORCH_CHECK(tokens > 0, "tokens must be positive (got ", tokens, ")");
  TORCH_CHECK(context_length >= 0, "context_length must be >= 0 (got ", context_length, ")");
  TORCH_CHECK(batch_size > 0, "batch_size must be positive (got ", batch_size, ")");
  TORCH_CHECK(shard_rows > 0, "shard_rows must be positive (got ", shard_rows, ")");
  store_dtype(dtype);
  parse_split(split);
}

std::string hook_folder(const std::string& hook) {
  check_path_name(hook, "hook point '" + hook + "' (its activations' folder name)");
  return hook;
}

namespace {

// Contexts of T - 1 corpus tokens after BOS, with the document index of every position.
struct Context {
  std::vector<int64_t> tokens;  // BOS first
  std::vector<int32_t> doc;     // -1 for BOS
};

class ContextSource {
 public:
  ContextSource(const Tokenizer& tok, std::vector<const Document*> docs, int64_t T, bool pack)
      : tok_(tok), docs_(std::move(docs)), T_(T), pack_(pack) {}

  bool next(Context& c) {
    c.tokens.assign(1, tok_.bos_id());
    c.doc.assign(1, -1);
    while (static_cast<int64_t>(c.tokens.size()) < T_) {
      if (pos_ >= ids_.size()) {
        if (pack_ || c.tokens.size() == 1) {
          if (!load_next_doc()) break;
        } else {
          break;  // one document per context: stop at its end
        }
      }
      c.tokens.push_back(ids_[pos_]);
      c.doc.push_back(static_cast<int32_t>(doc_ - 1));
      ++pos_;
    }
    if (!pack_ && pos_ >= ids_.size()) {  // the next context starts the next document
      ids_.clear();
      pos_ = 0;
    }
    return c.tokens.size() > 1;
  }

 private:
  bool load_next_doc() {
    while (doc_ < docs_.size()) {
      ids_ = tok_.encode_ids(docs_[doc_]->text);
      ids_.push_back(tok_.eos_id());
      pos_ = 0;
      ++doc_;
      if (!ids_.empty()) return true;
    }
    return false;
  }
  const Tokenizer& tok_;
  std::vector<const Document*> docs_;
  int64_t T_;
  bool pack_;
  size_t doc_ = 0;
  std::vector<int64_t> ids_;
  size_t pos_ = 0;
};

}  // namespace

CaptureResult capture_activations(LanguageModel& lm, const CaptureOptions& options, const std::string& cache_dir,
                                  const std::string& out_dir) {
  options.validate();
  const int64_t T = options.context_length > 0 ? options.context_length : lm.info().context_length;
  TORCH_CHECK(T <= lm.info().context_length, "context_length ", T, " is longer than the model supports (",
              lm.info().context_length, ")");
  TORCH_CHECK(T >= 2, "context_length must be at least 2 (got ", T, ")");
  HookedModel hooked(lm.module(), lm.info().hook_aliases);
  std::vector<std::string> points;
  for (const auto& h : options.hooks) points.push_back(hooked.resolve(h));

  for (const auto& p : points) hook_folder(p);
  const RunLock lock = RunLock::folder(out_dir, "capture folder");

  const Corpus corpus = open_corpus(options.corpus, cache_dir);
  const auto docs = split_documents(corpus, parse_split(options.split));
  TORCH_CHECK(!docs.empty(), "corpus '", options.corpus, "' has no documents in the ", options.split, " split");

  // The run's identity: a different one in the same folder is refused.
  const std::string model_hash = sha256_file(lm.model_path());
  nlohmann::json run = {{"format_version", 1},
                        {"model", lm.info().name},
                        {"model_file", lm.model_path()},
                        {"model_sha256", model_hash},
                        {"options", options_json(options)},
                        {"context_length", T}};
  const fs::path run_path = fs::path(out_dir) / "capture.json";
  if (fs::exists(run_path)) {
    nlohmann::json old = load_json_file(run_path.string(), "capture description");
    old.erase("documents");
    TORCH_CHECK(old == run, "output folder '", out_dir,
                "' holds a different capture (other model, hooks or options); choose another --out");
  }
  nlohmann::json doc_ids = nlohmann::json::array();
  for (const Document* d : docs) doc_ids.push_back({{"id", d->id}, {"genre", d->genre}});
  run["documents"] = doc_ids;
  write_file_atomic(run_path, run.dump(1) + "\n");

  std::vector<std::unique_ptr<ActivationWriter>> writers;
  int64_t resume_row = INT64_MAX;
  for (const auto& p : points) {
    StoreManifest m;
    m.hook = p;
    m.dtype = options.dtype;
    m.context_length = T;
    m.include_bos = options.include_bos;
    m.model_name = lm.info().name;
    m.model_sha256 = model_hash;
    m.tokenizer = lm.info().tokenizer;
    m.target_rows = options.tokens;
    // d is known after the first forward pass; probe it now with a single short context.
    {
      const std::vector<int64_t> shape = hooked.hook_shape(p);
      TORCH_CHECK(shape.size() == 3 && shape[0] == 1 && shape[1] == 2, "hook point '", p,
                  "' does not carry a [batch, pos, d] activation (got ", c10::IntArrayRef(shape), ")");
      m.d = shape[2];
    }
    writers.push_back(std::make_unique<ActivationWriter>((fs::path(out_dir) / hook_folder(p)).string(), m,
                                                          options.shard_rows));
    resume_row = std::min(resume_row, writers.back()->rows_done());
  }
  // Refuse at once what the disk cannot hold (activations plus 24 bytes of row metadata).
  double need = 0;
  const double value_bytes = static_cast<double>(c10::elementSize(store_dtype(options.dtype)));
  for (const auto& w : writers) {
    need += static_cast<double>(options.tokens - std::min(options.tokens, w->rows_done())) *
            (static_cast<double>(w->manifest().d) * value_bytes + 24.0);
  }
  require_disk(out_dir, need, "--tokens " + std::to_string(options.tokens));

  ContextSource source(lm.tokenizer(), docs, T, options.pack_documents);
  Progress bar("capture", options.tokens, "tok");
  const auto start = std::chrono::steady_clock::now();
  CaptureResult result;
  const int64_t first = options.include_bos ? 0 : 1;  // first stored position of a context
  auto rows_of = [&](const Context& c) { return static_cast<int64_t>(c.tokens.size()) - first; };
  int64_t row = 0;            // global index of the next context's first row
  int64_t context_index = 0;  // global index of the next context
  int64_t model_tokens = 0;
  std::optional<Context> pending;
  while (row < options.tokens) {
    // Consecutive contexts of one length, up to batch_size.
    std::vector<Context> group;
    std::vector<int64_t> group_rows;
    while (static_cast<int64_t>(group.size()) < options.batch_size && row < options.tokens) {
      Context c;
      if (pending) {
        c = std::move(*pending);
        pending.reset();
      } else if (!source.next(c)) {
        break;
      }
      if (!group.empty() && c.tokens.size() != group.front().tokens.size()) {
        pending = std::move(c);
        break;
      }
      group_rows.push_back(row);
      row += rows_of(c);
      group.push_back(std::move(c));
    }
    if (group.empty()) break;  // the corpus ran out
    const int64_t B = static_cast<int64_t>(group.size());
    if (row <= resume_row) {  // every hook stored this group in an earlier run
      context_index += B;
      bar.update(std::min(row, options.tokens));
      continue;
    }
    const int64_t L = static_cast<int64_t>(group.front().tokens.size());
    torch::Tensor tokens = torch::empty({B, L}, torch::kInt64);
    for (int64_t b = 0; b < B; ++b) std::memcpy(tokens[b].data_ptr(), group[b].tokens.data(), L * sizeof(int64_t));
    const ActivationCache cache = hooked.run_with_cache(tokens, points);
    model_tokens += tokens.numel();
    const int64_t n = L - first;
    for (int64_t b = 0; b < B; ++b) {
      const Context& c = group[b];
      const torch::Tensor ctx = torch::full({n}, context_index + b, torch::kInt64);
      const torch::Tensor pos = torch::arange(first, L, torch::kInt32);
      const torch::Tensor tok = torch::tensor(std::vector<int64_t>(c.tokens.begin() + first, c.tokens.end()), torch::kInt64);
      const torch::Tensor doc = torch::tensor(std::vector<int32_t>(c.doc.begin() + first, c.doc.end()), torch::kInt32);
      for (size_t h = 0; h < points.size(); ++h) {
        writers[h]->append(group_rows[b], cache[points[h]][b].narrow(0, first, n), ctx, pos, tok, doc);
      }
    }
    context_index += B;
    result.contexts += B;
    bar.update(std::min(row, options.tokens));
  }
  TORCH_CHECK(row >= options.tokens, "the ", options.split, " split of '", options.corpus, "' holds only ", row,
              " tokens in contexts of ", T, ", fewer than the ", options.tokens, " requested");
  for (auto& w : writers) w->finish();
  bar.finish();
  result.rows = options.tokens;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.tokens_per_second = result.seconds > 0 ? static_cast<double>(model_tokens) / result.seconds : 0;
  return result;
}

}  // namespace saelab
