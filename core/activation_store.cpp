#include "core/activation_store.h"

#include <fmt/format.h>

#include <filesystem>
#include <random>

#include "core/fault.h"
#include "core/files.h"
#include "core/json_options.h"
#include "core/safetensors.h"

namespace saelab {

namespace fs = std::filesystem;

torch::Dtype store_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "float16") return torch::kFloat16;
  if (name == "bfloat16") return torch::kBFloat16;
  TORCH_CHECK(false, "dtype must be float32, float16 or bfloat16 (got ", name, ")");
}

nlohmann::json StoreManifest::to_json() const {
  nlohmann::json shard_list = nlohmann::json::array();
  for (const auto& [file, n] : shards) shard_list.push_back({{"file", file}, {"rows", n}});
  return {{"format_version", 1},     {"hook", hook},
          {"d", d},                  {"dtype", dtype},
          {"context_length", context_length}, {"include_bos", include_bos},
          {"model_name", model_name}, {"model_sha256", model_sha256},
          {"tokenizer", tokenizer},  {"target_rows", target_rows},
          {"rows", rows},            {"norm_sum", norm_sum},
          {"mean_norm", mean_norm()}, {"shards", shard_list},
          {"complete", complete}};
}

StoreManifest StoreManifest::from_json(const nlohmann::json& j, const std::string& where) {
  StoreManifest m;
  JsonFields f(j, where);
  int64_t version = 0;
  f.read("format_version", version);
  TORCH_CHECK(version == 1, where, ": format_version must be 1 (got ", version, ")");
  f.read("hook", m.hook);
  f.read("d", m.d);
  f.read("dtype", m.dtype);
  store_dtype(m.dtype);
  f.read("context_length", m.context_length);
  f.read("include_bos", m.include_bos);
  f.read("model_name", m.model_name);
  f.read("model_sha256", m.model_sha256);
  if (const nlohmann::json* t = f.allow("tokenizer")) m.tokenizer = *t;
  f.read("target_rows", m.target_rows);
  f.read("rows", m.rows);
  f.read("norm_sum", m.norm_sum);
  f.allow("mean_norm");
  f.read("complete", m.complete);
  TORCH_CHECK(m.d > 0, where, ": d must be positive (got ", m.d, ")");
  int64_t total = 0;
  if (const nlohmann::json* s = f.allow("shards")) {
    TORCH_CHECK(s->is_array(), where, ": shards must be a list");
    for (const auto& e : *s) {
      TORCH_CHECK(e.is_object() && e.contains("file") && e["file"].is_string() && e.contains("rows") &&
                      e["rows"].is_number_integer(),
                  where, ": each shard needs a file name and a row count");
      m.shards.emplace_back(e["file"].get<std::string>(), e["rows"].get<int64_t>());
      total += m.shards.back().second;
    }
  }
  f.finish();
  TORCH_CHECK(total == m.rows, where, ": shards hold ", total, " rows but the manifest says ", m.rows);
  return m;
}

bool StoreManifest::same_capture(const StoreManifest& o) const {
  return hook == o.hook && d == o.d && dtype == o.dtype && context_length == o.context_length &&
         include_bos == o.include_bos && model_sha256 == o.model_sha256 && target_rows == o.target_rows &&
         tokenizer == o.tokenizer;
}

namespace {

std::string shard_file_name(int64_t s) { return fmt::format("shard-{:05d}.safetensors", s); }
fs::path part_record(const std::string& dir, int64_t s) {
  return fs::path(dir) / ".parts" / fmt::format("shard-{:05d}.json", s);
}
int64_t shard_count_of(int64_t target_rows, int64_t shard_rows) { return (target_rows + shard_rows - 1) / shard_rows; }
StoreManifest read_manifest(const std::string& dir) {
  const std::string path = (fs::path(dir) / "manifest.json").string();
  return StoreManifest::from_json(load_json_file(path, "activation manifest"), path);
}

}  // namespace

