#include "models/brown_names.h"

#include <map>

namespace saelab {

namespace {

const std::map<std::string, std::string>& base_tags() {
  static const std::map<std::string, std::string> kTags = {
      {".", "sentence closer"}, {",", "comma"}, {":", "colon"}, {"(", "opening bracket"}, {")", "closing bracket"},
      {"--", "dash"}, {"'", "apostrophe"}, {"nil", "no tag"}, {"``", "opening quote"}, {"''", "closing quote"}, {"*", "not, n't"},
      {"abl", "pre-qualifier"}, {"abn", "pre-quantifier"}, {"abx", "pre-quantifier (both)"},
      {"ap", "post-determiner"}, {"at", "article"},
      {"be", "be"}, {"bed", "were"}, {"bedz", "was"}, {"beg", "being"}, {"bem", "am"}, {"ben", "been"},
      {"ber", "are"}, {"bez", "is"},
      {"cc", "coordinating conjunction"}, {"cd", "cardinal number"}, {"cs", "subordinating conjunction"},
      {"do", "do"}, {"dod", "did"}, {"doz", "does"},
      {"dt", "singular determiner"}, {"dti", "singular or plural determiner"}, {"dts", "plural determiner"},
      {"dtx", "determiner / double conjunction"}, {"ex", "existential there"}, {"fw", "foreign word"},
      {"hv", "have"}, {"hvd", "had (past tense)"}, {"hvg", "having"}, {"hvn", "had (past participle)"}, {"hvz", "has"},
      {"in", "preposition"}, {"jj", "adjective"}, {"jjr", "comparative adjective"},
      {"jjs", "semantically superlative adjective"}, {"jjt", "superlative adjective"},
      {"md", "modal auxiliary"}, {"nc", "cited word"}, {"nn", "singular or mass noun"}, {"nns", "plural noun"},
      {"np", "proper noun"}, {"nps", "plural proper noun"}, {"nr", "adverbial noun"}, {"nrs", "plural adverbial noun"},
      {"od", "ordinal number"}, {"pn", "nominal pronoun"}, {"pp$", "possessive determiner"},
      {"pp$$", "possessive pronoun"}, {"ppl", "reflexive pronoun"}, {"ppls", "plural reflexive pronoun"},
      {"ppo", "objective pronoun"}, {"pps", "third-person singular nominative pronoun"},
      {"ppss", "nominative pronoun"}, {"ql", "qualifier"}, {"qlp", "post-qualifier"}, {"rb", "adverb"},
      {"rbr", "comparative adverb"}, {"rbt", "superlative adverb"}, {"rn", "nominal adverb"},
      {"rp", "adverb or particle"}, {"to", "infinitive marker to"}, {"uh", "interjection"},
      {"vb", "verb, base form"}, {"vbd", "verb, past tense"}, {"vbg", "verb, present participle or gerund"},
      {"vbn", "verb, past participle"}, {"vbz", "verb, third-person singular present"},
      {"wdt", "wh-determiner"}, {"wp$", "possessive wh-pronoun"}, {"wpo", "objective wh-pronoun"},
      {"wps", "nominative wh-pronoun"}, {"wql", "wh-qualifier"}, {"wrb", "wh-adverb"}};
  return kTags;
}

bool ends_with(const std::string& s, const std::string& end) {
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

// One tag without "+" parts.
std::string simple_meaning(std::string tag) {
  // Suffixes stack ("nn-tl-hl": a noun in a title, within a headline); peeled from the end.
  std::string where;
  for (bool peeled = true; peeled;) {
    peeled = false;
    for (const auto& [suffix, note] : {std::pair<std::string, std::string>{"-tl", "in a title"},
                                       {"-hl", "in a headline"},
                                       {"-nc", "cited"}}) {
      if (tag.size() > suffix.size() && ends_with(tag, suffix)) {
        tag.resize(tag.size() - suffix.size());
        where = where.empty() ? note : note + ", " + where;
        peeled = true;
      }
    }
  }
  if (!where.empty()) where = " (" + where + ")";
  if (tag.rfind("fw-", 0) == 0) {
    const std::string rest = simple_meaning(tag.substr(3));
    return rest.empty() ? std::string() : "foreign word: " + rest + where;
  }
  const auto& tags = base_tags();
  if (auto it = tags.find(tag); it != tags.end()) return it->second + where;
  if (tag.size() > 1 && tag.back() == '*') {
    const std::string rest = simple_meaning(tag.substr(0, tag.size() - 1));
    return rest.empty() ? std::string() : rest + ", negated" + where;
  }
  if (tag.size() > 1 && tag.back() == '$') {
    const std::string rest = simple_meaning(tag.substr(0, tag.size() - 1));
    return rest.empty() ? std::string() : "possessive " + rest + where;
  }
  return "";
}

}  // namespace

std::string brown_tag_meaning(const std::string& tag) {
  std::string out;
  size_t start = 0;
  for (;;) {
    const size_t plus = tag.find('+', start);
    const std::string part = simple_meaning(tag.substr(start, plus == std::string::npos ? std::string::npos : plus - start));
    if (part.empty()) return "";
    out += (out.empty() ? "" : " + ") + part;
    if (plus == std::string::npos) return out;
    start = plus + 1;
  }
}

}  // namespace saelab
