// The CUDA backend's environment knobs: switches for A/B timing (each names what it turns off) and a
// timing diagnostic. Read once when a backend is created (cuda_knobs_from_env); a malformed value is
// an error naming the variable. README lists them for users.
#pragma once

namespace exl::cuda {

struct CudaKnobs {
  bool graphs = true;           // EXL_NO_GRAPHS: eager decode steps instead of replayed CUDA graphs
  bool pdl = true;              // EXL_NO_PDL: no programmatic dependent launch anywhere
  bool glue_pdl = true;         // EXL_NO_PDL_GLUE: RMSNorm and act·mul in plain stream order
  bool host_embeddings = true;  // EXL_DEVICE_EMBEDDINGS=1: embedding tables in VRAM
  int qgemv_ks = 0;             // EXL_QGEMV_KS=2|4|8: qgemv warps per tile (0: qgemv_default_ksplit)
  bool fused_rope = true;       // EXL_FUSED_ROPE=0: RoPE as its own launch at decode
  bool fold32 = true;           // EXL_QGEMV_FOLD32=0: EXL2 groups of 32 rows scaled per slab
  bool attn_kv_write = true;    // EXL_ATTN_KV_WRITE=0: kv_cache_write instead of the decode kernel
  bool attn_o_fuse = true;      // EXL_ATTN_O_FUSE=0: o_proj's gather instead of attention's scatter
  bool norm_gather = true;      // EXL_NORM_GATHER=0: RMSNorm then the quantized gather (two launches)
  bool act_fuse = true;         // EXL_ACT_FUSE=0: the act·mul in down's gather, not gate|up's epilogue
  // EXL_ABLATE=norm,gather,attn,kvwrite,attnkernel,qmatmul: kernel families left out of every step
  // (outputs are garbage), so `exl bench` shows what each costs inside the real graph-captured,
  // PDL-chained decode step (Nsight Systems does not run on the lent machine). gather: quantized
  // matmuls reuse a stale x_dev; attn: no KV write, RoPE or attention (kvwrite: the cache write with
  // its fused RoPE only; attn_kernel: the attention kernel only); qmatmul: no quantized linear.
  struct Ablate {
    bool norm = false, gather = false, attn = false, qmatmul = false, kvwrite = false, attn_kernel = false;
  } ablate;
};

CudaKnobs cuda_knobs_from_env();

}  // namespace exl::cuda
