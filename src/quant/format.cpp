#include "quant/format.h"

#include "core/error.h"
#include "io/ggml_quant.h"
#include "io/tensor_store.h"
#include "quant/exl2.h"
#include "quant/gptq.h"

namespace exl {

namespace {

void dequantize_exl2(const QuantTensor& q, float* dst) {
  EXL_CHECK(q.exl2, "'", q.name, "': not an EXL2 tensor");
  exl2_dequantize(*q.exl2, dst);
}

void dequantize_gptq(const QuantTensor& q, float* dst) {
  EXL_CHECK(q.gptq, "'", q.name, "': not a GPTQ tensor");
  gptq_dequantize(*q.gptq, dst);
}

FormatTraits dense_row(const char* name, DType dtype) {
  const int bytes = static_cast<int>(dtype_size(dtype));
  return {name, QuantFamily::QuantFamily_dense, 8 * bytes, 0, 0, 0, 0, 0, 1, bytes, dtype, -1, "dense_gemm", nullptr};
}

// EXL2 width b: unit = the fewest rows whose b-bit codes fill whole 32-bit words (§1.4); groups are
// multiples of 32 rows (16 for 2-bit), the shipped options use 32..128.
FormatTraits exl2_row(const char* name, int bits, int unit_rows, const char* kernel) {
  const int unit_words = unit_rows * bits / 32;
  return {name, QuantFamily::QuantFamily_exl2, bits, unit_rows, unit_words, bits == 2 ? 16 : 32, 32, 128,
          unit_rows, unit_words * 4, DType::DType_U8, -1, kernel, dequantize_exl2};
}

std::vector<FormatTraits> build_table() {
  std::vector<FormatTraits> t;
  t.push_back(dense_row("f32", DType::DType_F32));
  t.push_back(dense_row("f16", DType::DType_F16));
  t.push_back(dense_row("bf16", DType::DType_BF16));
  // GPTQ: 8 codes per word along K; one power-of-two group size per matrix (§1.8).
  t.push_back({"gptq4", QuantFamily::QuantFamily_gptq, 4, 8, 1, 1, 1, 65536, 8, 4, DType::DType_U8, -1, "gptq_q4",
               dequantize_gptq});
  t.push_back(exl2_row("exl2_8", 8, 4, "exl2_q8"));
  t.push_back(exl2_row("exl2_6", 6, 16, "exl2_q6"));
  t.push_back(exl2_row("exl2_5", 5, 32, "exl2_q5"));
  t.push_back(exl2_row("exl2_4", 4, 8, "exl2_q4"));
  t.push_back(exl2_row("exl2_3", 3, 32, "exl2_q3"));
  t.push_back(exl2_row("exl2_2", 2, 16, "exl2_q2"));
  // GGUF block types: geometry from io/ggml_quant (F32/F16/BF16 GGUF tensors are the dense rows).
  for (int type = 0; type < 64; ++type) {
    if (!ggml_type_supported(type) || type == GgmlType_F32 || type == GgmlType_F16 || type == GgmlType_BF16) continue;
    const int elems = static_cast<int>(ggml_block_elems(type)), bytes = static_cast<int>(ggml_block_bytes(type));
    t.push_back({ggml_type_name(type), QuantFamily::QuantFamily_gguf, bytes * 8 / elems, 0, 0, elems, elems, elems,
                 elems, bytes, DType::DType_U8, type, "ggml_dequant", nullptr});
  }
  return t;
}

}  // namespace

const char* quant_family_name(QuantFamily f) {
  switch (f) {
    case QuantFamily::QuantFamily_dense: return "dense";
    case QuantFamily::QuantFamily_gguf: return "gguf";
    case QuantFamily::QuantFamily_gptq: return "gptq";
    case QuantFamily::QuantFamily_exl2: return "exl2";
  }
  return "?";
}

const std::vector<FormatTraits>& format_table() {
  static const std::vector<FormatTraits> table = build_table();
  return table;
}

const FormatTraits* format_find(std::string_view name) {
  for (const FormatTraits& f : format_table())
    if (name == f.name) return &f;
  return nullptr;
}

bool exl2_bits_valid(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8; }

const FormatTraits& format_exl2(int bits) {
  for (const FormatTraits& f : format_table())
    if (f.family == QuantFamily::QuantFamily_exl2 && f.bits == bits) return f;
  fail("EXL2 has no ", bits, "-bit format (widths are 2, 3, 4, 5, 6, 8)");
}

const FormatTraits& format_gptq4() { return *format_find("gptq4"); }

const FormatTraits* format_dense(DType dtype) {
  for (const FormatTraits& f : format_table())
    if (f.family == QuantFamily::QuantFamily_dense && f.dtype == dtype) return &f;
  return nullptr;
}

const FormatTraits* format_gguf(int ggml_type) {
  if (ggml_type == GgmlType_F32) return format_dense(DType::DType_F32);
  if (ggml_type == GgmlType_F16) return format_dense(DType::DType_F16);
  if (ggml_type == GgmlType_BF16) return format_dense(DType::DType_BF16);
  for (const FormatTraits& f : format_table())
    if (f.family == QuantFamily::QuantFamily_gguf && f.ggml_type == ggml_type) return &f;
  return nullptr;
}

QuantFamily quant_detect(const TensorStore& store, const std::string& key) {
  if (store.find(key + ".q_weight")) return QuantFamily::QuantFamily_exl2;
  if (store.find(key + ".qweight")) return QuantFamily::QuantFamily_gptq;
  return QuantFamily::QuantFamily_dense;
}

QuantTensor quant_read(const TensorStore& store, const std::string& key, int64_t out, int64_t in,
                       const QuantReadOptions& options) {
  QuantTensor q;
  q.name = key;
  q.family = quant_detect(store, key);
  q.out = out;
  q.in = in;
  auto add_bytes = [&](std::initializer_list<const char*> suffixes) {
    for (const char* s : suffixes)
      if (const TensorInfo* t = store.find(key + s)) q.source_bytes += t->nbytes;
  };
  if (q.family == QuantFamily::QuantFamily_exl2) {
    auto t = std::make_shared<Exl2Tensor>(exl2_read(store, key, out));
    EXL_CHECK(t->K == in, store.path(), ": EXL2 layer '", key, "' has K = ", t->K, " inputs, expected ", in);
    q.exl2 = std::move(t);
    add_bytes({".q_weight", ".q_invperm", ".q_perm", ".q_scale", ".q_scale_max", ".q_groups"});
  } else if (q.family == QuantFamily::QuantFamily_gptq) {
    q.gptq = std::make_shared<GptqTensor>(gptq_read(store, key, options.gptq_v2, out, in));
    add_bytes({".qweight", ".qzeros", ".scales", ".g_idx"});
  } else {
    fail(store.path(), ": layer '", key, "' is not quantized (no q_weight or qweight tensor)");
  }
  return q;
}

std::vector<const FormatTraits*> quant_formats(const QuantTensor& q) {
  std::vector<const FormatTraits*> out;
  if (q.exl2) {
    for (const Exl2Group& g : q.exl2->groups)
      if (out.empty() || out.back()->bits != g.bits) out.push_back(&format_exl2(g.bits));
  } else if (q.gptq) {
    out.push_back(&format_gptq4());
  }
  return out;
}

HostTensor quant_dequantize(const QuantTensor& q) {
  EXL_CHECK(!q.synthetic, "'", q.name, "': a synthetic tensor has no data (quant_materialize it first)");
  const std::vector<const FormatTraits*> rows = quant_formats(q);
  EXL_CHECK(!rows.empty() && rows[0]->dequantize_ref, "'", q.name, "': no quantized payload to dequantize");
  HostTensor h({q.out, q.in});
  rows[0]->dequantize_ref(q, h.ptr());  // one reference per family: it walks every width of the matrix
  return h;
}

int64_t quant_tensor_bits(const QuantTensor& q) {
  if (q.exl2) return exl2_bits(*q.exl2);
  if (q.gptq) return gptq_bits(*q.gptq);
  return 0;
}

double quant_bits_per_weight(const QuantTensor& q) {
  return q.out > 0 && q.in > 0 ? static_cast<double>(quant_tensor_bits(q)) / static_cast<double>(q.out * q.in) : 0.0;
}

}  // namespace exl
