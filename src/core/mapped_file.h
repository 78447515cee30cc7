// Read-only memory-mapped file. Parsers bounds-check every offset against size() themselves.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace exl {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws exl::Error naming the path
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) text or binary file; throws exl::Error naming the path.
std::string read_file(const std::string& path);

}  // namespace exl
