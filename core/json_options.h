// Strict reading of JSON config objects into options structs: every key must be known and of the
// right type, and errors name the file, the key and what was found.
#pragma once
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <set>
#include <string_view>
#include <string>
#include <vector>

namespace saelab {

using json = nlohmann::json;

/// Deepest nesting of arrays and objects any saelab JSON input may have. nlohmann's parser and
/// every reader walking the result recurse, so an input nested 300,000 deep would overflow the
/// stack; saelab's own files are nested fewer than ten levels.
constexpr int kMaxJsonDepth = 64;

/// Parses JSON text from `where` ("config 'a.json'", "safetensors header of 'w.safetensors'").
/// Every JSON input goes through here: errors are one line naming `where` and what is wrong —
/// the byte of a syntax error, nesting deeper than kMaxJsonDepth, a number too large for a double.
/// `max_depth` lowers the nesting bound for inputs from the network (saelab serve's request bodies).
json parse_json_text(std::string_view text, const std::string& where, int max_depth = kMaxJsonDepth);

/// Parses a JSON file; errors name the file (see parse_json_text).
json load_json_file(const std::string& path, const std::string& what);

class JsonFields {
 public:
  /// `where` prefixes every error ("configs/demo.json: train").
  JsonFields(const json& object, std::string where);

  /// Assigns `out` from `key` when present; throws when the value has the wrong type.
  void read(const char* key, int64_t& out);
  void read(const char* key, int& out);
  void read(const char* key, double& out);
  void read(const char* key, bool& out);
  void read(const char* key, std::string& out);
  void read(const char* key, std::vector<std::string>& out);
  void read(const char* key, std::vector<int64_t>& out);
  void read(const char* key, std::vector<double>& out);
  /// Accepts `key` with any value (the caller reads it itself); returns it or nullptr.
  const json* allow(const char* key) { return find(key); }
  /// Reads `key` as a required string.
  std::string required_string(const char* key);

  /// The prefix of every error ("configs/demo.json: train").
  const std::string& where() const { return where_; }

  /// Throws when the object holds a key no `read` call asked for.
  void finish() const;

 private:
  const json* find(const char* key);
  [[noreturn]] void type_error(const char* key, const char* expected, const json& got) const;

  const json& object_;
  std::string where_;
  std::set<std::string> known_;
};

}  // namespace saelab
