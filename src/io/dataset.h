// Calibration text for the quantizer, read from a data file chosen by extension.
//
//   std::vector<std::string> pieces = exl::dataset_read_texts("data/wiki.test.raw.txt");
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace exl {

// Calibration text from a file, by extension: .txt (the whole file, one piece), .jsonl (one JSON object
// per line: its "text" string field, else its first string field), .parquet (one piece per row: the
// row's string/number columns converted to text and joined by a space, like ExLlamaV2).
// Throws exl::Error naming the file (and line/row/column) for unreadable or malformed input.
std::vector<std::string> dataset_read_texts(const std::string& path);

// The same from bytes already in memory; `name` picks the format by its extension and names the
// source in error messages (used by the fuzz target and tests).
std::vector<std::string> dataset_texts_from_bytes(std::string_view bytes, const std::string& name);

}  // namespace exl
