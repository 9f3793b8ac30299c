#include "models/capture.h"

#include <chrono>
#include <cstring>
#include <filesystem>
#include <algorithm>
#include <iterator>
#include <optional>

#include "core/activation_store.h"
#include "core/distributed.h"
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

// The names a capture records (stores, SAE folders, cfg.json hook_name): each as the user gave it,
// or a hook point under its TransformerLens alias; two names of one activation are refused.
static std::vector<std::string> hook_names(const HookedModel& hooked, const std::vector<std::string>& given) {
  std::vector<std::string> names;
  for (const auto& h : given) {
    const std::string name = hooked.preferred_name(h);
    for (const auto& other : names) {
      TORCH_CHECK(!hooked.same_hook(other, name), "hooks '", other, "' and '", h, "' name the same activation (",
                  hooked.resolve(h), "); give it once");
    }
    names.push_back(name);
  }
  return names;
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

// The plan's contexts in groups for one forward pass each: consecutive contexts of one length, up
// to `batch`, until the plan's rows (`limit`) are reached or the corpus runs out. A context's rows
// are its positions from `first` (1 without BOS); rows past the limit are the caller's to drop.
class ContextGroups {
 public:
  ContextGroups(const Tokenizer& tok, std::vector<const Document*> docs, int64_t T, bool pack, int64_t batch,
                int64_t first, int64_t limit)
      : source_(tok, std::move(docs), T, pack), batch_(batch), first_(first), limit_(limit) {}

  /// The next group and the global row of each context's first row; false at the end.
  bool next(std::vector<Context>& group, std::vector<int64_t>& group_rows) {
    group.clear();
    group_rows.clear();
    first_row_ = row_;
    while (static_cast<int64_t>(group.size()) < batch_ && row_ < limit_) {
      Context c;
      if (pending_) {
        c = std::move(*pending_);
        pending_.reset();
      } else if (!source_.next(c)) {
        break;
      }
      if (!group.empty() && c.tokens.size() != group.front().tokens.size()) {
        pending_ = std::move(c);
        break;
      }
      group_rows.push_back(row_);
      row_ += rows_of(c);
      group.push_back(std::move(c));
    }
    first_context_ = contexts_;
    contexts_ += static_cast<int64_t>(group.size());
    return !group.empty();
  }
  /// Moves past the plan's first n contexts (a restored position).
  void skip_contexts(int64_t n) {
    Context c;
    for (int64_t i = 0; i < n; ++i) {
      TORCH_CHECK(source_.next(c), "the corpus ends before context ", n, " of the saved position");
      row_ += rows_of(c);
    }
    contexts_ = n;
  }
  int64_t rows_of(const Context& c) const { return static_cast<int64_t>(c.tokens.size()) - first_; }
  int64_t row() const { return row_; }                      ///< rows of the contexts handed out
  int64_t group_first_row() const { return first_row_; }    ///< first row of the last group
  int64_t group_first_context() const { return first_context_; }
  int64_t contexts() const { return contexts_; }            ///< contexts handed out

 private:
  ContextSource source_;
  int64_t batch_, first_, limit_;
  std::optional<Context> pending_;
  int64_t row_ = 0, first_row_ = 0, contexts_ = 0, first_context_ = 0;
};

// The group's tokens as a [B, L] tensor.
torch::Tensor group_tokens(const std::vector<Context>& group) {
  const int64_t B = static_cast<int64_t>(group.size()), L = static_cast<int64_t>(group.front().tokens.size());
  torch::Tensor tokens = torch::empty({B, L}, torch::kInt64);
  for (int64_t b = 0; b < B; ++b) std::memcpy(tokens[b].data_ptr(), group[b].tokens.data(), L * sizeof(int64_t));
  return tokens;
}

}  // namespace

