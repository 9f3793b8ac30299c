// Unicode character classes used by GPT-2's pre-tokenizer (\p{L}, \p{N}, \s).
#pragma once

namespace saelab {

bool is_unicode_letter(char32_t c);  ///< general category L*
bool is_unicode_number(char32_t c);  ///< general category N*
bool is_unicode_space(char32_t c);   ///< White_Space property

}  // namespace saelab
