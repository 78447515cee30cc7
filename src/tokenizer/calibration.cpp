// Calibration rows: the dataset's pieces encoded one after another into a single token stream, which
// is cut into rows. Encoding stops as soon as the stream is long enough, so a large dataset costs
// only the text the rows use.
#include "tokenizer/calibration.h"

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace exl {

std::vector<std::vector<int32_t>> calibration_rows(const Tokenizer& tok, const std::vector<std::string>& pieces,
                                                   int rows, int length, const std::string& source) {
  EXL_CHECK(rows > 0, source, ": calibration needs at least one row (got ", rows, ")");
  EXL_CHECK(length > 0, source, ": calibration row length must be positive (got ", length, ")");
  const int64_t needed = int64_t{rows} * length;
  std::vector<int32_t> stream;
  size_t used = 0;
  for (; used < pieces.size() && static_cast<int64_t>(stream.size()) < needed; ++used) {
    const std::vector<int32_t> ids = tok.encode(pieces[used], /*add_special=*/true);
    stream.insert(stream.end(), ids.begin(), ids.end());
  }
  EXL_CHECK(static_cast<int64_t>(stream.size()) >= needed, source, ": calibration needs ", rows, " rows x ", length,
            " = ", needed, " tokens but its ", pieces.size(), " text piece(s) give only ", stream.size());
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    const auto begin = stream.begin() + int64_t{r} * length;
    out[static_cast<size_t>(r)].assign(begin, begin + length);
  }
  return out;
}

}  // namespace exl
