// checkpoint/layout_names.h — the names of files and folders inside a checkpoint root (internal).
//
// Invariants: every name is built here and nowhere else, so the writer, the reader and the retention
// code agree on them; tags are restricted to [A-Za-z0-9._-] so a temp folder name never walks elsewhere.
#pragma once

#include <cstdint>
#include <string>

namespace modu::checkpoint {

inline constexpr const char* kManifestFile = "manifest.json";
inline constexpr const char* kLatestFile = "latest";
inline constexpr const char* kTmpMarker = ".tmp-";

std::string shard_file_name(int rank);  // "shard_r000003.h5"
std::string index_file_name(int rank);  // "shard_r000003.idx.json"
std::string tmp_dir_name(int64_t step, const std::string& tag);  // "step_00000042.tmp-TAG"
// The tag of SaveOptions, defaulted to this process's pid and validated.
std::string resolve_tag(const std::string& tag);

}  // namespace modu::checkpoint
