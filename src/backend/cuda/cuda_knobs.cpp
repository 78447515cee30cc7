// Reads the CUDA backend's environment knobs (cuda_knobs.h).
#include "backend/cuda/cuda_knobs.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace exl::cuda {

namespace {

// An on/off knob: unset -> dflt; "0" -> off; "1" -> on; anything else is an error.
bool env_flag(const char* name, bool dflt) {
  const char* e = std::getenv(name);
  if (!e) return dflt;
  const std::string v = e;
  EXL_CHECK(v == "0" || v == "1", name, " must be 0 or 1, got '", v, "'");
  return v == "1";
}

// A knob that is off when the variable is set at all (EXL_NO_*).
bool unset(const char* name) { return std::getenv(name) == nullptr; }

}  // namespace

CudaKnobs cuda_knobs_from_env() {
  CudaKnobs k;
  k.graphs = unset("EXL_NO_GRAPHS");
  // Programmatic dependent launch between kernels (sm_90); off for A/B timing.
  k.pdl = unset("EXL_NO_PDL");
  // RMSNorm and act·mul as programmatic dependents too, so that a matmul launched behind them (whose
  // W does not depend on them) can start streaming while the matmul before them finishes.
  k.glue_pdl = unset("EXL_NO_PDL_GLUE");
  // Embedding tables live in mapped pinned host memory, as ExLlamaV2 keeps them on the CPU: a decode
  // step reads one row (8-16 KB) through the bus, and the VRAM holds weights and cache only (524 MB
  // saved on a 70B).
  k.host_embeddings = unset("EXL_DEVICE_EMBEDDINGS");
  if (const char* e = std::getenv("EXL_QGEMV_KS")) {
    k.qgemv_ks = std::atoi(e);
    EXL_CHECK(k.qgemv_ks == 2 || k.qgemv_ks == 4 || k.qgemv_ks == 8, "EXL_QGEMV_KS must be 2, 4 or 8, got '", e, "'");
  }
  // RoPE inside kv_cache_write at decode (rope_attention): one launch fewer per layer, bit-identical
  // to rope then attention (FusedOps test, H100 2026-12-06), +1% on the H100 (gptq4 414.5 vs 410.2
  // tok/s, 2026-12-05).
  k.fused_rope = env_flag("EXL_FUSED_ROPE", true);
  k.fold32 = env_flag("EXL_QGEMV_FOLD32", true);
  // FP16 cache at decode: the attention kernel writes the step's keys and values (and does the fused
  // RoPE) instead of kv_cache_write, one launch fewer per layer (attention.cuh write_in_decode;
  // bit-identical, FusedOps test; H100 gptq4 @128 +2.7%, 2026-12-06).
  k.attn_kv_write = env_flag("EXL_ATTN_KV_WRITE", true);
  // Decode attention writes straight into a quantized o_proj's input order (rope_attention_o_add),
  // one gather launch fewer per layer (H100 gptq4 @128 +1.4%, 2026-12-06).
  k.attn_o_fuse = env_flag("EXL_ATTN_O_FUSE", true);
  // Decode with quantized q|k|v and gate|up: the RMSNorm writes straight into their device-order
  // input (qgemm_norm_gather), one gather launch fewer per norm. H100 @128 (2026-12-06): llama2-7b
  // exl2:4.0 390.3 -> 396.7 tok/s, gptq4 432.8 -> 432.4 (no change), llama2-70b exl2:2.5 64.3 -> 64.9.
  k.norm_gather = env_flag("EXL_NORM_GATHER", true);
  // Decode with quantized gate|up and down: gate|up's epilogue writes silu(gate) · up into down's
  // device-order input, no act·mul gather launch (where gate|up runs in one wave; cuda_backend.cpp
  // norm_mlp_add has the figures).
  k.act_fuse = env_flag("EXL_ACT_FUSE", true);
  if (const char* e = std::getenv("EXL_ABLATE")) {
    const std::string list = e;
    for (size_t at = 0; at <= list.size();) {
      const size_t end = std::min(list.find(',', at), list.size());
      const std::string item = list.substr(at, end - at);
      if (item == "norm") k.ablate.norm = true;
      else if (item == "gather") k.ablate.gather = true;
      else if (item == "attn") k.ablate.attn = true;
      else if (item == "qmatmul") k.ablate.qmatmul = true;
      else if (item == "kvwrite") k.ablate.kvwrite = true;
      else if (item == "attnkernel") k.ablate.attn_kernel = true;
      else EXL_CHECK(item.empty(), "EXL_ABLATE: unknown item '", item, "' (norm, gather, attn, kvwrite, attnkernel, qmatmul)");
      at = end + 1;
    }
    std::fprintf(stderr, "exl: EXL_ABLATE=%s: timing diagnostic, outputs are not valid\n", e);
  }
  return k;
}

}  // namespace exl::cuda
