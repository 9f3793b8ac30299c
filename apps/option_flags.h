// Command-line flags derived from an options struct's field list (core/options.h).
#pragma once
#include <CLI/CLI.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "core/options.h"

namespace saelab {

/// `item` without the spaces and tabs around it (list items typed "topk, standard").
inline std::string trimmed(const std::string& item) {
  const size_t first = item.find_first_not_of(" \t"), last = item.find_last_not_of(" \t");
  return first == std::string::npos ? std::string() : item.substr(first, last - first + 1);
}

/// Adds a command-line flag for every field of an options struct (core/options.h) marked
/// kOnCommandLine: key top_k becomes --top-k, with the field's doc and its current value as the
/// default in --help; a bool becomes --key / --no-key and a list takes comma-separated values.
/// Flags the user gives override what a JSON config put into the struct: read the config into
/// `*target` first, then call apply(). Declares nothing itself: a new field shows up here as is.
template <class S>
class OptionFlags {
 public:
  /// `prefix` (e.g. "explain") names the flags --explain-features … where keys would collide.
  explicit OptionFlags(CLI::App* app, S* target, std::string prefix = "")
      : target_(target), given_(*target), prefix_(std::move(prefix)) {
    Binder binder{app, this};
    given_.fields(binder);
  }
  OptionFlags(const OptionFlags&) = delete;
  OptionFlags& operator=(const OptionFlags&) = delete;

  /// Copies the flags the user gave into the target (call after reading any config).
  void apply() {
    Applier applier{this};
    target_->fields(applier);
  }

 private:
  struct Bound {
    CLI::Option* option;  // nullptr: the field is no flag
    void* value;          // the field in given_
    FieldRule rule;
  };

  std::string flag_name(const char* key) const {
    std::string flag = "--" + (prefix_.empty() ? std::string(key) : prefix_ + "_" + key);
    std::replace(flag.begin(), flag.end(), '_', '-');
    return flag;
  }

  struct Binder {
    CLI::App* app;
    OptionFlags* owner;
    template <class T>
    void operator()(const char* key, T& field, const char* doc, FieldRule rule = {}) {
      CLI::Option* opt = nullptr;
      if constexpr (!is_options_list<T>::value) {
        if (rule.use & kOnCommandLine) opt = add(owner->flag_name(key), field, doc);
      }
      owner->bound_.push_back({opt, &field, rule});
    }
    template <class T>
    CLI::Option* add(const std::string& flag, T& field, const char* doc) {
      if constexpr (std::is_same_v<T, bool>) {
        return app->add_flag(flag + ",!--no-" + flag.substr(2), field, doc)->default_str(field ? "true" : "false");
      } else if constexpr (is_vector<T>::value) {
        std::string shown;
        for (const auto& item : field) shown += (shown.empty() ? "" : ",") + fmt_item(item);
        // "topk, standard": each item trimmed of the spaces around it
        const CLI::Validator trim(
            [](std::string& item) {
              item = trimmed(item);
              return std::string();
            },
            "", "trim");
        return app->add_option(flag, field, doc)->delimiter(',')->transform(trim)->default_str(shown);
      } else {
        return app->add_option(flag, field, doc)->capture_default_str();
      }
    }
  };

  struct Applier {
    OptionFlags* owner;
    size_t next = 0;
    template <class T>
    void operator()(const char* key, T& field, const char*, FieldRule = {}) {
      const Bound& b = owner->bound_.at(next++);
      if (b.option != nullptr && b.option->count() > 0) {
        const T& given = *static_cast<T*>(b.value);
        detail::check_field(given, b.rule, owner->flag_name(key));
        field = given;
      }
    }
  };

  template <class T>
  struct is_vector : std::false_type {};
  template <class T>
  struct is_vector<std::vector<T>> : std::true_type {};
  template <class T>
  static std::string fmt_item(const T& item) {
    if constexpr (std::is_same_v<T, std::string>) {
      return item;
    } else {
      std::ostringstream os;
      os << item;
      return os.str();
    }
  }

  S* target_;
  S given_;
  std::string prefix_;
  std::vector<Bound> bound_;
};

}  // namespace saelab
