#include <gtest/gtest.h>

#include <filesystem>

#include "core/files.h"
#include "core/json_options.h"
#include "models/annotations.h"
#include "models/corpus.h"
#include "models/generate.h"
#include "models/gpt2_tokenizer.h"
#include "models/sentencepiece_tokenizer.h"
#include "tests/test_util.h"

namespace saelab {
namespace {

const Gpt2Tokenizer& gpt2() {
  static const Gpt2Tokenizer tok(test::gpt2_dir() + "/encoder.json", test::gpt2_dir() + "/vocab.bpe");
  return tok;
}

// Hard cases for GPT-2's pre-tokenizer and byte-level BPE.
std::vector<std::string> hard_cases() {
  return {
      "Hello world",
      "",
      "I'm sure you'll see they've done what we'd said, isn't it? It's John's.",
      "DON'T SHOUT, 'twas 'S 're",
      "a  b   c    d",
      "   leading and trailing   ",
      "\ttabs\t\tand\nnewlines\n\n\nand\r\nwindows\r\n",
      " \n \n  x",
      "In 1984, 3.14159 and 1,000,000 people; 2nd place; 007 agents",
      "Wait... what?! (yes) [no] {maybe} <tag> @user #hash $5 %20 ^_^ ~~ --- ''quoted'' \"double\"",
      "naïve café résumé Straße Ελληνικά Русский 中文 العربية हिन्दी",
      "emoji: 🤗 👍🏽 👨‍👩‍👧 ❤️ 🇺🇸 😀!",
      "combining e\xcc\x81 and ligature \xef\xac\x81 and fullwidth \xef\xbc\xa1\xef\xbc\xa2",
      "<|endoftext|> is text here, not the special token",
  };
}

TEST(Gpt2Tokenizer, EncodesHelloWorldAsPublished) {
  EXPECT_EQ(gpt2().encode_ids("Hello world"), (std::vector<int64_t>{15496, 995}));
  EXPECT_EQ(gpt2().vocab_size(), 50257);
  EXPECT_EQ(gpt2().bos_id(), 50256);
  EXPECT_EQ(gpt2().id_to_piece(995), "\xc4\xa0world");  // "Ġworld"
  EXPECT_EQ(gpt2().piece_to_id("Hello"), 15496);
  EXPECT_EQ(gpt2().piece_to_id("no-such-piece-xyz"), -1);
}

TEST(Gpt2Tokenizer, SplitsLikeGpt2sPattern) {
  auto pieces = [](const std::string& s) {
    std::vector<std::string> out;
    for (auto [b, e] : gpt2_pretokenize(s)) out.push_back(s.substr(b, e - b));
    return out;
  };
  EXPECT_EQ(pieces("I'm here  now\n\nok"),
            (std::vector<std::string>{"I", "'m", " here", " ", " now", "\n", "\n", "ok"}));  // \s+(?!\S) leaves one
  EXPECT_EQ(pieces("x   "), (std::vector<std::string>{"x", "   "}));
  EXPECT_EQ(pieces("a1b2 !?"), (std::vector<std::string>{"a", "1", "b", "2", " !?"}));
}

// The gpt-3-encoder package's JavaScript encoder is the independent reference.
std::vector<std::vector<int64_t>> node_encode(const std::vector<std::string>& texts) {
  test::TempDir dir;
  write_file_atomic(dir / "in.json", json(texts).dump());
  const auto r = test::run_command("node " SAELAB_SOURCE_DIR "/tests/js/gpt2_encode.js '" + test::gpt2_dir() + "' '" +
                                   (dir / "in.json") + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return json::parse(r.output).get<std::vector<std::vector<int64_t>>>();
}

TEST(Gpt2Tokenizer, MatchesTheReferenceEncoderOnHardCases) {
  const auto cases = hard_cases();
  const auto expected = node_encode(cases);
  ASSERT_EQ(expected.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(gpt2().encode_ids(cases[i]), expected[i]) << cases[i];
}

TEST(Gpt2Tokenizer, MatchesTheReferenceEncoderOnBrownDocuments) {
  const Corpus brown = read_brown(test::brown_dir());
  std::vector<std::string> texts;
  for (size_t i = 0; i < brown.documents.size(); i += 50) texts.push_back(brown.documents[i].text);
  const auto expected = node_encode(texts);
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(gpt2().encode_ids(texts[i]), expected[i]) << "document " << i * 50;
  }
}

TEST(Gpt2Tokenizer, RoundTripsAndOffsetsTileTheText) {
  for (const auto& s : hard_cases()) {
    const Encoding e = gpt2().encode(s);
    EXPECT_EQ(gpt2().decode(e.ids), s);
    int64_t pos = 0;
    for (size_t i = 0; i < e.ids.size(); ++i) {
      EXPECT_EQ(e.begins[i], pos) << s;
      EXPECT_GT(e.ends[i], e.begins[i]) << s;
      pos = e.ends[i];
    }
    EXPECT_EQ(pos, static_cast<int64_t>(s.size())) << s;
  }
  // Invalid UTF-8 survives the byte-level round trip too.
  const std::string bad = "ok \xff\xfe bytes \xc3";
  EXPECT_EQ(gpt2().decode(gpt2().encode_ids(bad)), bad);
}

TEST(Gpt2Tokenizer, LoadsHuggingFaceVocabAndMerges) {
  test::TempDir dir;
  fs::copy_file(test::gpt2_dir() + "/encoder.json", dir / "vocab.json");
  write_file_atomic(dir / "merges.txt", read_file(test::gpt2_dir() + "/vocab.bpe", "merges"));
  const auto tok = open_tokenizer({{"kind", "gpt2"}, {"encoder", "vocab.json"}, {"merges", "merges.txt"}},
                                  dir.path().string(), "model.json");
  for (const auto& s : hard_cases()) EXPECT_EQ(tok->encode_ids(s), gpt2().encode_ids(s)) << s;
}

TEST(Gpt2Tokenizer, RejectsCorruptFilesWithTheirNames) {
  test::TempDir dir;
  test::write_text(dir / "vocab.json", "{\"a\": 0, \"b\": \"x\"}");
  test::write_text(dir / "merges.txt", "#version: 0.2\na b\n");
  EXPECT_THROWS_WITH(Gpt2Tokenizer(dir / "vocab.json", dir / "merges.txt"),
                     "GPT-2 vocabulary '" + (dir / "vocab.json") + "': id of 'b' is not an integer");
  test::write_text(dir / "broken.json", "{\"a\": 0,");
  EXPECT_THROW(Gpt2Tokenizer(dir / "broken.json", dir / "merges.txt"), c10::Error);
  EXPECT_THROWS_WITH(Gpt2Tokenizer(test::gpt2_dir() + "/encoder.json", dir / "missing.txt"),
                     "GPT-2 merges '" + (dir / "missing.txt") + "' does not exist");
}

class SentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    corpus_ = new Corpus(read_brown(test::brown_dir()));
    dir_ = new test::TempDir;
    auto docs = split_documents(*corpus_, Split::kTrain);
    docs.resize(60);
    SentencePieceTrainOptions o;
    o.vocab_size = 1000;
    train_sentencepiece(docs, o, *dir_ / "sp.model");
    tok_ = new SentencePieceTokenizer(*dir_ / "sp.model");
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete dir_;
    delete corpus_;
  }
  static Corpus* corpus_;
  static test::TempDir* dir_;
  static SentencePieceTokenizer* tok_;
};
Corpus* SentencePieceTest::corpus_ = nullptr;
test::TempDir* SentencePieceTest::dir_ = nullptr;
SentencePieceTokenizer* SentencePieceTest::tok_ = nullptr;

TEST_F(SentencePieceTest, HasTheRequestedVocabularyAndSpecialIds) {
  EXPECT_EQ(tok_->vocab_size(), 1000);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_id(), 2);
  EXPECT_EQ(tok_->id_to_piece(1), "<s>");
  EXPECT_EQ(tok_->piece_to_id("<s>"), 1);
  EXPECT_EQ(tok_->piece_to_id("definitely-not-a-piece"), -1);
  EXPECT_EQ(tok_->kind(), "sentencepiece");
}

