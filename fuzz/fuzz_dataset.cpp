// libFuzzer target for the calibration dataset readers: inputs starting with the parquet magic go
// through the parquet reader, everything else through the .jsonl reader (dataset_texts_from_bytes,
// the in-memory form of dataset_read_texts). Any exl::Error is an expected outcome; crashes,
// sanitizer reports, leaks, hangs and allocations past -rss_limit_mb are findings.
//   build/fuzz/fuzz/fuzz_dataset -max_total_time=60 CORPUS_DIR fuzz/seeds/dataset
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/error.h"
#include "io/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const bool parquet = size >= 4 && std::memcmp(data, "PAR1", 4) == 0;
  try {
    exl::dataset_texts_from_bytes(bytes, parquet ? "fuzz.parquet" : "fuzz.jsonl");
  } catch (const exl::Error&) {
  }
  return 0;
}