void detail::PendingRows::add(const StoreManifest& m, int64_t first_row, int64_t offset, int64_t n,
                              const torch::Tensor& acts_in, const torch::Tensor& context_in,
                              const torch::Tensor& position_in, const torch::Tensor& token_in,
                              const torch::Tensor& doc_in) {
  auto part = [&](const torch::Tensor& t) { return t.narrow(0, offset, n); };
  const torch::Tensor a = part(acts_in).to(torch::kFloat32);
  TORCH_CHECK(torch::isfinite(a).all().item<bool>(), "activations at '", m.hook, "' hold NaN or Inf (rows ",
              first_row + offset, "..", first_row + offset + n - 1, ")");
  norms.push_back(a.norm(2, {1}));
  acts.push_back(a.to(store_dtype(m.dtype)));
  context.push_back(part(context_in).to(torch::kInt64));
  position.push_back(part(position_in).to(torch::kInt32));
  token.push_back(part(token_in).to(torch::kInt64));
  doc.push_back(part(doc_in).to(torch::kInt32));
}

StoreManifest prepare_store(const std::string& dir, const StoreManifest& manifest) {
  store_dtype(manifest.dtype);
  const fs::path path = fs::path(dir) / "manifest.json";
  if (fs::exists(path)) {
    const StoreManifest existing =
        StoreManifest::from_json(load_json_file(path.string(), "activation manifest"), path.string());
    TORCH_CHECK(existing.same_capture(manifest), "output folder '", dir,
                "' holds a different capture (other model, hook, dtype, size or settings); choose another --out");
    return existing;
  }
  fs::create_directories(dir);
  StoreManifest fresh = manifest;
  fresh.rows = 0;
  fresh.norm_sum = 0;
  fresh.shards.clear();
  fresh.complete = false;
  write_file_atomic(path, fresh.to_json().dump(2) + "\n");
  return fresh;
}

ActivationWriter::ActivationWriter(const std::string& dir, StoreManifest manifest, int64_t shard_rows)
    : dir_(dir), manifest_(std::move(manifest)), shard_rows_(shard_rows) {
  TORCH_CHECK(shard_rows > 0, "shard_rows must be positive (got ", shard_rows, ")");
  manifest_ = prepare_store(dir, manifest_);
}

void ActivationWriter::append(int64_t first_row, const torch::Tensor& acts, const torch::Tensor& context,
                              const torch::Tensor& position, const torch::Tensor& token, const torch::Tensor& doc) {
  TORCH_CHECK(acts.dim() == 2 && acts.size(1) == manifest_.d, "activations for '", manifest_.hook,
              "' must have shape [n, ", manifest_.d, "] (got ", acts.sizes(), ")");
  const int64_t n = acts.size(0);
  const int64_t skip = std::max<int64_t>(0, rows_done() - first_row);
  const int64_t end = std::min(first_row + n, manifest_.target_rows);
  const int64_t take = end - first_row - skip;
  if (take <= 0) return;
  TORCH_CHECK(first_row + skip == rows_done(), "rows for '", manifest_.hook, "' arrived out of order (row ",
              first_row + skip, " after ", rows_done(), ")");
  pending_.add(manifest_, first_row, skip, take, acts, context, position, token, doc);
  buffered_ += take;
  while (buffered_ >= shard_rows_) flush_shard();
}

void ActivationWriter::flush_shard() {
  if (buffered_ == 0) return;
  const int64_t n = std::min(buffered_, shard_rows_);
  auto take = [&](std::vector<torch::Tensor>& parts) {
    torch::Tensor all = torch::cat(parts);
    parts.clear();
    if (all.size(0) > n) parts.push_back(all.narrow(0, n, all.size(0) - n).clone());
    return all.narrow(0, 0, n);
  };
  const std::string file = shard_file_name(static_cast<int64_t>(manifest_.shards.size()));
  save_safetensors((fs::path(dir_) / file).string(),
                   {{"acts", take(pending_.acts)}, {"context", take(pending_.context)},
                    {"position", take(pending_.position)}, {"token", take(pending_.token)}, {"doc", take(pending_.doc)}},
                   {{"hook", manifest_.hook}, {"format", "saelab-activations"}});
  // The norm sum grows by whole shards in a fixed order, so a resumed capture's manifest is bitwise
  // the one an uninterrupted capture writes.
  manifest_.norm_sum += take(pending_.norms).to(torch::kFloat64).sum().item<double>();
  buffered_ -= n;
  manifest_.rows += n;
  manifest_.shards.emplace_back(file, n);
  write_file_atomic(fs::path(dir_) / "manifest.json", manifest_.to_json().dump(2) + "\n");
  fault_point("shard_listed", static_cast<int64_t>(manifest_.shards.size()));
}

