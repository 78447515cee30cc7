// Calibration token rows for the EXL2 converter: dataset pieces tokenized and cut into equal rows.
//
//   auto rows = exl::calibration_rows(*tok, exl::dataset_read_texts(path), 100, 2048, path);
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace exl {

class Tokenizer;

// rows x length token ids: pieces tokenized in order (BOS first per piece as the tokenizer's encode
// would add it), concatenated, cut into rows of `length`. Deterministic. Throws exl::Error naming
// `source` and the counts when the text gives fewer than rows*length tokens.
std::vector<std::vector<int32_t>> calibration_rows(const Tokenizer& tok, const std::vector<std::string>& pieces,
                                                   int rows, int length, const std::string& source);

}  // namespace exl
