// safetensors I/O (core/safetensors.h): every dtype, a plain Python reader, corrupt files.
#include <gtest/gtest.h>

#include <fstream>

#include "core/files.h"
#include "core/safetensors.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  test::TempDir dir;
  const torch::Tensor f32 = torch::randn({3, 4});
  const std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"f32", f32},
      {"f64", torch::randn({2}, torch::kFloat64)},
      {"f16", torch::randn({5}).to(torch::kFloat16)},
      {"bf16", torch::randn({5}).to(torch::kBFloat16)},
      {"i64", torch::arange(6, torch::kInt64).view({2, 3})},
      {"i32", torch::arange(4, torch::kInt32)},
      {"u8", torch::arange(3, torch::kUInt8)},
      {"b", torch::tensor({true, false})},
      {"empty", torch::empty({0, 7})},
      {"transposed", f32.t()},
  };
  save_safetensors(dir / "a.safetensors", tensors, {{"k", "v"}});
  const SafetensorsFile f = load_safetensors(dir / "a.safetensors");
  EXPECT_EQ(f.metadata.at("k"), "v");
  ASSERT_EQ(f.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    EXPECT_TRUE(torch::equal(f.at(name), t.contiguous())) << name;
    EXPECT_EQ(f.at(name).scalar_type(), t.scalar_type()) << name;
  }
  // The header is padded so the data section starts 8-byte aligned.
  const std::string raw = read_file(dir / "a.safetensors", "file");
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
}

TEST(Safetensors, FilesWeWriteLoadWithAPlainPythonReader) {
  test::TempDir dir;
  const torch::Tensor a = torch::randn({4, 5});
  const torch::Tensor h = torch::randn({6}).to(torch::kFloat16);
  const torch::Tensor bf = torch::randn({6}).to(torch::kBFloat16);
  const torch::Tensor i = torch::arange(10, torch::kInt64);
  save_safetensors(dir / "x.safetensors", {{"a", a}, {"h", h}, {"bf", bf}, {"i", i}}, {{"hook", "blocks.1.input"}});
  const auto r = test::run_command(SAELAB_TEST_PYTHON " " SAELAB_SOURCE_DIR "/tests/python/read_safetensors.py " +
                                   (dir / "x.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = json::parse(r.output);
  EXPECT_EQ(j["metadata"]["hook"], "blocks.1.input");
  EXPECT_EQ(j["tensors"]["a"]["shape"], json({4, 5}));
  EXPECT_EQ(j["tensors"]["a"]["dtype"], "F32");
  EXPECT_NEAR(j["tensors"]["a"]["sum"].get<double>(), a.to(torch::kFloat64).sum().item<double>(), 1e-4);
  EXPECT_NEAR(j["tensors"]["h"]["sum"].get<double>(), h.to(torch::kFloat64).sum().item<double>(), 1e-3);
  EXPECT_NEAR(j["tensors"]["bf"]["sum"].get<double>(), bf.to(torch::kFloat64).sum().item<double>(), 1e-3);
  EXPECT_EQ(j["tensors"]["i"]["sum"].get<double>(), 45.0);
}

// Builds a file from a header string and a data section.
std::string file_with(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

void expect_rejected(const std::string& bytes, const std::string& phrase) {
  EXPECT_THROWS_WITH(parse_safetensors(bytes, "bad.safetensors"), phrase, "bad.safetensors");
}

TEST(Safetensors, RejectsCorruptFilesWithClearErrors) {
  const std::string data(16, '\0');
  expect_rejected("abc", "is truncated");
  std::string huge(8, '\0');
  huge[6] = 1;  // header length far past the end
  expect_rejected(huge + "{}", "runs past the end of the file");
  expect_rejected(file_with("{\"a\": ", data), "header is not valid JSON");
  expect_rejected(file_with("[1, 2]", data), "header is not a JSON object");
  expect_rejected(file_with(R"({"a": {"dtype": "F33", "shape": [4], "data_offsets": [0, 16]}})", data),
                  "unknown dtype 'F33'");
  expect_rejected(file_with(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})", data),
                  "needs 12 bytes but data_offsets give 16");
  expect_rejected(file_with(R"({"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}})", data),
                  "fall outside the data section of 16 bytes");
  expect_rejected(file_with(R"({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})", data),
                  "negative or non-integer size");
  expect_rejected(file_with(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                            data),
                  "overlap");
  expect_rejected(file_with(R"({"a": {"dtype": "F32", "shape": [2]}})", data), "needs dtype, shape and data_offsets");
  expect_rejected(file_with(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [8, 4]}})", data),
                  "fall outside the data section");
  expect_rejected(file_with(R"({"__metadata__": {"k": 3}})", data), "metadata 'k' is not a string");
}

TEST(Safetensors, AMissingFileIsNamed) {
  EXPECT_THROWS_WITH(load_safetensors("/nonexistent/sae_weights.safetensors"),
                     "safetensors file '/nonexistent/sae_weights.safetensors' does not exist");
}

}  // namespace
}  // namespace saelab
