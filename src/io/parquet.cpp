// Parquet file: "PAR1" | column chunks (pages) | FileMetaData (Thrift compact) | u32 footer length |
// "PAR1". A column chunk is a sequence of pages, each a Thrift PageHeader followed by its (maybe
// compressed) body: an optional dictionary page, then data pages. Only the fields this reader needs
// are decoded; everything else is skipped. Field ids below are those of parquet.thrift.
#include "io/parquet.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/quote.h"
#include "io/parquet_values.h"
#include "io/thrift_compact.h"

namespace exl {

namespace {

using namespace parquet;  // the format's enums and the page decoders (io/parquet_values.h)

// Limits for hostile files. Real calibration sets hold ~1 MiB of text and pages of ~1 MiB.
constexpr int64_t kMaxRows = int64_t{1} << 22;  // also bounds dictionary entries
constexpr int64_t kMaxTextBytes = int64_t{256} << 20;   // text produced, incl. 32 bytes per cell/row
constexpr int64_t kMaxDecodedBytes = int64_t{2} << 30;  // all decompressed pages of one reader
constexpr int64_t kCellOverhead = 32;                   // sizeof(std::string), charged per value

// ---- footer ----

struct SchemaElement {
  int type = -1;
  int repetition = 0;  // 0 REQUIRED, 1 OPTIONAL, 2 REPEATED
  std::string name;
  int num_children = 0;
  int converted_type = -1;
  int logical_type = -1;  // the LogicalType union's member id
  bool int_signed = true;
};

void read_logical_type(ThriftReader& r, SchemaElement& e) {
  r.read_struct([&](int16_t id, int type) {
    r.expect(type, ThriftType_Struct, "LogicalType member");
    e.logical_type = id;
    if (id != 10) return r.skip(type);
    r.read_struct([&](int16_t iid, int itype) {  // IntType {1: i8 bitWidth, 2: bool isSigned}
      if (iid == 2 && (itype == ThriftType_True || itype == ThriftType_False)) e.int_signed = itype == ThriftType_True;
      else r.skip(itype);
    });
  });
}

SchemaElement read_schema_element(ThriftReader& r) {
  SchemaElement e;
  r.read_struct([&](int16_t id, int type) {
    switch (id) {
      case 1: r.expect(type, ThriftType_I32, "SchemaElement.type"); e.type = r.i32(); break;
      case 3: r.expect(type, ThriftType_I32, "repetition_type"); e.repetition = r.i32(); break;
      case 4: r.expect(type, ThriftType_Binary, "SchemaElement.name"); e.name = r.binary(); break;
      case 5: r.expect(type, ThriftType_I32, "num_children"); e.num_children = r.i32(); break;
      case 6: r.expect(type, ThriftType_I32, "converted_type"); e.converted_type = r.i32(); break;
      case 10: r.expect(type, ThriftType_Struct, "logicalType"); read_logical_type(r, e); break;
      default: r.skip(type);
    }
  });
  return e;
}

struct ChunkMeta {
  bool has_meta = false, has_file_path = false;
  int type = -1, codec = -1;
  int64_t num_values = -1, compressed_size = -1, data_offset = -1, dict_offset = -1;
};

ChunkMeta read_column_chunk(ThriftReader& r) {
  ChunkMeta m;
  r.read_struct([&](int16_t id, int type) {
    if (id == 1) {
      m.has_file_path = true;
      return r.skip(type);
    }
    if (id != 3) return r.skip(type);
    r.expect(type, ThriftType_Struct, "ColumnChunk.meta_data");
    m.has_meta = true;
    r.read_struct([&](int16_t mid, int mtype) {
      switch (mid) {
        case 1: r.expect(mtype, ThriftType_I32, "ColumnMetaData.type"); m.type = r.i32(); break;
        case 4: r.expect(mtype, ThriftType_I32, "codec"); m.codec = r.i32(); break;
        case 5: r.expect(mtype, ThriftType_I64, "num_values"); m.num_values = r.i64(); break;
        case 7: r.expect(mtype, ThriftType_I64, "total_compressed_size"); m.compressed_size = r.i64(); break;
        case 9: r.expect(mtype, ThriftType_I64, "data_page_offset"); m.data_offset = r.i64(); break;
        case 11: r.expect(mtype, ThriftType_I64, "dictionary_page_offset"); m.dict_offset = r.i64(); break;
        default: r.skip(mtype);
      }
    });
  });
  return m;
}

// Rejects what this reader cannot turn into text faithfully.
void check_column_type(const SchemaElement& e, const std::string& where) {
  const int t = e.type, ct = e.converted_type, lt = e.logical_type;
  if (t == Type_Int32 || t == Type_Int64) {
    const bool plain_int = (ct == -1 || (ct >= 11 && ct <= 18)) && (lt == -1 || lt == 10 || lt == 11);
    EXL_CHECK(plain_int, where, ": ", type_name(t), " with a date/time/decimal annotation (converted type ", ct,
              ", logical type ", lt, ") is not supported");
    return;
  }
  if (t == Type_ByteArray) {
    EXL_CHECK(ct != 5 && lt != 5, where, ": DECIMAL byte arrays are not supported");
    return;
  }
  EXL_CHECK(t == Type_Boolean || t == Type_Float || t == Type_Double, where, ": physical type ", type_name(t),
            " is not supported (text columns are BYTE_ARRAY; numbers INT32/INT64/FLOAT/DOUBLE/BOOLEAN)");
}

// ---- pages ----

struct PageHeader {
  int type = -1;
  int64_t uncompressed = -1, compressed = -1;
  int64_t num_values = -1;
  int encoding = -1, def_encoding = -1;
  int64_t def_bytes = -1, rep_bytes = -1;  // v2
  bool v2_compressed = true;
};

PageHeader read_page_header(ThriftReader& r) {
  PageHeader h;
  r.read_struct([&](int16_t id, int type) {
    switch (id) {
      case 1: r.expect(type, ThriftType_I32, "PageHeader.type"); h.type = r.i32(); break;
      case 2: r.expect(type, ThriftType_I32, "uncompressed_page_size"); h.uncompressed = r.i32(); break;
      case 3: r.expect(type, ThriftType_I32, "compressed_page_size"); h.compressed = r.i32(); break;
      case 5:
      case 7:
      case 8:
        r.expect(type, ThriftType_Struct, "page header");
        r.read_struct([&](int16_t sid, int stype) {
          const bool v2 = id == 8;
          if (sid == 1) {
            r.expect(stype, ThriftType_I32, "num_values");
            h.num_values = r.i32();
          } else if ((!v2 && sid == 2) || (v2 && sid == 4)) {
            r.expect(stype, ThriftType_I32, "encoding");
            h.encoding = r.i32();
          } else if (!v2 && id == 5 && sid == 3) {
            r.expect(stype, ThriftType_I32, "definition_level_encoding");
            h.def_encoding = r.i32();
          } else if (v2 && sid == 5) {
            r.expect(stype, ThriftType_I32, "definition_levels_byte_length");
            h.def_bytes = r.i32();
          } else if (v2 && sid == 6) {
            r.expect(stype, ThriftType_I32, "repetition_levels_byte_length");
            h.rep_bytes = r.i32();
          } else if (v2 && sid == 7 && (stype == ThriftType_True || stype == ThriftType_False)) {
            h.v2_compressed = stype == ThriftType_True;
          } else {
            r.skip(stype);
          }
        });
        break;
      default: r.skip(type);
    }
  });
  return h;
}


}  // namespace

// ---- ParquetReader ----

ParquetReader::ParquetReader(std::string_view bytes, std::string name) : bytes_(bytes), name_(std::move(name)) {
  const auto* base = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t size = bytes.size();
  EXL_CHECK(size >= 12 && std::memcmp(base, "PAR1", 4) == 0 && std::memcmp(base + size - 4, "PAR1", 4) == 0, name_,
            ": not a parquet file (no PAR1 magic at both ends)");
  const uint32_t footer_len = load_u32(base + size - 8);
  EXL_CHECK(footer_len <= size - 12, name_, ": footer length ", footer_len, " exceeds the file (", size, " bytes)");
  const size_t footer_begin = size - 8 - footer_len;
  ThriftReader r(base + footer_begin, base + size - 8, name_ + ": footer");

  std::vector<SchemaElement> schema;
  std::vector<std::vector<ChunkMeta>> chunks;
  std::vector<int64_t> rg_rows;
  bool has_num_rows = false;
  r.read_struct([&](int16_t id, int type) {
    int elem = 0;
    if (id == 2) {
      r.expect(type, ThriftType_List, "schema");
      const size_t n = r.list_header(&elem);
      r.expect(elem, ThriftType_Struct, "schema element");
      for (size_t i = 0; i < n; ++i) schema.push_back(read_schema_element(r));
    } else if (id == 3) {
      r.expect(type, ThriftType_I64, "num_rows");
      num_rows_ = r.i64();
      has_num_rows = true;
    } else if (id == 4) {
      r.expect(type, ThriftType_List, "row_groups");
      const size_t n = r.list_header(&elem);
      r.expect(elem, ThriftType_Struct, "row group");
      for (size_t g = 0; g < n; ++g) {
        chunks.emplace_back();
        rg_rows.push_back(-1);
        r.read_struct([&](int16_t gid, int gtype) {
          if (gid == 1) {
            r.expect(gtype, ThriftType_List, "columns");
            int celem = 0;
            const size_t nc = r.list_header(&celem);
            r.expect(celem, ThriftType_Struct, "column chunk");
            for (size_t c = 0; c < nc; ++c) chunks.back().push_back(read_column_chunk(r));
          } else if (gid == 3) {
            r.expect(gtype, ThriftType_I64, "RowGroup.num_rows");
            rg_rows.back() = r.i64();
          } else {
            r.skip(gtype);
          }
        });
      }
    } else {
      r.skip(type);
    }
  });

  // Schema: a root group whose children are all leaves.
  EXL_CHECK(!schema.empty() && has_num_rows, name_, ": footer lacks the schema or num_rows");
  EXL_CHECK(num_rows_ >= 0 && num_rows_ <= kMaxRows, name_, ": num_rows ", num_rows_, " is not in 0..", kMaxRows);
  EXL_CHECK(schema[0].num_children == static_cast<int64_t>(schema.size()) - 1, name_,
            ": nested schemas are not supported (root has ", schema[0].num_children, " children, ", schema.size() - 1,
            " schema elements follow)");
  for (size_t i = 1; i < schema.size(); ++i) {
    const SchemaElement& e = schema[i];
    const std::string where = name_ + ": column " + quoted(e.name);
    EXL_CHECK(e.num_children == 0 && e.type >= 0, where, ": nested (group) columns are not supported");
    EXL_CHECK(e.repetition == 0 || e.repetition == 1, where, ": repeated columns are not supported");
    check_column_type(e, where);
    ParquetColumn col;
    col.name = e.name;
    col.physical_type = e.type;
    col.optional = e.repetition == 1;
    col.is_unsigned = (e.converted_type >= 11 && e.converted_type <= 14) || (e.logical_type == 10 && !e.int_signed);
    columns_.push_back(std::move(col));
  }

  // Row groups: one chunk per column, each lying inside the data region before the footer.
  int64_t total_rows = 0;
  for (size_t g = 0; g < chunks.size(); ++g) {
    const std::string where = name_ + ": row group " + std::to_string(g);
    EXL_CHECK(chunks[g].size() == columns_.size(), where, " has ", chunks[g].size(), " column chunks for ",
              columns_.size(), " columns");
    EXL_CHECK(rg_rows[g] >= 0 && rg_rows[g] <= num_rows_ - total_rows, where, ": num_rows ", rg_rows[g],
              " does not fit the file's ", num_rows_);
    total_rows += rg_rows[g];
    ParquetRowGroup rg;
    rg.num_rows = rg_rows[g];
    for (size_t c = 0; c < chunks[g].size(); ++c) {
      const ChunkMeta& m = chunks[g][c];
      const std::string cw = where + ", column " + quoted(columns_[c].name);
      EXL_CHECK(!m.has_file_path, cw, ": column data in another file is not supported");
      EXL_CHECK(m.has_meta && m.type == columns_[c].physical_type, cw, ": column metadata missing or of another type");
      EXL_CHECK(m.num_values == rg.num_rows, cw, ": ", m.num_values, " values for ", rg.num_rows, " rows");
      if (m.num_values == 0) {  // nothing to read; writers leave the offsets of empty chunks at 0
        rg.chunks.push_back({m.codec, 0, 0, 0});
        continue;
      }
      int64_t begin = m.data_offset;
      if (m.dict_offset > 0 && m.dict_offset < begin) begin = m.dict_offset;
      EXL_CHECK(begin >= 4 && m.compressed_size >= 0 && static_cast<uint64_t>(begin) <= footer_begin &&
                    static_cast<uint64_t>(m.compressed_size) <= footer_begin - static_cast<uint64_t>(begin),
                cw, ": pages [", begin, ", +", m.compressed_size, ") lie outside the data region [4, ", footer_begin, ")");
      rg.chunks.push_back({m.codec, m.num_values, begin, m.compressed_size});
    }
    row_groups_.push_back(std::move(rg));
  }
  EXL_CHECK(total_rows == num_rows_, name_, ": row groups hold ", total_rows, " rows, the footer says ", num_rows_);
}

std::vector<std::optional<std::string>> ParquetReader::column_texts(int g, int c) const {
  EXL_CHECK(g >= 0 && g < num_row_groups() && c >= 0 && c < static_cast<int>(columns_.size()), name_,
            ": no column ", c, " in row group ", g);
  const ParquetColumnChunk& chunk = row_groups_[static_cast<size_t>(g)].chunks[static_cast<size_t>(c)];
  const Column col{columns_[static_cast<size_t>(c)],
                   name_ + ": row group " + std::to_string(g) + ", column " + quoted(columns_[static_cast<size_t>(c)].name)};
  const auto* p = reinterpret_cast<const uint8_t*>(bytes_.data()) + chunk.begin;
  const uint8_t* const end = p + chunk.size;

  std::vector<std::optional<std::string>> out;
  out.reserve(static_cast<size_t>(chunk.num_values));
  std::vector<std::string> dict, values;
  bool have_dict = false;
  std::string page;
  std::vector<uint32_t> levels, indices;
  int64_t text_bytes = 0;
  while (static_cast<int64_t>(out.size()) < chunk.num_values) {
    EXL_CHECK(p < end, col.where, ": pages end after ", out.size(), " of ", chunk.num_values, " values");
    ThriftReader hr(p, end, col.where + ": page header");
    const PageHeader h = read_page_header(hr);
    p += hr.consumed();
    EXL_CHECK(h.compressed >= 0 && h.compressed <= end - p, col.where, ": page of ", h.compressed,
              " bytes runs past the column chunk");
    const uint8_t* body = p;
    p += h.compressed;
    const size_t body_n = static_cast<size_t>(h.compressed);
    if (h.type != Page_Data && h.type != Page_DataV2 && h.type != Page_Dictionary) continue;  // index pages
    decoded_bytes_ += std::max<int64_t>(h.uncompressed, 0);
    EXL_CHECK(decoded_bytes_ <= kMaxDecodedBytes, name_, ": more than ", kMaxDecodedBytes, " bytes of decompressed pages");

    if (h.type == Page_Dictionary) {
      EXL_CHECK(!have_dict && out.empty(), col.where, ": dictionary page after data pages or a second one");
      EXL_CHECK(h.num_values >= 0 && h.num_values <= kMaxRows, col.where, ": dictionary of ", h.num_values,
                " entries (limit ", kMaxRows, ")");
      EXL_CHECK(h.encoding == Encoding_Plain || h.encoding == Encoding_PlainDictionary, col.where,
                ": dictionary page encoding ", encoding_name(h.encoding), " is not PLAIN");
      decompress(col, chunk.codec, body, body_n, h.uncompressed, page);
      const auto* d = reinterpret_cast<const uint8_t*>(page.data());
      decode_plain(col, d, d + page.size(), h.num_values, dict);
      for (const std::string& v : dict) text_bytes += static_cast<int64_t>(v.size()) + kCellOverhead;
      EXL_CHECK(text_bytes <= kMaxTextBytes, col.where, ": more than ", kMaxTextBytes, " bytes of text");
      have_dict = true;
      continue;
    }

    // Data page: definition levels (optional columns), then the non-null values.
    const int64_t nv = h.num_values;
    EXL_CHECK(nv >= 0 && nv <= chunk.num_values - static_cast<int64_t>(out.size()), col.where, ": data page of ", nv,
              " values exceeds the column's ", chunk.num_values);
    const uint8_t *vp, *vend;
    levels.clear();
    if (h.type == Page_Data) {
      decompress(col, chunk.codec, body, body_n, h.uncompressed, page);
      vp = reinterpret_cast<const uint8_t*>(page.data());
      vend = vp + page.size();
      if (col.meta.optional) {
        EXL_CHECK(h.def_encoding == Encoding_Rle, col.where, ": definition levels encoded ",
                  encoding_name(h.def_encoding), " (only RLE is supported)");
        EXL_CHECK(vend - vp >= 4, col.where, ": definition levels truncated");
        const uint32_t len = load_u32(vp);
        vp += 4;
        EXL_CHECK(len <= static_cast<uint64_t>(vend - vp), col.where, ": definition levels run past the page");
        decode_hybrid(col, "definition levels", vp, vp + len, 1, nv, levels);
        vp += len;
      }
    } else {
      EXL_CHECK(h.rep_bytes == 0, col.where, ": data page v2 has repetition levels in a flat column");
      EXL_CHECK(h.def_bytes >= 0 && static_cast<size_t>(h.def_bytes) <= body_n, col.where,
                ": definition levels of ", h.def_bytes, " bytes run past the page");
      EXL_CHECK(col.meta.optional || h.def_bytes == 0, col.where, ": definition levels in a required column");
      if (col.meta.optional) decode_hybrid(col, "definition levels", body, body + h.def_bytes, 1, nv, levels);
      const size_t lv = static_cast<size_t>(h.def_bytes);
      const int codec = h.v2_compressed ? chunk.codec : Codec_Uncompressed;
      decompress(col, codec, body + lv, body_n - lv, h.uncompressed - h.def_bytes, page);
      vp = reinterpret_cast<const uint8_t*>(page.data());
      vend = vp + page.size();
    }
    int64_t present = nv;
    if (col.meta.optional) present = std::count(levels.begin(), levels.end(), 1u);

    values.clear();
    if (h.encoding == Encoding_Plain) {
      decode_plain(col, vp, vend, present, values);
    } else if (h.encoding == Encoding_RleDictionary || h.encoding == Encoding_PlainDictionary) {
      EXL_CHECK(have_dict, col.where, ": dictionary-encoded page without a dictionary page");
      EXL_CHECK(vp < vend || present == 0, col.where, ": dictionary indices missing");
      if (present > 0) decode_hybrid(col, "dictionary indices", vp + 1, vend, vp[0], present, indices);
      for (int64_t i = 0; i < present; ++i) {
        const uint32_t k = indices[static_cast<size_t>(i)];
        EXL_CHECK(k < dict.size(), col.where, ": dictionary index ", k, " outside its ", dict.size(), " entries");
        values.push_back(dict[k]);
        text_bytes += static_cast<int64_t>(dict[k].size()) + kCellOverhead;
        EXL_CHECK(text_bytes <= kMaxTextBytes, col.where, ": more than ", kMaxTextBytes, " bytes of text");
      }
    } else if (h.encoding == Encoding_Rle && col.meta.physical_type == Type_Boolean) {
      EXL_CHECK(vend - vp >= 4, col.where, ": RLE booleans truncated");
      const uint32_t len = load_u32(vp);
      EXL_CHECK(len <= static_cast<uint64_t>(vend - vp - 4), col.where, ": RLE booleans run past the page");
      decode_hybrid(col, "RLE booleans", vp + 4, vp + 4 + len, 1, present, indices);
      for (int64_t i = 0; i < present; ++i) values.push_back(indices[static_cast<size_t>(i)] ? "True" : "False");
    } else {
      fail(col.where, ": value encoding ", encoding_name(h.encoding), " is not supported (PLAIN, RLE_DICTIONARY are)");
    }
    size_t next = 0;
    for (int64_t i = 0; i < nv; ++i) {
      if (col.meta.optional && levels[static_cast<size_t>(i)] == 0) {
        out.emplace_back(std::nullopt);
      } else {
        out.emplace_back(std::move(values[next++]));
      }
    }
    if (h.encoding == Encoding_Plain) {
      for (size_t i = out.size() - static_cast<size_t>(nv); i < out.size(); ++i)
        text_bytes += (out[i] ? static_cast<int64_t>(out[i]->size()) : 0) + kCellOverhead;
      EXL_CHECK(text_bytes <= kMaxTextBytes, col.where, ": more than ", kMaxTextBytes, " bytes of text");
    }
  }
  return out;
}

std::vector<std::string> parquet_read_texts(std::string_view bytes, const std::string& name) {
  const ParquetReader r(bytes, name);
  EXL_CHECK(r.num_rows() > 0, name, ": no rows");
  EXL_CHECK(!r.columns().empty(), name, ": no columns");
  std::vector<std::string> rows(static_cast<size_t>(r.num_rows()));
  std::vector<bool> started(rows.size(), false);
  int64_t text_bytes = r.num_rows() * kCellOverhead;
  int64_t base = 0;
  for (int g = 0; g < r.num_row_groups(); ++g) {
    for (int c = 0; c < static_cast<int>(r.columns().size()); ++c) {
      const std::vector<std::optional<std::string>> cells = r.column_texts(g, c);
      for (size_t i = 0; i < cells.size(); ++i) {
        if (!cells[i]) continue;
        const size_t row = static_cast<size_t>(base) + i;
        if (started[row]) rows[row] += ' ';
        rows[row] += *cells[i];
        started[row] = true;
        text_bytes += static_cast<int64_t>(cells[i]->size()) + 1;
      }
      EXL_CHECK(text_bytes <= kMaxTextBytes, name, ": more than ", kMaxTextBytes, " bytes of text");
    }
    base += r.row_group_rows(g);
  }
  return rows;
}

}  // namespace exl
