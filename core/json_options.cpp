#include "core/json_options.h"

#include <c10/util/Exception.h>

#include "core/files.h"

namespace saelab {

json load_json_file(const std::string& path, const std::string& what) {
  const std::string text = read_file(path, what);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    TORCH_CHECK(false, what, " '", path, "' is not valid JSON (byte ", e.byte, ")");
  }
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