CaptureResult capture_activations(LanguageModel& lm, const CaptureOptions& options, const std::string& cache_dir,
                                  const std::string& out_dir) {
  options.validate();
  const int64_t T = options.context_length > 0 ? options.context_length : lm.info().context_length;
  TORCH_CHECK(T <= lm.info().context_length, "context_length ", T, " is longer than the model supports (",
              lm.info().context_length, ")");
  TORCH_CHECK(T >= 2, "context_length must be at least 2 (got ", T, ")");
  HookedModel hooked(lm.module(), lm.info().hook_aliases);
  const std::vector<std::string> points = hook_names(hooked, options.hooks);

  for (const auto& p : points) hook_folder(p);
  // Under torchrun every process runs the same plan of contexts and writes the shards of its own
  // part of the rows (core/activation_store.h: ShardWriter); rank 0 holds the folder's lock, writes
  // capture.json and, once all are done, merges the manifests. A capture whose shards were written
  // that way resumes that way, on any number of processes.
  const std::shared_ptr<Communicator> world = world_communicator();
  const int rank = world->rank(), world_size = world->size();
  std::optional<RunLock> lock;
  std::optional<Corpus> corpus;
  std::vector<const Document*> docs;
  std::vector<StoreManifest> manifests;
  std::vector<std::string> dirs;
  std::vector<std::unique_ptr<ActivationWriter>> writers;  // one process
  std::vector<std::unique_ptr<ShardWriter>> shard_writers;  // several, or resuming their capture
  bool sharded = world_size > 1;
  int64_t resume_row = INT64_MAX;
  run_together(*world, "opening the capture", [&] {
    if (rank == 0) lock.emplace(RunLock::folder(out_dir, "capture folder"));
    corpus.emplace(open_corpus(options.corpus, cache_dir));
    docs = split_documents(*corpus, parse_split(options.split));
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
    if (rank == 0) {
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
    }
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
      const std::vector<int64_t> shape = hooked.hook_shape(p);
      TORCH_CHECK(shape.size() == 3 && shape[0] == 1 && shape[1] == 2, "hook point '", p,
                  "' does not carry a [batch, pos, d] activation (got ", c10::IntArrayRef(shape), ")");
      m.d = shape[2];
      manifests.push_back(m);
      dirs.push_back((fs::path(out_dir) / hook_folder(p)).string());
      if (rank == 0) {
        prepare_store(dirs.back(), m);
        sharded = sharded || has_store_parts(dirs.back());
      }
    }
  });
  run_together(*world, "planning the capture", [&] {
    for (const auto& dir : dirs) sharded = sharded || has_store_parts(dir);
    const double value_bytes = static_cast<double>(c10::elementSize(store_dtype(options.dtype)));
    double need = 0;  // activations plus 24 bytes of row metadata still to write
    if (!sharded) {
      for (size_t h = 0; h < points.size(); ++h) {
        writers.push_back(std::make_unique<ActivationWriter>(dirs[h], manifests[h], options.shard_rows));
        resume_row = std::min(resume_row, writers.back()->rows_done());
        need += static_cast<double>(options.tokens - std::min(options.tokens, writers.back()->rows_done())) *
                (static_cast<double>(manifests[h].d) * value_bytes + 24.0);
      }
    } else {
      // The shards no process has written yet, in contiguous equal parts over the processes (every
      // hook has the same shards: the same rows).
      std::vector<int64_t> pending = pending_shards(dirs.front(), options.shard_rows);
      for (size_t h = 1; h < dirs.size(); ++h) {
        const std::vector<int64_t> more = pending_shards(dirs[h], options.shard_rows);
        std::vector<int64_t> all;
        std::set_union(pending.begin(), pending.end(), more.begin(), more.end(), std::back_inserter(all));
        pending = std::move(all);
      }
      const size_t n = pending.size();
      const std::vector<int64_t> mine(pending.begin() + static_cast<std::ptrdiff_t>(n * rank / world_size),
                                      pending.begin() + static_cast<std::ptrdiff_t>(n * (rank + 1) / world_size));
      for (size_t h = 0; h < points.size(); ++h) {
        shard_writers.push_back(std::make_unique<ShardWriter>(dirs[h], manifests[h], options.shard_rows, mine));
        if (rank == 0) {
          for (int64_t s : pending) {
            need += static_cast<double>(std::min(options.shard_rows, options.tokens - s * options.shard_rows)) *
                    (static_cast<double>(manifests[h].d) * value_bytes + 24.0);
          }
        }
      }
    }
    // Refuse at once what the disk cannot hold.
    if (rank == 0) require_disk(out_dir, need, "--tokens " + std::to_string(options.tokens));
  });

  const int64_t first = options.include_bos ? 0 : 1;  // first stored position of a context
  ContextGroups plan(lm.tokenizer(), docs, T, options.pack_documents, options.batch_size, first, options.tokens);
  std::optional<Progress> bar;
  if (rank == 0) bar.emplace("capture", sharded ? shard_writers.front()->owned_rows() : options.tokens, "tok");
  auto show = [&](int64_t row) {
    if (bar) bar->update(sharded ? shard_writers.front()->written_rows() : std::min(row, options.tokens));
  };
  const auto start = std::chrono::steady_clock::now();
  CaptureResult result;
  int64_t model_tokens = 0;
  run_together(*world, "capturing", [&] {
    std::vector<Context> group;
    std::vector<int64_t> group_rows;
    while (true) {
      if (sharded && !shard_writers.front()->wants(plan.row(), options.tokens - plan.row())) break;  // our part is done
      if (!plan.next(group, group_rows)) break;
      // Groups every hook stored in an earlier run, or that other processes write, are not run.
      const int64_t row = plan.row();
      const bool needed = sharded ? shard_writers.front()->wants(plan.group_first_row(), row - plan.group_first_row())
                                  : row > resume_row;
      if (!needed) {
        show(row);
        continue;
      }
      const torch::Tensor tokens = group_tokens(group);
      const ActivationCache cache = hooked.run_with_cache(tokens, points);
      model_tokens += tokens.numel();
      const int64_t L = tokens.size(1), n = L - first;
      for (size_t b = 0; b < group.size(); ++b) {
        const Context& c = group[b];
        const torch::Tensor ctx = torch::full({n}, plan.group_first_context() + static_cast<int64_t>(b), torch::kInt64);
        const torch::Tensor pos = torch::arange(first, L, torch::kInt32);
        const torch::Tensor tok =
            torch::tensor(std::vector<int64_t>(c.tokens.begin() + first, c.tokens.end()), torch::kInt64);
        const torch::Tensor doc = torch::tensor(std::vector<int32_t>(c.doc.begin() + first, c.doc.end()), torch::kInt32);
        for (size_t h = 0; h < points.size(); ++h) {
          const torch::Tensor acts = cache[points[h]][static_cast<int64_t>(b)].narrow(0, first, n);
          if (sharded) {
            shard_writers[h]->append(group_rows[b], acts, ctx, pos, tok, doc);
          } else {
            writers[h]->append(group_rows[b], acts, ctx, pos, tok, doc);
          }
        }
      }
      result.contexts += static_cast<int64_t>(group.size());
      show(row);
    }
    const bool done = plan.row() >= options.tokens ||
                      (sharded && !shard_writers.front()->wants(plan.row(), options.tokens - plan.row()));
    TORCH_CHECK(done, "the ", options.split, " split of '", options.corpus, "' holds only ", plan.row(),
                " tokens in contexts of ", T, ", fewer than the ", options.tokens, " requested");
    for (const auto& w : shard_writers) w->finish();
    for (auto& w : writers) w->finish();
  });
  // Every process is done: rank 0 lists the shards in the manifests.
  run_together(*world, "merging the manifests", [&] {
    if (rank == 0 && sharded) {
      for (const auto& dir : dirs) merge_store_parts(dir, options.shard_rows);
    }
  });
  if (bar) bar->finish();
  torch::Tensor totals = torch::tensor({result.contexts, model_tokens}, torch::kInt64);
  world->all_reduce_sum(totals, "adding up the capture's contexts");
  result.contexts = totals[0].item<int64_t>();
  model_tokens = totals[1].item<int64_t>();
  result.rows = options.tokens;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.tokens_per_second = result.seconds > 0 ? static_cast<double>(model_tokens) / result.seconds : 0;
  return result;
}

