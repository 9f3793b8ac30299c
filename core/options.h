// One declaration per option. An options struct names, defaults and documents every field in one
// place: the default where the member is declared, the key and its documentation in the struct's
// `fields` list. Everything else derives from that list — JSON configs (`read_options`, unknown
// keys and wrong types named), records such as run.json and stage keys (`options_json`), the
// command line (`OptionFlags` in apps/common.h: key top_k → flag --top-k, its doc and default in
// --help) and the study config (study/pipeline.h reads each section with `read_options`).
//
/// Example:
///   struct TopOptions {
///     int64_t top_k = 20;
///     int64_t batch_size = 8;
///     template <class V>
///     void fields(V& v) {
///       v("top_k", top_k, "top-activating examples kept per feature");
///       v("batch_size", batch_size, "contexts per forward pass");
///     }
///   };
///   TopOptions o;
///   read_options(load_json_file("top.json", "top config"), "top.json", o);  // {"top_k": 5}
///   options_json(o);                                                       // {"batch_size":8,"top_k":5}
//
// A struct held by another is flattened by forwarding the visitor (`generate.fields(v);`), so its
// keys sit beside the outer ones; a std::vector of options structs is a JSON array of objects.
// Adding an option is adding a member and its line in `fields`.
#pragma once
#include <nlohmann/json.hpp>

#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/json_options.h"

namespace saelab {

/// Where a field appears (a bit set; the default is everywhere).
enum FieldUse : unsigned {
  kInConfig = 1u,   ///< read from JSON configs
  kOnCommandLine = 2u,  ///< a command-line flag
  kInRecord = 4u,   ///< written by options_json (run.json, stage keys): what shapes a result
  kEverywhere = 7u,
};

/// How a field is used and which values it accepts. Every value read from a config or a flag is
/// checked against its field's rule, so an error names the key or flag: numbers are finite and
/// within [lo, hi] (integers must be whole — the JSON reader and the flag parser see to that), a
/// `path_name` string (each item of a list) must be a plain file name, because it becomes one
/// (check_path_name), and a `non_empty` list given explicitly must hold something.
struct FieldRule {
  unsigned use = kEverywhere;
  double lo = -HUGE_VAL;
  double hi = HUGE_VAL;
  bool path_name = false;
  bool non_empty = false;

