#include "core/json_options.h"

#include <algorithm>

#include <c10/util/Exception.h>

#include "core/files.h"
#include "core/options.h"

#include <cmath>
#include <sstream>

namespace saelab {

namespace {

// The first byte at which `text` opens its (max_depth + 1)-th nested array or object, or npos.
// Brackets inside strings do not count; syntax errors are left to the parser.
size_t too_deep_at(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return std::string_view::npos;
}

// nlohmann's messages start with "[json.exception.<kind>.<id>] " and may add "parse error at line
// 1, column 9: "; keep what follows.
std::string parser_reason(const std::string& what) {
  std::string s = what.substr(what.find(']') == std::string::npos ? 0 : what.find(']') + 1);
  const size_t colon = s.rfind(": ");
  if (colon != std::string::npos) s = s.substr(colon + 2);
  while (!s.empty() && s.front() == ' ') s.erase(0, 1);
  if (s.size() > 120) s = s.substr(0, 120) + "...";
  return s;
}

}  // namespace

json parse_json_text(std::string_view text, const std::string& where, int max_depth) {
  max_depth = std::min(max_depth, kMaxJsonDepth);
  const size_t deep = too_deep_at(text, max_depth);
  TORCH_CHECK(deep == std::string_view::npos, where, " is nested deeper than ", max_depth,
              " levels (byte ", deep, ")");
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    TORCH_CHECK(false, where, " is not valid JSON (byte ", e.byte, ": ", parser_reason(e.what()), ")");
  } catch (const json::out_of_range& e) {
    TORCH_CHECK(false, where, " has a number out of range: ", parser_reason(e.what()));
  } catch (const json::exception& e) {
    TORCH_CHECK(false, where, " cannot be read as JSON: ", parser_reason(e.what()));
  }
}

json load_json_file(const std::string& path, const std::string& what) {
  return parse_json_text(read_file(path, what), what + " '" + path + "'");
}

JsonFields::JsonFields(const json& object, std::string where) : object_(object), where_(std::move(where)) {
  TORCH_CHECK(object_.is_object(), where_, ": expected a JSON object (got ", object_.type_name(), ")");
}

const json* JsonFields::find(const char* key) {
  known_.insert(key);
  auto it = object_.find(key);
  return it == object_.end() ? nullptr : &*it;
}

void JsonFields::type_error(const char* key, const char* expected, const json& got) const {
  std::string shown = got.dump();
  if (shown.size() > 40) shown = shown.substr(0, 40) + "...";
  TORCH_CHECK(false, where_, ": key '", key, "' must be ", expected, " (got ", shown, ")");
}

void JsonFields::read(const char* key, int64_t& out) {
  if (const json* v = find(key)) {
    if (!v->is_number_integer()) type_error(key, "an integer", *v);
    out = v->get<int64_t>();
  }
}

void JsonFields::read(const char* key, int& out) {
  int64_t wide = out;
  read(key, wide);
  TORCH_CHECK(wide >= INT32_MIN && wide <= INT32_MAX, where_, ": key '", key, "' is out of range (got ", wide, ")");
  out = static_cast<int>(wide);
}

void JsonFields::read(const char* key, double& out) {
  if (const json* v = find(key)) {
    if (!v->is_number()) type_error(key, "a number", *v);
    out = v->get<double>();
  }
}

void JsonFields::read(const char* key, bool& out) {
  if (const json* v = find(key)) {
    if (!v->is_boolean()) type_error(key, "true or false", *v);
    out = v->get<bool>();
  }
}

void JsonFields::read(const char* key, std::string& out) {
  if (const json* v = find(key)) {
    if (!v->is_string()) type_error(key, "a string", *v);
    out = v->get<std::string>();
  }
}

void JsonFields::read(const char* key, std::vector<std::string>& out) {
  if (const json* v = find(key)) {
    if (!v->is_array()) type_error(key, "an array of strings", *v);
    std::vector<std::string> values;
    for (const auto& e : *v) {
      if (!e.is_string()) type_error(key, "an array of strings", *v);
      values.push_back(e.get<std::string>());
    }
    out = std::move(values);
  }
}

void JsonFields::read(const char* key, std::vector<int64_t>& out) {
  if (const json* v = find(key)) {
    if (!v->is_array()) type_error(key, "an array of integers", *v);
    std::vector<int64_t> values;
    for (const auto& e : *v) {
      if (!e.is_number_integer()) type_error(key, "an array of integers", *v);
      values.push_back(e.get<int64_t>());
    }
    out = std::move(values);
  }
}

void JsonFields::read(const char* key, std::vector<double>& out) {
  if (const json* v = find(key)) {
    if (!v->is_array()) type_error(key, "an array of numbers", *v);
    std::vector<double> values;
    for (const auto& e : *v) {
      if (!e.is_number()) type_error(key, "an array of numbers", *v);
      values.push_back(e.get<double>());
    }
    out = std::move(values);
  }
}

std::string JsonFields::required_string(const char* key) {
  const json* v = find(key);
  TORCH_CHECK(v != nullptr, where_, ": required key '", key, "' is missing");
  if (!v->is_string()) type_error(key, "a string", *v);
  return v->get<std::string>();
}

void JsonFields::finish() const {
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (known_.count(it.key()) == 0) {
      std::string valid;
      for (const auto& k : known_) valid += (valid.empty() ? "" : ", ") + k;
      TORCH_CHECK(false, where_, ": unknown key '", it.key(), "' (valid keys: ", valid, ")");
    }
  }
}

}  // namespace saelab

namespace saelab::detail {

namespace {
std::string shown(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
}  // namespace

void check_number(double v, const FieldRule& rule, const std::string& where) {
  TORCH_CHECK(std::isfinite(v), where, " must be a finite number (got ", shown(v), ")");
  if (v >= rule.lo && v <= rule.hi) return;
  if (rule.hi == HUGE_VAL) TORCH_CHECK(false, where, " must be at least ", shown(rule.lo), " (got ", shown(v), ")");
  if (rule.lo == -HUGE_VAL) TORCH_CHECK(false, where, " must be at most ", shown(rule.hi), " (got ", shown(v), ")");
  TORCH_CHECK(false, where, " must be between ", shown(rule.lo), " and ", shown(rule.hi), " (got ", shown(v), ")");
}

void check_string(const std::string& v, const FieldRule& rule, const std::string& where) {
  if (rule.path_name) check_path_name(v, where);
}

}  // namespace saelab::detail