namespace {

class ModelStream final : public ActivationStream {
 public:
  ModelStream(LanguageModel& lm, const CaptureOptions& plan, const std::string& cache_dir, int64_t batch_size,
              int64_t buffer_rows, uint64_t seed)
      : lm_(lm), hooked_(lm.module(), lm.info().hook_aliases), plan_(plan), batch_size_(batch_size),
        buffer_rows_(buffer_rows), seed_(seed) {
    plan_.validate();
    TORCH_CHECK(batch_size > 0, "batch_size must be positive (got ", batch_size, ")");
    TORCH_CHECK(buffer_rows >= 2 * batch_size, "buffer_rows ", buffer_rows, " must be at least twice the batch_size (",
                batch_size, "): the buffer is refilled when half empty");
    T_ = plan_.context_length > 0 ? plan_.context_length : lm.info().context_length;
    TORCH_CHECK(T_ <= lm.info().context_length, "context_length ", T_, " is longer than the model supports (",
                lm.info().context_length, ")");
    TORCH_CHECK(T_ >= 2, "context_length must be at least 2 (got ", T_, ")");
    first_ = plan_.include_bos ? 0 : 1;
    points_ = hook_names(hooked_, plan_.hooks);
    corpus_.emplace(open_corpus(plan_.corpus, cache_dir));
    docs_ = split_documents(*corpus_, parse_split(plan_.split));
    TORCH_CHECK(!docs_.empty(), "corpus '", plan_.corpus, "' has no documents in the ", plan_.split, " split");
    const std::string model_hash = sha256_file(lm.model_path());
    for (const auto& p : points_) {
      const std::vector<int64_t> shape = hooked_.hook_shape(p);
      TORCH_CHECK(shape.size() == 3 && shape[0] == 1 && shape[1] == 2, "hook point '", p,
                  "' does not carry a [batch, pos, d] activation (got ", c10::IntArrayRef(shape), ")");
      StoreManifest m;
      m.hook = p;
      m.d = shape[2];
      m.context_length = T_;
      m.include_bos = plan_.include_bos;
      m.model_name = lm.info().name;
      m.model_sha256 = model_hash;
      m.tokenizer = lm.info().tokenizer;
      m.target_rows = m.rows = plan_.tokens;
      m.complete = true;
      manifests_.push_back(m);
    }
    fingerprint_ = {{"model_sha256", model_hash}, {"hooks", points_},          {"corpus", plan_.corpus},
                    {"split", plan_.split},       {"context_length", T_},      {"pack_documents", plan_.pack_documents},
                    {"include_bos", plan_.include_bos}, {"tokens", plan_.tokens}, {"context_batch", plan_.batch_size},
                    {"buffer_rows", buffer_rows_}};
    // A plan longer than the corpus fails now, not when its first pass ends (tokenising only).
    {
      std::unique_ptr<ContextGroups> count = make_groups(plan_.tokens);
      std::vector<Context> group;
      std::vector<int64_t> rows;
      while (count->next(group, rows)) {
      }
      TORCH_CHECK(count->row() >= plan_.tokens, "the ", plan_.split, " split of '", plan_.corpus, "' holds only ",
                  count->row(), " tokens in contexts of ", T_, ", fewer than the ", plan_.tokens,
                  " of one pass (--tokens)");
    }
    groups_ = make_groups(plan_.tokens);
    buffer_.assign(points_.size(), torch::Tensor());
    for (size_t h = 0; h < points_.size(); ++h) buffer_[h] = torch::empty({0, manifests_[h].d});
  }

