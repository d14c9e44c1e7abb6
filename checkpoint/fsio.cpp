// checkpoint/fsio.cpp — POSIX implementations of the durable-write primitives (see fsio.h).
//
// Invariants: file descriptors are always closed, also on the error paths; EINTR is retried.
#include "checkpoint/fsio.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/check.h"

namespace modu::checkpoint::fsio {
namespace {

[[noreturn]] void fail_errno(const fs::path& path, const char* what, int err, const char* hint = nullptr) {
  if (hint) MODU_FAIL(path.string(), ": ", what, " failed: ", std::strerror(err), "; ", hint);
  MODU_FAIL(path.string(), ": ", what, " failed: ", std::strerror(err));
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void fsync_fd(int fd, const fs::path& path) {
  if (::fsync(fd) != 0) {
    // Some file systems refuse fsync on directories (EINVAL); that is not a durability failure we can fix.
    if (errno == EINVAL || errno == EROFS) return;
    fail_errno(path, "fsync", errno, "the data may not be on disk; check the device and free space");
  }
}

}  // namespace

void fsync_file(const fs::path& path) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) fail_errno(path, "open for fsync", errno);
  fsync_fd(f.fd, path);
}

void fsync_dir(const fs::path& dir) {
  Fd f;
  f.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (f.fd < 0) fail_errno(dir, "open directory for fsync", errno);
  fsync_fd(f.fd, dir);
}

void make_dir(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0755) == 0) return;
  int err = errno;
  struct stat st;
  if (err == EEXIST && ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return;
  if (err == EEXIST)
    MODU_FAIL(dir.string(), ": exists and is not a directory; move it away so the checkpoint folder can be created");
  fail_errno(dir, "mkdir", err, "check that the parent folder exists and is writable");
}

void make_dirs(const fs::path& dir) {
  if (dir.empty()) return;
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return;
  fs::path parent = dir.parent_path();
  if (!parent.empty() && parent != dir) make_dirs(parent);
  make_dir(dir);
}

void write_file_synced(const fs::path& path, std::string_view bytes) {
  Fd f;
  f.fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f.fd < 0) fail_errno(path, "open for writing", errno, "check that the folder is writable");
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(f.fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(path, "write", errno, "check free space and quotas");
    done += size_t(n);
  }
  fsync_fd(f.fd, path);
  int fd = f.fd;
  f.fd = -1;
  if (::close(fd) != 0) fail_errno(path, "close", errno, "check free space and quotas");
}

void write_file_atomic(const fs::path& path, std::string_view bytes, const std::string& tmp_suffix) {
  fs::path tmp = path;
  tmp += tmp_suffix;
  write_file_synced(tmp, bytes);
  rename_replace(tmp, path);
  fsync_dir(path.parent_path().empty() ? fs::path(".") : path.parent_path());
}

std::string read_file(const fs::path& path) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) fail_errno(path, "open for reading", errno);
  std::string out;
  char block[65536];
  for (;;) {
    ssize_t n = ::read(f.fd, block, sizeof(block));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(path, "read", errno);
    if (n == 0) break;
    out.append(block, size_t(n));
  }
  return out;
}

void rename_noreplace(const fs::path& from, const fs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return;
  int err = errno;
  if (err == EEXIST || err == ENOTEMPTY)
    MODU_FAIL(to.string(), ": already exists; a committed checkpoint is never replaced (move it away or save under another step)");
  if (err != EINVAL && err != ENOSYS) fail_errno(from, "rename to the final name", err);
  // The file system has no RENAME_NOREPLACE (some network file systems): check, then rename. rename()
  // itself refuses a non-empty target directory, so a committed checkpoint still cannot be replaced.
  struct stat st;
  if (::lstat(to.c_str(), &st) == 0)
    MODU_FAIL(to.string(), ": already exists; a committed checkpoint is never replaced (move it away or save under another step)");
  if (::rename(from.c_str(), to.c_str()) != 0) fail_errno(from, "rename to the final name", errno);
}

void rename_replace(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) fail_errno(from, "rename", errno);
}

void remove_file_if_exists(const fs::path& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) fail_errno(path, "unlink", errno);
}

int64_t file_size_or_missing(const fs::path& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return -1;
    fail_errno(path, "stat", errno);
  }
  MODU_CHECK(S_ISREG(st.st_mode), path.string(), ": is not a regular file");
  return int64_t(st.st_size);
}

}  // namespace modu::checkpoint::fsio
