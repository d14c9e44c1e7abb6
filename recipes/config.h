// Config: a recipe (TOML file + `--set key=value` overrides) checked against a declared schema.
//
// Life cycle:
//   Config c;
//   c.load_file("recipes/gpt2-124m.toml");     // parse only (TOML syntax errors name file:line:col)
//   c.add_override("optim.lr=3e-4");           // --set, applied after the file, in order
//   c.declare<int64_t>("train.steps", 1000, "optimizer steps");   // the schema, any time before...
//   c.finalize();                              // ...validation: unknown keys, types; then frozen
//   int64_t steps = c.get<int64_t>("train.steps");
// Keys are dotted paths: "train.steps" is `steps` in TOML table `[train]` (or `train.steps = ...`).
// Types: int64_t (TOML integer), double (TOML float; an integer is accepted and converted), bool,
// std::string. Nothing else (arrays, inline tables, dates) is a recipe value.
// --set values are TOML values (`3e-4`, `true`, `"text"`, `1_000`); for a string key an unquoted
// value is taken literally (`--set data.path=/x/y`).
// Errors (modu::Error) name the key, where the value came from (file:line or --set) and what was
// expected; an unknown key suggests the closest declared one.
// effective_toml() is the recipe as run: every declared key with its final value, grouped by table
// (root keys first, then tables in sorted order, keys sorted), each with its help as a comment.
// Loading that text back (load_string) with the same schema gives the same values, so a
// checkpoint can store it and resume from it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace modu::recipes {

class Config {
 public:
  using Value = std::variant<int64_t, double, bool, std::string>;
  enum class Type { kInt, kDouble, kBool, kString };

  Config();
  ~Config();
  Config(const Config&);
  Config& operator=(const Config&);
  Config(Config&&) noexcept;
  Config& operator=(Config&&) noexcept;

  // ---- sources (before finalize) -------------------------------------------------------------
  void load_file(const std::string& path);
  // `source` names the text in messages (e.g. "checkpoint step_001000/recipe.toml").
  void load_string(std::string_view toml_text, const std::string& source);
  // "key=value", as given to --set.
  void add_override(std::string_view assignment);

  // ---- schema (before finalize) --------------------------------------------------------------
  template <class T>
  Config& declare(const std::string& key, T default_value, const std::string& help);

  // A value given in the file or by --set, before the schema exists (to pick a schema, e.g. by
  // a `recipe = "gpt-pretrain"` key); converted like a declared T would be. nullopt when absent.
  template <class T>
  std::optional<T> peek(const std::string& key) const;

  // Validates every given key against the schema and freezes the config.
  void finalize();
  bool finalized() const;

  // ---- values (after finalize) ---------------------------------------------------------------
  template <class T>
  T get(const std::string& key) const;
  bool has(const std::string& key) const;             // declared
  bool is_default(const std::string& key) const;      // not given in the file or by --set
  std::string origin(const std::string& key) const;   // "default", "FILE:LINE" or "--set"
  std::vector<std::string> keys() const;              // declared keys, sorted
  std::string help(const std::string& key) const;
  Type type(const std::string& key) const;

  std::string effective_toml() const;
  const std::string& source() const;  // file name or load_string's source ("" when none)

  static const char* type_name(Type t);

 private:
  template <class T>
  static constexpr Type type_of() {
    if constexpr (std::is_same_v<T, int64_t>) return Type::kInt;
    else if constexpr (std::is_same_v<T, double>) return Type::kDouble;
    else if constexpr (std::is_same_v<T, bool>) return Type::kBool;
    else return Type::kString;
  }
  template <class T>
  static constexpr void check_type() {
    static_assert(std::is_same_v<T, int64_t> || std::is_same_v<T, double> || std::is_same_v<T, bool> ||
                      std::is_same_v<T, std::string>,
                  "Config values are int64_t, double, bool or std::string");
  }
  void declare_value(const std::string& key, Type type, Value default_value, const std::string& help);
  const Value& value_of(const std::string& key, Type want) const;
  std::optional<Value> peek_value(const std::string& key, Type want) const;

  struct Impl;
  Impl* impl_;
};

template <class T>
Config& Config::declare(const std::string& key, T default_value, const std::string& help) {
  if constexpr (std::is_convertible_v<T, std::string> && !std::is_same_v<T, bool>) {
    declare_value(key, Type::kString, Value(std::string(default_value)), help);
  } else if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
    declare_value(key, Type::kDouble, Value(static_cast<double>(default_value)), help);
  } else if constexpr (std::is_same_v<T, bool>) {
    declare_value(key, Type::kBool, Value(default_value), help);
  } else {
    static_assert(std::is_integral_v<T>, "Config values are int64_t, double, bool or std::string");
    declare_value(key, Type::kInt, Value(static_cast<int64_t>(default_value)), help);
  }
  return *this;
}

template <class T>
T Config::get(const std::string& key) const {
  check_type<T>();
  return std::get<T>(value_of(key, type_of<T>()));
}

template <class T>
std::optional<T> Config::peek(const std::string& key) const {
  check_type<T>();
  std::optional<Value> v = peek_value(key, type_of<T>());
  if (!v) return std::nullopt;
  return std::get<T>(*v);
}

}  // namespace modu::recipes