  const std::vector<StoreManifest>& manifests() const override { return manifests_; }
  nlohmann::json fingerprint() const override { return fingerprint_; }

  std::vector<torch::Tensor> next() override {
    if (remaining() < buffer_rows_ / 2 || remaining() < batch_size_) refill();
    std::vector<torch::Tensor> out;
    for (const auto& b : buffer_) out.push_back(b.narrow(0, cursor_, batch_size_));
    cursor_ += batch_size_;
    return out;
  }

  std::vector<torch::Tensor> first_rows(int64_t n) override {
    std::unique_ptr<ContextGroups> groups = make_groups(std::min(n, plan_.tokens));
    std::vector<std::vector<torch::Tensor>> parts(points_.size());
    int64_t have = 0;
    while (have < n && run_group(*groups, std::min(n, plan_.tokens), parts, have)) {
    }
    std::vector<torch::Tensor> out;
    for (auto& p : parts) out.push_back(torch::cat(p).narrow(0, 0, std::min<int64_t>(n, have)));
    return out;
  }

  void save(torch::serialize::OutputArchive& archive) const override {
    archive.write("stream.position", torch::tensor({pass_, groups_->contexts(), refills_}, torch::kInt64));
    for (size_t h = 0; h < buffer_.size(); ++h) {
      archive.write("stream.buffer" + std::to_string(h), buffer_[h].narrow(0, cursor_, remaining()).clone());
    }
  }

