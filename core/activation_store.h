// The activation store: per hook point, a folder of safetensors shards and a manifest.json.
//
//   OUT/<hook>/manifest.json                  format version, model hash, hook, d, dtype, rows,
//                                             context length, tokenizer, mean norm, shard list
//   OUT/<hook>/shard-00000.safetensors        acts [n, d] (float32 / float16 / bfloat16) and the
//                                             provenance of every row: context [n] I64, position
//                                             [n] I32, token [n] I64, doc [n] I32
//
// A shard is listed in the manifest only after it is completely written (both writes atomic), so
// a killed writer resumes from its last listed shard with no duplicated or missing rows. Memory is
// bounded by one shard per writer and the reader's shuffle buffer.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace saelab {

struct StoreManifest {
  std::string hook;
  int64_t d = 0;
  std::string dtype = "float32";  ///< float32, float16 or bfloat16
  int64_t context_length = 0;
  bool include_bos = false;
  std::string model_name;
  std::string model_sha256;
  nlohmann::json tokenizer;
  int64_t target_rows = 0;        ///< rows the capture will hold when complete
  // Filled as shards are written:
  int64_t rows = 0;
  double norm_sum = 0;            ///< sum of row L2 norms (float32), for the mean
  std::vector<std::pair<std::string, int64_t>> shards;  ///< file name, rows
  bool complete = false;

  double mean_norm() const { return rows > 0 ? norm_sum / static_cast<double>(rows) : 0.0; }
  nlohmann::json to_json() const;
  static StoreManifest from_json(const nlohmann::json& j, const std::string& where);
  /// True when `other` describes the same capture (all fields but progress).
  bool same_capture(const StoreManifest& other) const;
};

torch::Dtype store_dtype(const std::string& name);

namespace detail {
// Rows waiting to be written as a shard: activations in the store's dtype, provenance, and the
// float32 rows' norms.
struct PendingRows {
  std::vector<torch::Tensor> acts, context, position, token, doc, norms;
  /// Rows [offset, offset + n) of the given tensors, whose row 0 is global row `first_row`
  /// (named in the NaN error).
  void add(const StoreManifest& m, int64_t first_row, int64_t offset, int64_t n, const torch::Tensor& acts_in,
           const torch::Tensor& context_in, const torch::Tensor& position_in, const torch::Tensor& token_in,
           const torch::Tensor& doc_in);
};
}  // namespace detail

/// Appends rows for one hook point. Opening a folder that already holds a manifest resumes it
/// (it must describe the same capture, else an error says the folder holds a different one).
class ActivationWriter {
 public:
  ActivationWriter(const std::string& dir, StoreManifest manifest, int64_t shard_rows);

  /// Rows already stored (resume point).
  int64_t rows_done() const { return manifest_.rows + buffered_; }

  /// Rows with global indices [first_row, first_row + n); rows below rows_done() are skipped and
  /// rows past target_rows dropped. acts [n, d] float; provenance tensors [n].
  void append(int64_t first_row, const torch::Tensor& acts, const torch::Tensor& context,
              const torch::Tensor& position, const torch::Tensor& token, const torch::Tensor& doc);

  /// Writes the last partial shard and marks the manifest complete.
  void finish();

  const StoreManifest& manifest() const { return manifest_; }

 private:
  void flush_shard();

  std::string dir_;
  StoreManifest manifest_;
  int64_t shard_rows_;
  detail::PendingRows pending_;
  int64_t buffered_ = 0;
};

/// Writes chosen shards of a store, several processes at once (saelab capture under torchrun):
/// shard s holds rows [s·shard_rows, (s+1)·shard_rows) of the capture, byte for byte the file
/// ActivationWriter writes. Each finished shard is recorded in DIR/.parts/shard-NNNNN.json (rows and
/// norm sum, written after the shard, both atomic); merge_store_parts() lists them in the manifest
/// once every shard is there. Rows of shards this writer does not own are ignored.
class ShardWriter {
 public:
  /// `shards`: the shards this process writes, ascending. DIR/manifest.json must exist
  /// (prepare_store) and describe `manifest`'s capture.
  ShardWriter(const std::string& dir, const StoreManifest& manifest, int64_t shard_rows, std::vector<int64_t> shards);

