// Config: TOML recipe + --set overrides validated against a declared schema (contract in config.h).
// Invariant: after finalize() every declared key has a value of its declared type and no given
// key is undeclared; all problems found are reported together in one modu::Error.
#include "recipes/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "core/check.h"

namespace modu::recipes {

namespace {

enum class GivenKind { kInt, kDouble, kBool, kString, kOther };

struct Given {
  GivenKind kind = GivenKind::kOther;
  Config::Value value;       // for scalar kinds
  std::string other;         // what it is, for kOther ("an array", "a table", ...)
  bool from_set = false;
  std::string raw;           // --set: the text after '='
  bool raw_quoted = false;   // --set: the text starts with a quote
  std::string origin;        // "FILE:LINE" or "--set KEY=VALUE"
};

struct Decl {
  Config::Type type;
  Config::Value value;  // default, then the final value
  std::string help;
  std::string origin = "default";
};

const char* given_kind_name(GivenKind k) {
  switch (k) {
    case GivenKind::kInt: return "an integer";
    case GivenKind::kDouble: return "a float";
    case GivenKind::kBool: return "a boolean";
    case GivenKind::kString: return "a string";
    case GivenKind::kOther: return "something else";
  }
  return "?";
}

bool valid_key(std::string_view key) {
  if (key.empty() || key.front() == '.' || key.back() == '.') return false;
  for (size_t i = 0; i < key.size(); ++i) {
    const char c = key[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || (c == '.' && key[i - 1] != '.');
    if (!ok) return false;
  }
  return true;
}

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && (s[a] == ' ' || s[a] == '\t')) ++a;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t')) --b;
  return std::string(s.substr(a, b - a));
}

size_t levenshtein(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string last_part(std::string_view key) {
  const size_t dot = key.rfind('.');
  return std::string(dot == std::string_view::npos ? key : key.substr(dot + 1));
}

// A scalar TOML node as a Given (kind + value); other nodes become kOther with a description.
Given given_from_node(const toml::node& n) {
  Given g;
  if (auto v = n.as_integer()) {
    g.kind = GivenKind::kInt;
    g.value = static_cast<int64_t>(v->get());
  } else if (auto d = n.as_floating_point()) {
    g.kind = GivenKind::kDouble;
    g.value = d->get();
  } else if (auto b = n.as_boolean()) {
    g.kind = GivenKind::kBool;
    g.value = b->get();
  } else if (auto s = n.as_string()) {
    g.kind = GivenKind::kString;
    g.value = s->get();
  } else if (n.is_array()) {
    g.other = "an array";
  } else if (n.is_table()) {
    g.other = "a table";
  } else {
    g.other = "a date/time";
  }
  return g;
}

std::string format_double(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  // Shortest round-trip form, fixed or scientific like %g: 0.0003, 1e-07, 1.234567e+06.
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  // TOML needs a digit after '.' and before 'e' ("1e-05" is fine, "1.e5" is not): to_chars never
  // produces the latter.
  return s;
}

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04X", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string format_value(const Config::Value& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, int64_t>) return std::to_string(x);
        else if constexpr (std::is_same_v<T, double>) return format_double(x);
        else if constexpr (std::is_same_v<T, bool>) return x ? "true" : "false";
        else return toml_string(x);
      },
      v);
}

}  // namespace

struct Config::Impl {
  std::string source;
  bool loaded = false;
  bool finalized = false;
  std::map<std::string, Given> given;  // last value given per key (file, then --set in order)
  std::vector<std::string> order;      // keys in the order first given, for error listing
  std::map<std::string, Decl> decls;

  void give(const std::string& key, Given g) {
    if (!given.count(key)) order.push_back(key);
    given[key] = std::move(g);
  }

  void walk(const toml::table& t, const std::string& prefix) {
    for (auto&& [k, node] : t) {
      const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      if (const toml::table* sub = node.as_table()) {
        walk(*sub, key);
        continue;
      }
      Given g = given_from_node(node);
      g.origin = source + ":" + std::to_string(node.source().begin.line);
      give(key, std::move(g));
    }
  }

  std::string suggestion(const std::string& key) const {
    std::string best;
    size_t best_d = std::string::npos;
    for (const auto& [k, d] : decls) {
      size_t dist = levenshtein(key, k);
      // "steps" given where "train.steps" exists: the table was forgotten.
      if (last_part(k) == last_part(key)) dist = std::min<size_t>(dist, 1);
      if (dist < best_d) {
        best_d = dist;
        best = k;
      }
    }
    const size_t limit = std::max<size_t>(2, key.size() / 3);
    if (best.empty() || best_d > limit) return "";
    return best;
  }

  std::string where(const Given& g) const {
    if (!g.from_set) return g.origin;
    return g.origin + (source.empty() ? "" : " (recipe " + source + ")");
  }