  void load(torch::serialize::InputArchive& archive, const std::string& where) override {
    torch::Tensor position;
    try {
      archive.read("stream.position", position);
    } catch (const c10::Error&) {
      TORCH_CHECK(false, "checkpoint '", where, "' holds no stream position (it was not trained from the model)");
    }
    TORCH_CHECK(position.scalar_type() == torch::kInt64 && position.numel() == 3, "checkpoint '", where,
                "': stream.position must be 3 int64 values");
    pass_ = position[0].item<int64_t>();
    const int64_t contexts = position[1].item<int64_t>();
    refills_ = position[2].item<int64_t>();
    TORCH_CHECK(pass_ >= 0 && contexts >= 0 && refills_ >= 0, "checkpoint '", where, "': a negative stream position");
    groups_ = make_groups(plan_.tokens);
    groups_->skip_contexts(contexts);
    for (size_t h = 0; h < buffer_.size(); ++h) {
      torch::Tensor b;
      archive.read("stream.buffer" + std::to_string(h), b);
      TORCH_CHECK(b.dim() == 2 && b.size(1) == manifests_[h].d && b.scalar_type() == torch::kFloat32 &&
                      b.size(0) <= buffer_rows_ + plan_.batch_size * T_,
                  "checkpoint '", where, "': the shuffle buffer of ", points_[h], " has shape ", b.sizes(),
                  " (expected [at most ", buffer_rows_ + plan_.batch_size * T_, ", ", manifests_[h].d, "] float32)");
      buffer_[h] = b;
    }
    for (size_t h = 1; h < buffer_.size(); ++h) {
      TORCH_CHECK(buffer_[h].size(0) == buffer_[0].size(0), "checkpoint '", where, "': the hooks' buffers differ in size");
    }
    cursor_ = 0;
  }

 private:
  std::unique_ptr<ContextGroups> make_groups(int64_t limit) const {
    return std::make_unique<ContextGroups>(lm_.tokenizer(), docs_, T_, plan_.pack_documents, plan_.batch_size, first_,
                                           limit);
  }
  int64_t remaining() const { return buffer_.front().size(0) - cursor_; }

  // Runs the next group of `groups` and appends each context's rows (up to `limit` rows of the
  // plan) to `parts`; false when the plan is done.
  bool run_group(ContextGroups& groups, int64_t limit, std::vector<std::vector<torch::Tensor>>& parts, int64_t& have) {
    std::vector<Context> group;
    std::vector<int64_t> group_rows;
    if (!groups.next(group, group_rows)) return false;
    const torch::Tensor tokens = group_tokens(group);
    const ActivationCache cache = hooked_.run_with_cache(tokens, points_);
    for (size_t b = 0; b < group.size(); ++b) {
      const int64_t n = std::min(groups.rows_of(group[b]), limit - group_rows[b]);
      if (n <= 0) continue;
      for (size_t h = 0; h < points_.size(); ++h) {
        parts[h].push_back(cache[points_[h]][static_cast<int64_t>(b)].narrow(0, first_, n).to(torch::kFloat32));
      }
      have += n;
    }
    return true;
  }

  // Tops the buffer up to buffer_rows with the next contexts of the plan (starting the plan over
  // when a pass is done), then shuffles all its rows.
  void refill() {
    std::vector<std::vector<torch::Tensor>> parts(points_.size());
    int64_t have = remaining();
    for (size_t h = 0; h < points_.size(); ++h) parts[h].push_back(buffer_[h].narrow(0, cursor_, have));
    while (have < buffer_rows_) {
      if (run_group(*groups_, plan_.tokens, parts, have)) continue;
      TORCH_CHECK(groups_->row() >= plan_.tokens, "the ", plan_.split, " split of '", plan_.corpus, "' holds only ",
                  groups_->row(), " tokens in contexts of ", T_, ", fewer than the ", plan_.tokens,
                  " of one pass (--tokens)");
      ++pass_;
      groups_ = make_groups(plan_.tokens);
    }
    torch::Generator gen = at::detail::createCPUGenerator(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(refills_));
    const torch::Tensor order = torch::randperm(have, gen, torch::kInt64);
    for (size_t h = 0; h < points_.size(); ++h) buffer_[h] = torch::cat(parts[h]).index_select(0, order);
    cursor_ = 0;
    ++refills_;
  }

  LanguageModel& lm_;
  HookedModel hooked_;
  CaptureOptions plan_;
  int64_t batch_size_, buffer_rows_;
  uint64_t seed_;
  int64_t T_ = 0, first_ = 1;
  std::vector<std::string> points_;
  std::optional<Corpus> corpus_;
  std::vector<const Document*> docs_;
  std::vector<StoreManifest> manifests_;
  nlohmann::json fingerprint_;
  std::unique_ptr<ContextGroups> groups_;
  int64_t pass_ = 0, refills_ = 0;
  std::vector<torch::Tensor> buffer_;
  int64_t cursor_ = 0;
};

}  // namespace

std::unique_ptr<ActivationStream> open_activation_stream(LanguageModel& lm, const CaptureOptions& plan,
                                                         const std::string& cache_dir, int64_t batch_size,
                                                         int64_t buffer_rows, uint64_t seed) {
  return std::make_unique<ModelStream>(lm, plan, cache_dir, batch_size, buffer_rows, seed);
}

}  // namespace saelab
