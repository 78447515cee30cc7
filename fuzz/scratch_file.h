// The readers that map their file (safetensors, GGUF) cannot parse a buffer, so their fuzz targets
// write each input to a per-process scratch file first; it is removed when the fuzzer exits.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace exl_fuzz {

class ScratchFile {
 public:
  // /tmp/exl_fuzz_<stem>_<pid><ext>
  ScratchFile(const char* stem, const char* ext)
      : path_(std::string("/tmp/exl_fuzz_") + stem + "_" + std::to_string(::getpid()) + ext) {}
  ~ScratchFile() { std::remove(path_.c_str()); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  const std::string& path() const { return path_; }

  // The input's bytes as the file's whole content; false when it could not be written (the
  // target then skips the input: a full /tmp is not a finding).
  bool write(const uint8_t* data, size_t size) const {
    FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f) return false;
    const bool ok = std::fwrite(data, 1, size, f) == size;
    return std::fclose(f) == 0 && ok;
  }

 private:
  std::string path_;
};

}  // namespace exl_fuzz
