// checkpoint/store.cpp — the checkpoint root as a whole: step folder names, listing committed steps,
// reading `latest`, retention, and the RNG-state JSON helpers (see checkpoint.h).
//
// Invariants: a step counts as committed only when its folder has the canonical name and a
// manifest.json whose own checksum matches; retain_last never deletes the newest `keep` committed
// steps, the step `latest` names, temp folders or anything it does not recognise, and it removes a
// folder's manifest (durably) before the rest, so an interrupted deletion leaves no false checkpoint.
#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "checkpoint/checkpoint.h"
#include "checkpoint/fsio.h"
#include "checkpoint/layout_names.h"
#include "checkpoint/manifest.h"

namespace modu::checkpoint {

std::string step_dir_name(int64_t step) {
  MODU_CHECK(step >= 0, "checkpoint step must be >= 0, got ", step);
  char buf[40];
  std::snprintf(buf, sizeof(buf), "step_%08" PRId64, step);
  return buf;
}

std::optional<int64_t> parse_step_dir_name(std::string_view name) {
  constexpr std::string_view kPrefix = "step_";
  if (name.size() < kPrefix.size() + 8 || name.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  std::string_view digits = name.substr(kPrefix.size());
  if (digits.size() > 18) return std::nullopt;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (step_dir_name(v) != name) return std::nullopt;  // only the canonical spelling
  return v;
}

fs::path step_dir(const fs::path& root, int64_t step) { return root / step_dir_name(step); }

bool is_committed(const fs::path& root, int64_t step) {
  const fs::path manifest = step_dir(root, step) / kManifestFile;
  if (fsio::file_size_or_missing(manifest) < 0) return false;
  return manifest_checksum_ok(fsio::read_file(manifest));
}

std::vector<int64_t> committed_steps(const fs::path& root) {
  std::vector<int64_t> steps;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return steps;
  for (const auto& e : fs::directory_iterator(root)) {
    std::optional<int64_t> s = parse_step_dir_name(e.path().filename().string());
    if (s && e.is_directory() && is_committed(root, *s)) steps.push_back(*s);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

std::optional<int64_t> latest_step(const fs::path& root) {
  const fs::path latest = root / kLatestFile;
  if (fsio::file_size_or_missing(latest) < 0) return std::nullopt;
  std::string text = fsio::read_file(latest);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  std::optional<int64_t> s = parse_step_dir_name(text);
  MODU_CHECK(s.has_value(), latest.string(), ": malformed: holds \"", text.substr(0, 64),
             "\", expected a folder name like step_00001000; rewrite it to name a committed step folder");
  return s;
}

std::vector<fs::path> retain_last(const fs::path& root, int keep) {
  MODU_CHECK(keep >= 1, "retain_last: keep must be >= 1, got ", keep, " (the newest checkpoint is always kept)");
  std::vector<int64_t> steps = committed_steps(root);
  std::optional<int64_t> latest = latest_step(root);
  std::vector<fs::path> deleted;
  if (steps.size() <= size_t(keep)) return deleted;
  const int64_t oldest_kept = steps[steps.size() - size_t(keep)];
  for (int64_t s : steps) {
    if (s >= oldest_kept || (latest && s == *latest)) continue;
    const fs::path dir = step_dir(root, s);
    // Manifest first and durably: from here on the folder is not a checkpoint, whatever happens next.
    fsio::remove_file_if_exists(dir / kManifestFile);
    fsio::fsync_dir(dir);
    std::error_code ec;
    fs::remove_all(dir, ec);
    MODU_CHECK(!ec, "retain_last: removing ", dir.string(), " failed: ", ec.message(),
               "; its manifest is already gone, so it is no longer a checkpoint; remove it by hand");
    deleted.push_back(dir);
  }
  if (!deleted.empty()) fsio::fsync_dir(root);
  return deleted;
}

json rng_state_to_json(const Generator::State& s) {
  return json{{"seed", s.seed}, {"stream", s.stream}, {"counter", s.counter}};
}

Generator::State rng_state_from_json(const json& j) {
  auto get = [&](const char* key) {
    MODU_CHECK(j.is_object() && j.contains(key) && j.at(key).is_number_unsigned(), "rng_state_from_json: field \"",
               key, "\" missing or not an unsigned integer in ", j.dump().substr(0, 200));
    return j.at(key).get<uint64_t>();
  };
  return Generator::State{get("seed"), get("stream"), get("counter")};
}

}  // namespace modu::checkpoint