  /// Whether any row in [first_row, first_row + n) belongs to a shard this writer still has to write.
  bool wants(int64_t first_row, int64_t n) const;
  /// Rows with global indices [first_row, first_row + n) (as ActivationWriter::append; rows must
  /// come in order within each shard).
  void append(int64_t first_row, const torch::Tensor& acts, const torch::Tensor& context,
              const torch::Tensor& position, const torch::Tensor& token, const torch::Tensor& doc);
  /// Checks that every owned shard was written.
  void finish() const;
  /// Rows of the owned shards (for progress).
  int64_t owned_rows() const;
  int64_t written_rows() const { return written_rows_; }

 private:
  void write_shard();

  std::string dir_;
  StoreManifest manifest_;
  int64_t shard_rows_;
  std::vector<int64_t> shards_;
  size_t next_ = 0;  // index into shards_ of the shard being filled
  detail::PendingRows pending_;
  int64_t buffered_ = 0;
  int64_t written_rows_ = 0;
};

/// Creates DIR/manifest.json for a new capture, or checks that the one there is the same capture
/// (else an error says the folder holds a different one). Returns the manifest on disk.
StoreManifest prepare_store(const std::string& dir, const StoreManifest& manifest);
/// Shards of the capture in DIR that are neither listed in its manifest nor recorded as written in
/// DIR/.parts, ascending.
std::vector<int64_t> pending_shards(const std::string& dir, int64_t shard_rows);
/// Whether DIR holds shards written by ShardWriter that are not yet merged into the manifest.
bool has_store_parts(const std::string& dir);
/// Lists every shard in the manifest (in order, with the norm sum an uninterrupted one-process
/// capture would have), marks it complete and removes DIR/.parts. Every shard must be there.
void merge_store_parts(const std::string& dir, int64_t shard_rows);

/// One shard's rows: activations as float32 and their provenance.
struct StoreRows {
  torch::Tensor acts;      // [n, d] float32 (or the store's dtype, when asked)
  torch::Tensor context;   // [n] int64
  torch::Tensor position;  // [n] int32
  torch::Tensor token;     // [n] int64
  torch::Tensor doc;       // [n] int32
};

class ActivationStore {
 public:
  /// Opens OUT/<hook> (the folder holding manifest.json); it must be complete.
  static ActivationStore open(const std::string& dir);

  const StoreManifest& manifest() const { return manifest_; }
  int64_t rows() const { return manifest_.rows; }
  int64_t d() const { return manifest_.d; }
  int64_t shard_count() const { return static_cast<int64_t>(manifest_.shards.size()); }

  /// Loads shard i (validated against the manifest), converting activations to float32 (or
  /// keeping the store's dtype when as_float32 is false).
  StoreRows load_shard(int64_t i, bool as_float32 = true) const;
  /// Loads shard i's activations straight into `dest` (the store's dtype, [rows of the shard, d],
  /// contiguous); the result's acts is `dest`.
  StoreRows load_shard_into(int64_t i, const torch::Tensor& dest) const;
  /// Rows [begin, begin + n) across shards, as float32 [n, d].
  torch::Tensor rows(int64_t begin, int64_t n) const;

 private:
  StoreRows read_shard(int64_t i, bool as_float32, const torch::Tensor& dest) const;

  std::string dir_;
  StoreManifest manifest_;
  std::vector<int64_t> shard_start_;  // global index of each shard's first row
};

