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
  std::vector<torch::Tensor> acts_, context_, position_, token_, doc_, norms_;
  int64_t buffered_ = 0;
};

/// One shard's rows: activations as float32 and their provenance.
struct StoreRows {
  torch::Tensor acts;      // [n, d] float32
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

  /// Loads shard i (validated against the manifest), converting activations to float32.
  StoreRows load_shard(int64_t i) const;
  /// Rows [begin, begin + n) across shards, as float32 [n, d].
  torch::Tensor rows(int64_t begin, int64_t n) const;

 private:
  std::string dir_;
  StoreManifest manifest_;
  std::vector<int64_t> shard_start_;  // global index of each shard's first row
};

/// Shuffled streaming batches over a store, epoch after epoch: each epoch visits the shards in a
/// seeded random order, holds `buffer_shards` shards at a time and shuffles their rows. The
/// sequence of batches depends only on the seed.
class ShuffledBatches {
 public:
  ShuffledBatches(const ActivationStore& store, int64_t batch_size, int64_t buffer_shards, uint64_t seed);
  /// [batch_size, d] float32.
  torch::Tensor next();
  /// Draws and drops n batches: a resumed run restores its data position this way (the order is
  /// a function of the seed and the number of batches drawn).
  void skip(int64_t n);
  int64_t epoch() const { return epoch_; }

 private:
  void refill();

  const ActivationStore& store_;
  int64_t batch_size_, buffer_shards_;
  uint64_t seed_;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  size_t next_shard_ = 0;
  torch::Tensor buffer_;  // [m, d] shuffled rows not yet handed out
  int64_t cursor_ = 0;
};

}  // namespace saelab
