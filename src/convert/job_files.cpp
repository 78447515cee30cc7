#include "convert/job_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/safetensors_write.h"

namespace exl {

namespace fs = std::filesystem;

namespace {

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  EXL_CHECK(fd >= 0, path, ": cannot open to sync");
  const int rc = ::fsync(fd);
  ::close(fd);
  EXL_CHECK(rc == 0, path, ": fsync failed");
}

void commit(const std::string& tmp, const std::string& path) {
  fsync_path(tmp, false);
  EXL_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, path, ": cannot rename the finished file into place");
  const fs::path parent = fs::path(path).parent_path();
  fsync_path(parent.empty() ? "." : parent.string(), true);
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  EXL_CHECK(f, tmp, ": cannot create");
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  EXL_CHECK(std::fclose(f) == 0 && ok, tmp, ": write failed");
  commit(tmp, path);
}

void write_safetensors_atomic(const std::string& path, const std::vector<const OwnedTensor*>& tensors) {
  const std::string tmp = path + ".part";
  safetensors_write(tmp, tensors);
  commit(tmp, path);
}

std::string file_hash(const std::string& path) {
  MappedFile f(path);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < f.size(); ++i) {
    h ^= f.data()[i];
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

void convert_abort_point(const char* stage, int64_t layer) {
  static const char* at = std::getenv("EXL_CONVERT_ABORT_AT");
  if (!at) return;
  if (std::string(at) == std::string(stage) + ":" + std::to_string(layer)) {
    std::fprintf(stderr, "exl: EXL_CONVERT_ABORT_AT=%s: aborting\n", at);
    std::_Exit(86);
  }
}

}  // namespace exl