/// Shuffled streaming batches over a store, epoch after epoch: each epoch visits the shards in a
/// seeded random order, holds `buffer_shards` shards at a time and shuffles their rows. The
/// sequence of batches depends only on the seed (and on `max_buffer_bytes`).
///
/// Memory: the buffer keeps rows in the store's dtype and in the order they were read; a batch
/// gathers its rows through the shuffled order and converts them to float32. `max_buffer_bytes`
/// (> 0) lowers the shards held at a time until they fit (at least one): at GPT-3 width one
/// float32 shard of 32,768 rows is 1.6 GB.
class ShuffledBatches {
 public:
  ShuffledBatches(const ActivationStore& store, int64_t batch_size, int64_t buffer_shards, uint64_t seed);
  /// Several stores of one capture read in lockstep (a transcoder's input and target): each batch
  /// holds the same token positions in every store, shuffled together; the order is the one the
  /// first store alone would give. Their shards must hold the same rows (checked as they load:
  /// context, position and token of every row), else an error names both hooks.
  ShuffledBatches(const std::vector<const ActivationStore*>& stores, int64_t batch_size, int64_t buffer_shards,
                  uint64_t seed, double max_buffer_bytes = 0);
  /// [batch_size, d] float32 (the first store's).
  torch::Tensor next();
  /// [batch_size, d_i] float32 of every store, the same rows.
  std::vector<torch::Tensor> next_all();
  /// Draws and drops n batches: a resumed run restores its data position this way (the order is
  /// a function of the seed and the number of batches drawn).
  void skip(int64_t n);
  int64_t epoch() const { return epoch_; }
  /// Shards read into the buffer at each refill (buffer_shards, lowered by max_buffer_bytes).
  int64_t shards_per_refill() const { return buffer_shards_; }
  /// The most the buffer holds, in bytes: its rows (the shards of one refill and a batch's left
  /// over, allocated once), a float32 batch and, for stores read side by side, the shard being
  /// read (a single store's shard is read straight into the buffer).
  double peak_bytes() const;

 private:
  void refill();
  int64_t rows_left() const { return shuffled_.size(0) - cursor_; }

  std::vector<const ActivationStore*> stores_;
  std::vector<int64_t> widths_;  // d of each store: buffer_ holds them side by side
  int64_t widest_shard_ = 0;     // rows
  int64_t width_ = 0;            // Σ d
  int64_t batch_size_, buffer_shards_;
  uint64_t seed_;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  size_t next_shard_ = 0;
  torch::Dtype dtype_ = torch::kFloat32;  // the buffer's: the stores' dtype when they share one
  torch::Tensor buffer_;    // [capacity, Σ d] rows in the order they were read (the first m in use)
  torch::Tensor shuffled_;  // [m] int64: the shuffled order of buffer_'s rows; [0, cursor_) handed out
  int64_t cursor_ = 0;
};

/// Activations made while training instead of read from a store (saelab train --model): the
/// model runs over the corpus inside the training loop and fills a shuffle buffer. Made by
/// open_activation_stream (models/capture.h); read by run_sae_training (sae/train_run.h).
class ActivationStream {
 public:
  virtual ~ActivationStream() = default;
  /// Each hook as a capture of the same plan would describe its store (target_rows: the rows of
  /// one pass over the plan).
  virtual const std::vector<StoreManifest>& manifests() const = 0;
  /// What makes the stream what it is (model hash, plan, buffer): part of the run's identity.
  virtual nlohmann::json fingerprint() const = 0;
  /// The next batch of every hook: [batch_size, d] float32 each, the same token positions in each.
  virtual std::vector<torch::Tensor> next() = 0;
  /// The first n rows of the plan for every hook, in corpus order (initialisation, calibration).
  virtual std::vector<torch::Tensor> first_rows(int64_t n) = 0;
  /// The stream's position (corpus position and the buffer's rows), for checkpoints.
  virtual void save(torch::serialize::OutputArchive& archive) const = 0;
  virtual void load(torch::serialize::InputArchive& archive, const std::string& where) = 0;
};

}  // namespace saelab