void ActivationWriter::finish() {
  while (buffered_ > 0) flush_shard();
  TORCH_CHECK(manifest_.rows == manifest_.target_rows, "capture of '", manifest_.hook, "' ended with ",
              manifest_.rows, " rows of ", manifest_.target_rows);
  manifest_.complete = true;
  write_file_atomic(fs::path(dir_) / "manifest.json", manifest_.to_json().dump(2) + "\n");
}

ShardWriter::ShardWriter(const std::string& dir, const StoreManifest& manifest, int64_t shard_rows,
                         std::vector<int64_t> shards)
    : dir_(dir), manifest_(manifest), shard_rows_(shard_rows), shards_(std::move(shards)) {
  TORCH_CHECK(shard_rows > 0, "shard_rows must be positive (got ", shard_rows, ")");
  const int64_t count = shard_count_of(manifest_.target_rows, shard_rows);
  for (size_t i = 0; i < shards_.size(); ++i) {
    TORCH_CHECK(shards_[i] >= 0 && shards_[i] < count && (i == 0 || shards_[i] > shards_[i - 1]),
                "the shards given to '", dir, "' must be ascending and below ", count);
  }
}

int64_t ShardWriter::owned_rows() const {
  int64_t n = 0;
  for (int64_t s : shards_) n += std::min(shard_rows_, manifest_.target_rows - s * shard_rows_);
  return n;
}

bool ShardWriter::wants(int64_t first_row, int64_t n) const {
  for (size_t i = next_; i < shards_.size(); ++i) {
    const int64_t lo = shards_[i] * shard_rows_ + (i == next_ ? buffered_ : 0);
    const int64_t hi = std::min((shards_[i] + 1) * shard_rows_, manifest_.target_rows);
    if (lo >= first_row + n) return false;
    if (first_row < hi && lo < hi) return true;
  }
  return false;
}

void ShardWriter::append(int64_t first_row, const torch::Tensor& acts, const torch::Tensor& context,
                         const torch::Tensor& position, const torch::Tensor& token, const torch::Tensor& doc) {
  TORCH_CHECK(acts.dim() == 2 && acts.size(1) == manifest_.d, "activations for '", manifest_.hook,
              "' must have shape [n, ", manifest_.d, "] (got ", acts.sizes(), ")");
  const int64_t end = first_row + acts.size(0);
  while (next_ < shards_.size()) {
    const int64_t base = shards_[next_] * shard_rows_;
    const int64_t lo = base + buffered_;
    const int64_t hi = std::min(base + shard_rows_, manifest_.target_rows);
    const int64_t from = std::max(first_row, lo), to = std::min(end, hi);
    if (from >= to) {
      if (end <= lo) return;  // rows before this shard's next row
      TORCH_CHECK(false, "rows for '", manifest_.hook, "' skipped rows ", lo, "..", hi - 1, " (row ", first_row,
                  " arrived first)");
    }
    TORCH_CHECK(from == lo, "rows for '", manifest_.hook, "' arrived out of order (row ", from, " while ", lo,
                " is next)");
    pending_.add(manifest_, first_row, from - first_row, to - from, acts, context, position, token, doc);
    buffered_ += to - from;
    if (base + buffered_ < hi) return;
    write_shard();
  }
}

void ShardWriter::write_shard() {
  const int64_t s = shards_[next_];
  auto all = [](std::vector<torch::Tensor>& parts) {
    torch::Tensor t = torch::cat(parts);
    parts.clear();
    return t;
  };
  save_safetensors((fs::path(dir_) / shard_file_name(s)).string(),
                   {{"acts", all(pending_.acts)}, {"context", all(pending_.context)},
                    {"position", all(pending_.position)}, {"token", all(pending_.token)}, {"doc", all(pending_.doc)}},
                   {{"hook", manifest_.hook}, {"format", "saelab-activations"}});
  const double norm_sum = all(pending_.norms).to(torch::kFloat64).sum().item<double>();
  fs::create_directories(fs::path(dir_) / ".parts");
  write_file_atomic(part_record(dir_, s), nlohmann::json{{"rows", buffered_}, {"norm_sum", norm_sum}}.dump() + "\n");
  written_rows_ += buffered_;
  buffered_ = 0;
  ++next_;
  fault_point("shard_written", static_cast<int64_t>(next_));
}

