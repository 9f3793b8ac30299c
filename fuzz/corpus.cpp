// Corpus readers (models/corpus.h), opened through open_corpus as `--corpus` specs are. The first
// input byte picks the reader (byte % 3; seeds use the digit '0'..'2'), the rest is the data:
//   0  brown:DIR   tagged Brown files: up to four, cut at "--8<--" lines, named ca01, cb02, cc03, cd04
//   1  jsonl:PATH  one JSON object per line
//   2  text:DIR    plain text: up to four .txt files, cut the same way
// Every document's words must lie inside its text, and the three splits must partition the documents.
#include <string>

#include "fuzz/fuzz_target.h"
#include "fuzz/fuzz_util.h"
#include "models/corpus.h"

namespace {

using namespace saelab;

void check_corpus(const Corpus& c) {
  for (const Document& d : c.documents) {
    const int64_t n = static_cast<int64_t>(d.text.size());
    int64_t previous_end = 0;
    for (const Word& w : d.words) {
      fuzz::require(w.begin >= previous_end && w.begin <= w.end && w.end <= n, "words lie in order inside the text");
      previous_end = w.end;
    }
  }
  size_t total = 0;
  for (Split s : {Split::kTrain, Split::kValidation, Split::kTest}) total += split_documents(c, s).size();
  fuzz::require(total == c.documents.size(), "the splits partition the documents");
}

}  // namespace

SAELAB_FUZZ_TARGET(corpus) {
  if (size == 0) return 0;
  const int reader = data[0] % 3;
  const std::string body = fuzz::as_string(data + 1, size - 1);
  const fuzz::fs::path dir = fuzz::fresh_dir("corpus");
  std::string spec;
  if (reader == 1) {
    fuzz::write_bytes(dir / "corpus.jsonl", body);
    spec = "jsonl:" + (dir / "corpus.jsonl").string();
  } else {
    const char* brown_names[] = {"ca01", "cb02", "cc03", "cd04"};
    const char* text_names[] = {"a.txt", "b.txt", "c.txt", "d.txt"};
    const auto parts = fuzz::split_parts(body, 4);
    for (size_t i = 0; i < parts.size(); ++i) {
      fuzz::write_bytes(dir / (reader == 0 ? brown_names[i] : text_names[i]), parts[i]);
    }
    spec = (reader == 0 ? "brown:" : "text:") + dir.string();
  }
  fuzz::rejecting([&] { check_corpus(open_corpus(spec, fuzz::scratch_dir().string())); });
  return 0;
}