TEST_F(SentencePieceTest, RoundTripsTextIncludingUnseenCharacters) {
  for (const std::string s : {"The jury said it did find that.", "two  spaces and\nnewline", "emoji 🤗 and 中文",
                              "numbers 1961 and 3.5%"}) {
    const Encoding e = tok_->encode(s);
    EXPECT_EQ(tok_->decode(e.ids), s);
    ASSERT_EQ(e.begins.size(), e.ids.size());
    for (size_t i = 0; i < e.ids.size(); ++i) {
      EXPECT_LE(e.begins[i], e.ends[i]);
      EXPECT_LE(e.ends[i], static_cast<int64_t>(s.size()));
      if (i > 0) {
        EXPECT_GE(e.begins[i], e.begins[i - 1]);
      }
    }
  }
}

TEST_F(SentencePieceTest, RejectsACorruptModelFile) {
  test::write_text(*dir_ / "bad.model", "this is not a sentencepiece model");
  EXPECT_THROWS_WITH(SentencePieceTokenizer bad(*dir_ / "bad.model"),
                     "SentencePiece model '" + (*dir_ / "bad.model") + "' is corrupt");
}

TEST_F(SentencePieceTest, AnnotatesTokensWithTheirWordsTagsAndGenre) {
  const Document& doc = corpus_->documents.front();  // ca01, press reportage
  const AnnotatedTokens a = annotate(*tok_, doc);
  ASSERT_EQ(a.ids.size(), a.word.size());
  int32_t last = -1;
  size_t starts = 0;
  for (size_t i = 0; i < a.ids.size(); ++i) {
    if (a.word[i] < 0) continue;
    ASSERT_GE(a.word[i], last);
    last = a.word[i];
    if (a.word_start[i]) {
      ++starts;
      const Word& w = doc.words[a.word[i]];
      EXPECT_GE(w.begin, a.begins[i]);
      EXPECT_LT(w.begin, a.ends[i]);
    }
  }
  // Nearly every word has a token that starts it (a piece like ." may swallow a second word).
  EXPECT_GT(static_cast<double>(starts), 0.97 * static_cast<double>(doc.words.size()));
  // "Atlanta's" is one Brown word tagged np$: all its tokens carry that tag.
  const size_t pos = doc.text.find("Atlanta's");
  for (size_t i = 0; i < a.ids.size(); ++i) {
    if (a.begins[i] <= static_cast<int64_t>(pos + 3) && a.ends[i] > static_cast<int64_t>(pos + 3)) {
      EXPECT_EQ(a.tag(doc, i), "np$");
    }
  }
  EXPECT_EQ(base_tag("nn-tl"), "nn");
  EXPECT_EQ(base_tag("fw-in-tl"), "in");
  EXPECT_EQ(base_tag("np$"), "np$");
}

TEST(GeneratedText, InvalidUtf8BytesBecomeReplacementCharacters) {
  EXPECT_EQ(utf8_or_replacement("caf\xC3\xA9 \xE2\x82\xAC"), "caf\xC3\xA9 \xE2\x82\xAC");  // valid: unchanged
  EXPECT_EQ(utf8_or_replacement("a\xC3"), "a\xEF\xBF\xBD");                                 // cut inside a character
  EXPECT_EQ(utf8_or_replacement("\xFF\x20\x80"), "\xEF\xBF\xBD \xEF\xBF\xBD");          // bytes no character has
  EXPECT_EQ(utf8_or_replacement("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                 // overlong '/'
  EXPECT_EQ(utf8_or_replacement("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
}

}  // namespace
}  // namespace saelab