  FieldRule(unsigned use_in = kEverywhere) : use(use_in) {}  // NOLINT: a FieldUse is a rule
  FieldRule only(unsigned use_in) const { FieldRule r = *this; r.use = use_in; return r; }
  FieldRule at_most(double v) const { FieldRule r = *this; r.hi = v; return r; }
  FieldRule and_non_empty() const { FieldRule r = *this; r.non_empty = true; return r; }
};
/// v("k", k, "doc", at_least(1)); v("dropout", p, "doc", in_range(0, 1)).
inline FieldRule at_least(double lo) { FieldRule r; r.lo = lo; return r; }
inline FieldRule in_range(double lo, double hi) { FieldRule r; r.lo = lo; r.hi = hi; return r; }
/// A string (or each string of a list) that becomes a file or folder name.
inline FieldRule path_name() { FieldRule r; r.path_name = true; return r; }
/// A list that may not be given empty.
inline FieldRule non_empty() { FieldRule r; r.non_empty = true; return r; }

namespace detail {
/// Throws "<where> must be …" unless `v` satisfies `rule` (`where`: "a.json: key 'k'" or "--k").
void check_number(double v, const FieldRule& rule, const std::string& where);
void check_string(const std::string& v, const FieldRule& rule, const std::string& where);

template <class T>
struct is_std_vector : std::false_type {};
template <class T>
struct is_std_vector<std::vector<T>> : std::true_type {};

template <class T>
void check_field(const T& value, const FieldRule& rule, const std::string& where) {
  if constexpr (std::is_same_v<T, bool>) {
    return;
  } else if constexpr (std::is_arithmetic_v<T>) {
    check_number(static_cast<double>(value), rule, where);
  } else if constexpr (std::is_same_v<T, std::string>) {
    check_string(value, rule, where);
  } else if constexpr (is_std_vector<T>::value) {
    TORCH_CHECK(!rule.non_empty || !value.empty(), where, " must not be empty");
    for (const auto& item : value) check_field(item, rule, where);
  }
}
}  // namespace detail

namespace detail {
struct FieldProbe {
  template <class T>
  void operator()(const char*, T&, const char*, FieldRule = {}) {}
};
}  // namespace detail

/// True for a struct with a `fields` list.
template <class T, class = void>
struct has_fields : std::false_type {};
template <class T>
struct has_fields<T, std::void_t<decltype(std::declval<T&>().fields(std::declval<detail::FieldProbe&>()))>>
    : std::true_type {};

/// True for std::vector<S> where S has a `fields` list (a JSON array of objects).
template <class T>
struct is_options_list : std::false_type {};
template <class S>
struct is_options_list<std::vector<S>> : has_fields<S> {};

template <class S>
void read_options(JsonFields& fields, S& options);

namespace detail {

struct OptionReader {
  JsonFields& json_fields;
  template <class T>
  void operator()(const char* key, T& field, const char*, FieldRule rule = {}) {
    if (!(rule.use & kInConfig)) return;
    if constexpr (is_options_list<T>::value) {
      const json* list = json_fields.allow(key);
      if (list == nullptr) return;
      const std::string where = json_fields.where() + ": " + key;
      TORCH_CHECK(list->is_array(), where, " must be an array of objects (got ", list->type_name(), ")");
      T values;
      for (size_t i = 0; i < list->size(); ++i) {
        JsonFields item((*list)[i], where + "[" + std::to_string(i) + "]");
        typename T::value_type value;
        read_options(item, value);
        item.finish();
        values.push_back(std::move(value));
      }
      field = std::move(values);
    } else if (json_fields.allow(key) != nullptr) {
      json_fields.read(key, field);
      detail::check_field(field, rule, json_fields.where() + ": key '" + key + "'");
    }
  }
};

struct OptionWriter {
  json& out;
  template <class T>
  void operator()(const char* key, T& field, const char*, FieldRule rule = {});
};

struct KeyLister {
  std::vector<std::string>& keys;
  template <class T>
  void operator()(const char* key, T&, const char*, FieldRule = {}) {
    keys.emplace_back(key);
  }
};

}  // namespace detail

/// Reads the keys of `options` present in the object behind `fields`; the caller may read keys of
/// its own and calls fields.finish().
template <class S>
void read_options(JsonFields& fields, S& options) {
  detail::OptionReader reader{fields};
  options.fields(reader);
}

/// Reads a whole config object into `options`: every key must be one of its fields.
template <class S>
void read_options(const json& object, const std::string& where, S& options) {
  JsonFields fields(object, where);
  read_options(fields, options);
  fields.finish();
}

/// The fields marked kInRecord as a JSON object.
template <class S>
json options_json(const S& options) {
  json out = json::object();
  S copy = options;  // `fields` is one list for reading and writing, so it takes a mutable struct
  detail::OptionWriter writer{out};
  copy.fields(writer);
  return out;
}

template <class T>
void detail::OptionWriter::operator()(const char* key, T& field, const char*, FieldRule rule) {
  if (!(rule.use & kInRecord)) return;
  if constexpr (is_options_list<T>::value) {
    json list = json::array();
    for (const auto& item : field) list.push_back(options_json(item));
    out[key] = std::move(list);
  } else {
    out[key] = field;
  }
}

/// Checks every field of `options` against the rule its `fields` list declares, as a config or a
/// flag would be checked: what library code calls on options built in C++, so that a bound is
/// written once, beside its key. `validate()` functions call it and keep only the rules a field's
/// rule cannot say (one field against another, a set of names). Errors: "<where>: <key> must be …".
template <class S>
void check_fields(const S& options, const std::string& where);

namespace detail {
struct RuleChecker {
  const std::string& where;
  template <class T>
  void operator()(const char* key, T& field, const char*, FieldRule rule = {}) {
    const std::string at = where.empty() ? std::string(key) : where + ": " + key;
    if constexpr (is_options_list<T>::value) {
      for (size_t i = 0; i < field.size(); ++i) check_fields(field[i], at + "[" + std::to_string(i) + "]");
    } else {
      // Only a list given empty is refused; one left empty means its default. An empty string is
      // likewise "not given" (e.g. no graph name: the first SAE found).
      rule.non_empty = false;
      if constexpr (std::is_same_v<T, std::string>) {
        if (field.empty()) return;
      }
      check_field(field, rule, at);
    }
  }
};
}  // namespace detail

template <class S>
void check_fields(const S& options, const std::string& where) {
  S copy = options;  // `fields` takes a mutable struct
  detail::RuleChecker checker{where};
  copy.fields(checker);
}

/// Every key of `S`, in declaration order (duplicates would be a bug: a test checks them).
template <class S>
std::vector<std::string> option_keys() {
  std::vector<std::string> keys;
  S options;
  detail::KeyLister lister{keys};
  options.fields(lister);
  return keys;
}

}  // namespace saelab
