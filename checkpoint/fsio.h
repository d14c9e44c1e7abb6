// checkpoint/fsio.h — the POSIX file operations the commit protocol is built from (internal).
//
// Invariants: every function either completes or throws modu::Error naming the path, the failed call
// and errno's text. "Durable" means the data and the directory entry were fsync'ed before returning:
// write_file_atomic() leaves either the old file or the complete new one at `path`, never a mix.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace modu::checkpoint::fsio {

namespace fs = std::filesystem;

void fsync_file(const fs::path& path);
void fsync_dir(const fs::path& dir);

// Creates `dir` (not its parents); succeeds when it already is a directory.
void make_dir(const fs::path& dir);
// Creates `dir` and missing parents.
void make_dirs(const fs::path& dir);

// Writes `bytes` to `path` (truncating) and fsyncs the file.
void write_file_synced(const fs::path& path, std::string_view bytes);
// Writes `bytes` to `path + tmp_suffix`, fsyncs it, renames it over `path`, fsyncs the parent directory.
void write_file_atomic(const fs::path& path, std::string_view bytes, const std::string& tmp_suffix);

std::string read_file(const fs::path& path);

// Renames `from` to `to`, failing (never replacing) when `to` exists.
void rename_noreplace(const fs::path& from, const fs::path& to);
void rename_replace(const fs::path& from, const fs::path& to);

// Unlinks a file; a missing file is not an error.
void remove_file_if_exists(const fs::path& path);

// Size of a regular file, or -1 when it does not exist; throws for other stat errors.
int64_t file_size_or_missing(const fs::path& path);

}  // namespace modu::checkpoint::fsio
