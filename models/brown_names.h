// Readable names for the Brown corpus's part-of-speech tags, so that an explanation says
// "POS = nn (singular or mass noun)" rather than a code only a corpus linguist reads (genres are
// named by brown_genre_name in models/corpus.h). From the Brown Corpus Manual's tag list (Francis & Kučera 1979).
#pragma once
#include <string>

namespace saelab {

/// The meaning of a Brown tag, compound forms included: "nns" → "plural noun", "nn-tl" → "singular
/// or mass noun (in a title)", "fw-in" → "foreign word: preposition", "ppss+md" → "nominative pronoun +
/// modal auxiliary", "np$" → "possessive proper noun", "bez*" → "is, negated". Empty for a tag it
/// does not know.
std::string brown_tag_meaning(const std::string& tag);

}  // namespace saelab