void ShardWriter::finish() const {
  TORCH_CHECK(next_ == shards_.size(), "capture of '", manifest_.hook, "' ended with ", shards_.size() - next_,
              " of its shards unwritten");
}

bool has_store_parts(const std::string& dir) { return fs::is_directory(fs::path(dir) / ".parts"); }

std::vector<int64_t> pending_shards(const std::string& dir, int64_t shard_rows) {
  const StoreManifest m = read_manifest(dir);
  std::vector<int64_t> pending;
  if (m.complete) return pending;
  for (int64_t s = static_cast<int64_t>(m.shards.size()); s < shard_count_of(m.target_rows, shard_rows); ++s) {
    if (!fs::exists(part_record(dir, s)) || !fs::exists(fs::path(dir) / shard_file_name(s))) pending.push_back(s);
  }
  return pending;
}

void merge_store_parts(const std::string& dir, int64_t shard_rows) {
  StoreManifest m = read_manifest(dir);
  if (m.complete) return;
  for (int64_t s = static_cast<int64_t>(m.shards.size()); s < shard_count_of(m.target_rows, shard_rows); ++s) {
    const fs::path record = part_record(dir, s);
    require_file(record, "record of a written shard");
    require_file(fs::path(dir) / shard_file_name(s), "activation shard");
    const nlohmann::json r = load_json_file(record.string(), "record of a written shard");
    TORCH_CHECK(r.is_object() && r.contains("rows") && r["rows"].is_number_integer() && r.contains("norm_sum") &&
                    r["norm_sum"].is_number(),
                "'", record.string(), "' must hold rows and norm_sum");
    const int64_t rows = r["rows"].get<int64_t>();
    TORCH_CHECK(rows == std::min(shard_rows, m.target_rows - s * shard_rows), "'", record.string(), "' says ", rows,
                " rows, the shard should hold ", std::min(shard_rows, m.target_rows - s * shard_rows));
    // Shard by shard in order, as ActivationWriter adds them: the same norm sum to the last bit.
    m.norm_sum += r["norm_sum"].get<double>();
    m.rows += rows;
    m.shards.emplace_back(shard_file_name(s), rows);
  }
  TORCH_CHECK(m.rows == m.target_rows, "capture of '", m.hook, "' holds ", m.rows, " rows of ", m.target_rows);
  m.complete = true;
  write_file_atomic(fs::path(dir) / "manifest.json", m.to_json().dump(2) + "\n");
  fs::remove_all(fs::path(dir) / ".parts");
}

ActivationStore ActivationStore::open(const std::string& dir) {
  ActivationStore s;
  s.dir_ = dir;
  const std::string path = (fs::path(dir) / "manifest.json").string();
  s.manifest_ = StoreManifest::from_json(load_json_file(path, "activation manifest"), path);
  TORCH_CHECK(s.manifest_.complete, "activation store '", dir,
              "' is incomplete (the capture was interrupted; rerun it to resume)");
  int64_t start = 0;
  for (const auto& [file, n] : s.manifest_.shards) {
    require_file(fs::path(dir) / file, "activation shard");
    s.shard_start_.push_back(start);
    start += n;
  }
  return s;
}

StoreRows ActivationStore::load_shard(int64_t i, bool as_float32) const {
  return read_shard(i, as_float32, torch::Tensor());
}

StoreRows ActivationStore::load_shard_into(int64_t i, const torch::Tensor& dest) const {
  TORCH_CHECK(dest.defined(), "load_shard_into: no destination");
  return read_shard(i, false, dest);
}