  // Converts a given value to the declared type, or returns an error message.
  std::optional<Value> convert(const std::string& key, const Given& g, Type want, std::string* err) const {
    auto fail = [&](const std::string& got) -> std::optional<Value> {
      *err = where(g) + ": " + key + ": expected " + Config::type_name(want) + ", got " + got;
      if (want == Type::kInt && g.kind == GivenKind::kDouble) *err += " (write an integer such as 1000 or 1_000)";
      if (want == Type::kString && !g.from_set) *err += " (quote strings in TOML: \"...\")";
      return std::nullopt;
    };
    const std::string got = g.kind == GivenKind::kOther ? g.other
                            : g.from_set ? std::string(given_kind_name(g.kind)) + " '" + g.raw + "'"
                                         : std::string(given_kind_name(g.kind)) + " " + format_value(g.value);
    switch (want) {
      case Type::kInt:
        if (g.kind == GivenKind::kInt) return g.value;
        return fail(got);
      case Type::kDouble:
        if (g.kind == GivenKind::kDouble) return g.value;
        if (g.kind == GivenKind::kInt) return Value(static_cast<double>(std::get<int64_t>(g.value)));
        return fail(got);
      case Type::kBool:
        if (g.kind == GivenKind::kBool) return g.value;
        return fail(got);
      case Type::kString:
        if (g.kind == GivenKind::kString) return g.value;
        if (g.from_set && !g.raw_quoted) return Value(g.raw);  // unquoted --set text, literally
        return fail(got);
    }
    return std::nullopt;
  }
};

Config::Config() : impl_(new Impl) {}
Config::~Config() { delete impl_; }
Config::Config(const Config& o) : impl_(new Impl(*o.impl_)) {}
Config& Config::operator=(const Config& o) {
  if (this != &o) *impl_ = *o.impl_;
  return *this;
}
Config::Config(Config&& o) noexcept : impl_(o.impl_) { o.impl_ = new Impl; }
Config& Config::operator=(Config&& o) noexcept {
  std::swap(impl_, o.impl_);
  return *this;
}

const char* Config::type_name(Type t) {
  switch (t) {
    case Type::kInt: return "an integer (int64)";
    case Type::kDouble: return "a number (float)";
    case Type::kBool: return "a boolean (true/false)";
    case Type::kString: return "a string";
  }
  return "?";
}

void Config::load_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MODU_CHECK(f.good(), path, ": cannot open the recipe file");
  std::stringstream ss;
  ss << f.rdbuf();
  load_string(ss.str(), path);
}

void Config::load_string(std::string_view text, const std::string& source) {
  MODU_CHECK(!impl_->finalized, source, ": cannot load a recipe into a finalized Config");
  MODU_CHECK(!impl_->loaded, source, ": a Config takes one recipe (already loaded ", impl_->source, ")");
  impl_->source = source;
  impl_->loaded = true;
  toml::table t;
  try {
    t = toml::parse(text, std::string_view(source));
  } catch (const toml::parse_error& e) {
    MODU_FAIL(source, ":", e.source().begin.line, ":", e.source().begin.column,
              ": TOML syntax error: ", e.description());
  }
  impl_->walk(t, "");
}

void Config::add_override(std::string_view assignment) {
  MODU_CHECK(!impl_->finalized, "--set ", assignment, ": the Config is already finalized");
  const size_t eq = assignment.find('=');
  MODU_CHECK(eq != std::string_view::npos, "--set ", assignment, ": expected KEY=VALUE, e.g. --set optim.lr=3e-4");
  const std::string key = trim(assignment.substr(0, eq));
  const std::string raw = trim(assignment.substr(eq + 1));
  MODU_CHECK(valid_key(key), "--set ", assignment, ": '", key,
             "' is not a key (expected dotted names of letters, digits, '_' and '-', e.g. train.steps)");
  Given g;
  g.from_set = true;
  g.raw = raw;
  g.raw_quoted = !raw.empty() && (raw.front() == '"' || raw.front() == '\'');
  g.origin = "--set " + std::string(assignment);
  try {
    const std::string doc = "v = " + raw;
    toml::table t = toml::parse(std::string_view(doc), std::string_view("--set"));
    const toml::node* n = t.get("v");
    Given parsed = given_from_node(*n);
    g.kind = parsed.kind;
    g.value = parsed.value;
    g.other = parsed.other;
  } catch (const toml::parse_error&) {
    g.kind = GivenKind::kOther;
    g.other = "'" + raw + "', which is not a TOML value";
    MODU_CHECK(!g.raw_quoted, "--set ", assignment, ": the value is not a valid TOML string");
  }
  impl_->give(key, std::move(g));
}

void Config::declare_value(const std::string& key, Type type, Value default_value, const std::string& help) {
  MODU_CHECK(!impl_->finalized, "Config::declare(", key, "): the Config is already finalized");
  MODU_CHECK(valid_key(key), "Config::declare: '", key, "' is not a valid key");
  MODU_CHECK(!impl_->decls.count(key), "Config::declare: '", key, "' declared twice");
  for (const auto& [k, d] : impl_->decls) {
    MODU_CHECK(k.rfind(key + ".", 0) != 0 && key.rfind(k + ".", 0) != 0, "Config::declare: '", key,
               "' and '", k, "' cannot both exist (one would be a table and a value at once)");
  }
  impl_->decls[key] = Decl{type, std::move(default_value), help};
}