StoreRows ActivationStore::read_shard(int64_t i, bool as_float32, const torch::Tensor& dest) const {
  TORCH_CHECK(i >= 0 && i < shard_count(), "shard ", i, " is out of range (", shard_count(), " shards)");
  const auto& [file, n] = manifest_.shards[i];
  const std::string path = (fs::path(dir_) / file).string();
  StoreRows r;
  SafetensorsFile f;
  if (dest.defined()) {
    TORCH_CHECK(dest.dim() == 2 && dest.size(0) == n && dest.size(1) == manifest_.d &&
                    dest.scalar_type() == store_dtype(manifest_.dtype),
                "load_shard_into: the destination must be ", manifest_.dtype, " [", n, ", ", manifest_.d, "], not ",
                dest.scalar_type(), " ", dest.sizes());
    f = load_safetensors_into(path, "acts", dest);
    r.acts = dest;
  } else {
    f = load_safetensors(path);
    r.acts = f.at("acts");
    TORCH_CHECK(r.acts.dim() == 2 && r.acts.size(0) == n && r.acts.size(1) == manifest_.d, "activation shard '", path,
                "' has acts of shape ", r.acts.sizes(), ", the manifest says [", n, ", ", manifest_.d, "]");
    TORCH_CHECK(r.acts.scalar_type() == store_dtype(manifest_.dtype), "activation shard '", path,
                "' is not stored as ", manifest_.dtype);
    if (as_float32) r.acts = r.acts.to(torch::kFloat32);
  }
  r.context = f.at("context");
  r.position = f.at("position");
  r.token = f.at("token");
  r.doc = f.at("doc");
  for (const torch::Tensor* t : {&r.context, &r.position, &r.token, &r.doc}) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == n, "activation shard '", path, "' has provenance of the wrong length");
  }
  return r;
}

torch::Tensor ActivationStore::rows(int64_t begin, int64_t n) const {
  TORCH_CHECK(begin >= 0 && n >= 0 && begin + n <= rows(), "rows [", begin, ", ", begin + n,
              ") are outside the store of ", rows(), " rows");
  std::vector<torch::Tensor> parts;
  int64_t row = begin;
  while (row < begin + n) {
    const int64_t s = std::upper_bound(shard_start_.begin(), shard_start_.end(), row) - shard_start_.begin() - 1;
    const torch::Tensor acts = load_shard(s).acts;
    const int64_t local = row - shard_start_[s];
    const int64_t take = std::min(begin + n - row, acts.size(0) - local);
    parts.push_back(acts.narrow(0, local, take));
    row += take;
  }
  return parts.empty() ? torch::empty({0, d()}) : torch::cat(parts);
}

ShuffledBatches::ShuffledBatches(const ActivationStore& store, int64_t batch_size, int64_t buffer_shards,
                                 uint64_t seed)
    : ShuffledBatches(std::vector<const ActivationStore*>{&store}, batch_size, buffer_shards, seed) {}

ShuffledBatches::ShuffledBatches(const std::vector<const ActivationStore*>& stores, int64_t batch_size,
                                 int64_t buffer_shards, uint64_t seed, double max_buffer_bytes)
    : stores_(stores), batch_size_(batch_size), buffer_shards_(buffer_shards), seed_(seed) {
  TORCH_CHECK(!stores_.empty(), "give at least one activation store to read");
  TORCH_CHECK(batch_size > 0, "batch_size must be positive (got ", batch_size, ")");
  TORCH_CHECK(buffer_shards > 0, "buffer_shards must be positive (got ", buffer_shards, ")");
  TORCH_CHECK(max_buffer_bytes >= 0, "max_buffer_bytes must be >= 0 (got ", max_buffer_bytes, ")");
  const ActivationStore& first = *stores_.front();
  TORCH_CHECK(first.rows() >= batch_size, "the store holds ", first.rows(), " rows, fewer than one batch of ",
              batch_size);
  int64_t total = 0;
  dtype_ = store_dtype(first.manifest().dtype);
  for (const ActivationStore* s : stores_) {
    const StoreManifest& m = s->manifest();
    bool same = s->rows() == first.rows() && s->shard_count() == first.shard_count() &&
                m.model_sha256 == first.manifest().model_sha256;
    for (int64_t i = 0; same && i < s->shard_count(); ++i) {
      same = m.shards[static_cast<size_t>(i)].second == first.manifest().shards[static_cast<size_t>(i)].second;
    }
    TORCH_CHECK(same, "the activation stores of hooks '", first.manifest().hook, "' and '", m.hook,
                "' are not one capture (rows, shards or model differ); capture both hooks in one pass "
                "(saelab capture --hooks ", first.manifest().hook, ",", m.hook, ")");
    widths_.push_back(s->d());
    total += s->d();
    if (store_dtype(m.dtype) != dtype_) dtype_ = torch::kFloat32;
  }
  for (const auto& [file, n] : first.manifest().shards) widest_shard_ = std::max(widest_shard_, n);
  if (max_buffer_bytes > 0) {
    const double shard_bytes = static_cast<double>(widest_shard_) * static_cast<double>(total) *
                               static_cast<double>(c10::elementSize(dtype_));
    const auto fit = static_cast<int64_t>(max_buffer_bytes / std::max(1.0, shard_bytes));
    buffer_shards_ = std::max<int64_t>(1, std::min(buffer_shards_, fit));
  }
  width_ = total;
  shuffled_ = torch::empty({0}, torch::kInt64);
}

double ShuffledBatches::peak_bytes() const {
  const double row = static_cast<double>(width_) * static_cast<double>(c10::elementSize(dtype_));
  const double held = static_cast<double>(buffer_shards_ * widest_shard_ + batch_size_) * row;
  const double side_by_side = stores_.size() > 1 ? static_cast<double>(widest_shard_) * row : 0.0;
  return held + side_by_side + static_cast<double>(batch_size_) * (row + static_cast<double>(width_) * 4.0);
}

void ShuffledBatches::refill() {
  // The shards of this refill, in the epoch's order (a new epoch reshuffles the shard order).
  std::vector<int64_t> shards;
  for (int64_t k = 0; k < buffer_shards_; ++k) {
    if (next_shard_ >= order_.size()) {
      if (!order_.empty()) ++epoch_;
      order_.resize(static_cast<size_t>(stores_.front()->shard_count()));
      for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int64_t>(i);
      std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch_));
      std::shuffle(order_.begin(), order_.end(), rng);
      next_shard_ = 0;
    }
    shards.push_back(order_[next_shard_++]);
  }
  // The rows not handed out yet (fewer than a batch) move to the front, in their shuffled order;
  // each shard is read behind them, straight into the buffer when it is one store's. The buffer
  // is allocated once, for the most rows a refill can hold.
  const torch::Tensor rest = buffer_.defined() ? buffer_.index_select(0, shuffled_.narrow(0, cursor_, rows_left()))
                                               : torch::Tensor();
  if (!buffer_.defined()) buffer_ = torch::empty({buffer_shards_ * widest_shard_ + batch_size_, width_}, dtype_);
  int64_t at = rest.defined() ? rest.size(0) : 0;
  if (at > 0) buffer_.narrow(0, 0, at).copy_(rest);
  for (int64_t shard : shards) {
    const int64_t n = stores_.front()->manifest().shards[static_cast<size_t>(shard)].second;
    const torch::Tensor rows = buffer_.narrow(0, at, n);
    if (stores_.size() == 1) {  // one store: the buffer has its dtype
      stores_.front()->load_shard_into(shard, rows);
    } else {
      StoreRows first = stores_.front()->load_shard(shard, /*as_float32=*/false);
      rows.narrow(1, 0, widths_.front()).copy_(first.acts);
      first.acts = torch::Tensor();
      int64_t column = widths_.front();
      for (size_t i = 1; i < stores_.size(); ++i) {
        StoreRows other = stores_[i]->load_shard(shard, /*as_float32=*/false);
        TORCH_CHECK(torch::equal(other.token, first.token) && torch::equal(other.position, first.position) &&
                        torch::equal(other.context, first.context),
                    "shard ", shard, " of hooks '", stores_.front()->manifest().hook, "' and '", stores_[i]->manifest().hook,
                    "' holds different token positions: they are not one capture; capture both hooks in one pass");
        rows.narrow(1, column, widths_[i]).copy_(other.acts);
        column += widths_[i];
      }
    }
    at += n;
  }
  const int64_t m = at;
  torch::Generator gen = at::detail::createCPUGenerator(seed_ + 7919 * static_cast<uint64_t>(epoch_ * 1000003 + next_shard_));
  shuffled_ = torch::randperm(m, gen, torch::kInt64);
  cursor_ = 0;
}

std::vector<torch::Tensor> ShuffledBatches::next_all() {
  while (rows_left() < batch_size_) refill();
  const torch::Tensor batch = buffer_.index_select(0, shuffled_.narrow(0, cursor_, batch_size_)).to(torch::kFloat32);
  cursor_ += batch_size_;
  std::vector<torch::Tensor> out;
  int64_t at = 0;
  for (int64_t w : widths_) {
    out.push_back(stores_.size() == 1 ? batch : batch.narrow(1, at, w));
    at += w;
  }
  return out;
}

torch::Tensor ShuffledBatches::next() { return next_all().front(); }

void ShuffledBatches::skip(int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    while (rows_left() < batch_size_) refill();
    cursor_ += batch_size_;
  }
}

}  // namespace saelab