std::optional<Config::Value> Config::peek_value(const std::string& key, Type want) const {
  auto it = impl_->given.find(key);
  if (it == impl_->given.end()) return std::nullopt;
  std::string err;
  std::optional<Value> v = impl_->convert(key, it->second, want, &err);
  MODU_CHECK(v.has_value(), err);
  return v;
}

void Config::finalize() {
  MODU_CHECK(!impl_->finalized, "Config::finalize called twice");
  std::vector<std::string> errors;
  for (const std::string& key : impl_->order) {
    const Given& g = impl_->given.at(key);
    auto d = impl_->decls.find(key);
    if (d == impl_->decls.end()) {
      std::string msg = impl_->where(g) + ": unknown key '" + key + "'";
      // A table given where a value is declared, or the other way round.
      for (const auto& [k, decl] : impl_->decls) {
        if (key.rfind(k + ".", 0) == 0) {
          msg += " ('" + k + "' is a value, not a table)";
          break;
        }
      }
      const std::string s = impl_->suggestion(key);
      if (!s.empty()) msg += "; did you mean '" + s + "'?";
      errors.push_back(msg);
      continue;
    }
    std::string err;
    std::optional<Value> v = impl_->convert(key, g, d->second.type, &err);
    if (!v) {
      errors.push_back(err);
      continue;
    }
    d->second.value = std::move(*v);
    d->second.origin = g.from_set ? "--set" : g.origin;
  }
  if (!errors.empty()) {
    std::string msg = errors.size() == 1 ? errors[0] : std::to_string(errors.size()) + " problems in the recipe:";
    if (errors.size() > 1) {
      for (const std::string& e : errors) msg += "\n  " + e;
    }
    throw Error(msg);
  }
  impl_->finalized = true;
}

bool Config::finalized() const { return impl_->finalized; }

const Config::Value& Config::value_of(const std::string& key, Type want) const {
  MODU_CHECK(impl_->finalized, "Config::get(", key, ") before finalize()");
  auto d = impl_->decls.find(key);
  MODU_CHECK(d != impl_->decls.end(), "Config::get: '", key, "' was never declared");
  MODU_CHECK(d->second.type == want, "Config::get: '", key, "' is declared as ", type_name(d->second.type),
             ", read as ", type_name(want));
  return d->second.value;
}

bool Config::has(const std::string& key) const { return impl_->decls.count(key) > 0; }

bool Config::is_default(const std::string& key) const { return origin(key) == "default"; }

std::string Config::origin(const std::string& key) const {
  auto d = impl_->decls.find(key);
  MODU_CHECK(d != impl_->decls.end(), "Config: '", key, "' was never declared");
  return d->second.origin;
}

std::vector<std::string> Config::keys() const {
  std::vector<std::string> out;
  for (const auto& [k, d] : impl_->decls) out.push_back(k);
  return out;
}

std::string Config::help(const std::string& key) const {
  auto d = impl_->decls.find(key);
  MODU_CHECK(d != impl_->decls.end(), "Config: '", key, "' was never declared");
  return d->second.help;
}

Config::Type Config::type(const std::string& key) const {
  auto d = impl_->decls.find(key);
  MODU_CHECK(d != impl_->decls.end(), "Config: '", key, "' was never declared");
  return d->second.type;
}

const std::string& Config::source() const { return impl_->source; }

std::string Config::effective_toml() const {
  // table -> (leaf, decl), root table "" first; std::map sorts both levels.
  std::map<std::string, std::map<std::string, const Decl*>> tables;
  for (const auto& [k, d] : impl_->decls) {
    const size_t dot = k.rfind('.');
    if (dot == std::string::npos) tables[""][k] = &d;
    else tables[k.substr(0, dot)][k.substr(dot + 1)] = &d;
  }
  std::ostringstream os;
  os << "# effective recipe: defaults";
  if (!impl_->source.empty()) os << ", then " << impl_->source;
  os << ", then --set overrides\n";
  for (const auto& [table, leaves] : tables) {
    if (!table.empty()) os << "\n[" << table << "]\n";
    size_t width = 0;
    for (const auto& [leaf, d] : leaves) width = std::max(width, leaf.size() + 3 + format_value(d->value).size());
    for (const auto& [leaf, d] : leaves) {
      const std::string line = leaf + " = " + format_value(d->value);
      os << line;
      std::string help = d->help;
      std::replace(help.begin(), help.end(), '\n', ' ');
      if (!help.empty() || d->origin != "default") {
        os << std::string(width - line.size() + 2, ' ') << "# " << help;
        if (d->origin != "default") os << (help.empty() ? "" : " ") << "[" << d->origin << "]";
      }
      os << "\n";
    }
  }
  return os.str();
}

}  // namespace modu::recipes
