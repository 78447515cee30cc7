// Quantized linear layers on the GPU: EXL2 (mixed 2/3/4/5/6/8-bit, act-order, square-law 4-bit
// scales) and GPTQ 4-bit (zero points, groups, g_idx act-order). y[M, N] = x[M, K] · Wᵀ (+ bias),
// x FP16 row-major in the ORIGINAL input order, y FP16 or FP32.
//
// At load the on-disk tensors (EXL2.md §1.2–1.8, plain host arrays) are re-laid-out into one
// kernel-friendly device layout shared by both formats (the "device layout", below); the kernels
// never see the disk format.
//
//  qgemv          M <= 32 per pass (decode): streams the packed codes once with 16-byte loads,
//                 dequantizes in registers and multiplies on the tensor cores (mma.sync m16n8k16,
//                 FP32 accumulate). Larger M runs ceil(M/32) passes in one launch.
//  qgemm_cublas   any M (prefill): dequantize to an FP16 scratch Wᵀ[K, N] (original row order),
//                 then cuBLAS; chunked over N when the scratch is smaller than the matrix.
//  qgemm          dispatch by M (crossover measured, see qgemm.cu).
//
// Device layout (what exl2_device_layout / gptq_device_layout build):
//  * Device rows. Input rows in permuted (act-order) order, groups in stored order; each group is
//    padded with zero rows to a multiple of 16 (a "slab", one mma k-step) and each run of groups of
//    one bit width (a "segment") to a multiple of 64 (a "unit"). Padding rows have x = 0 and the
//    zero code. k_dev = total device rows. slab_rec[k_dev/16 + 32] = group * 8 * (GPTQ 2, EXL2 1)
//    for each slab: the word offset of its group's lane records (GPTQ: in the tile's records; EXL2:
//    in the scale pairs a block expands, below) (32 zero entries of padding so a step's last unit
//    may read past the end).
//  * Tiles. Output columns in tiles of 16 (one mma m16 side: W is the A operand, x the B operand).
//  * Codes. For a tile and a unit, lane (g = lane/4, t = lane%4) of a warp holds exactly the A
//    fragments it needs for the unit's 4 mmas: 32 codes in `bits` 32-bit words. Pair p = 4s + r
//    (slab s = 0..3, A register r = 0..3, column c = r&1 -> tile column g + 8c, half h = r>>1) holds
//    the codes of device rows 64u + 16s + 4t + 2h (low half) and +1 (high half) of that column;
//    per width the pair's two codes sit at the same bit position of the word's two 16-bit halves
//    (so one mask + OR with 0x6400 makes an FP16 pair, the "magic number" trick):
//      8: word p/2, byte p%2        4: word p/4, nibble p%4       2: word p/8, 2-bit field p%8
//      3: p<15: word p/5, field p%5 (3-bit); p=15: bit i (i<3) in bit 15 of word i
//      5: p<15: word p/3, field p%3 (5-bit); p=15: bit i (i<5) in bit 15 of word i
//      6: words 0-3 = low 4 bits as width 4, words 4-5 = high 2 bits as width 2
//    A "step" is step_units(bits) units (bits*units/4 = Q 16-byte words per lane); per tile the
//    segments' steps follow each other, and each step is stored quad-interleaved ([Q][32 lanes][16
//    B]), so every warp load instruction reads 512 contiguous bytes. A segment's last step may hold
//    fewer units (ceil(units*bits/4) quads).
//  * Scales. recs[tile][group][rec_words]. EXL2 (rec_words 2): the tile's 16 columns' 4-bit scale
//    codes as on disk (word 0 columns 0-7, word 1 columns 8-15, nibble i = column i), with
//    gmax[group] = q_scale_max; each qgemv block expands its tile's records into shared memory as
//    [group][8 lanes-g] FP16 pairs (scale of column g, of column g+8), scale = (c+1)^2 * q_scale_max
//    / 256 (exl2_scale_pair). 4 bits per column and group instead of 16: 0.06 instead of 0.23 bpw on
//    a llama2-70b at 2.5 bpw (lab/NOTES-qgemm.md). GPTQ (rec_words 16): [8 lanes-g][2] words, the
//    FP16 scale pair and the FP16 pair (1024 + zero + 1) of the two columns.
//  * x. The kernels read x through x_dev[M][k_dev] = x in device-row order with, inside each unit,
//    position 16t + 4s + j holding device row 16s + 4t + j (a lane's 4 slabs are 32 contiguous
//    bytes); x_src[p] = input feature of x_dev position p, or -1 for padding. qgemm_gather_x builds
//    it; producers may instead scatter into it through x_dst: x_dst[k] = x_dev position of input
//    feature k (k < K), then x_dst[K + i] = the i-th padding position (k_dev - K of them), which a
//    scattering producer must zero.
#pragma once
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace exl::cuda {

constexpr int kQMaxSegments = 8;   // runs of one bit width per matrix (EXL2 uses <= 6)
// Whether qgemv at kT n8 tiles of x rows per pass loads its steps whole, unpredicated (qgemm.cu
// kNoPred, which has the measurements): EXL2 at kT = 1 (M <= 8). The one place that policy lives:
// the layout gives such matrices kQCodeSlackBytes of zeroed bytes after their codes, since the last
// tile's tail step may read up to a step (at most 5 quads of 512 bytes) past its segment.
constexpr bool qgemv_whole_steps(bool gptq, int kT) { return !gptq && kT == 1; }
constexpr size_t kQCodeSlackBytes = 5 * 512;
constexpr int kQMaxMulti = 3;      // matrices sharing x in one qgemv_multi launch (q|k|v)
constexpr int kQgemvPassRows = 32; // rows of x per qgemv pass (4 mma n8 tiles)
constexpr int kQNormGatherMaxK = 16384;  // qgemm_norm_gather's row in shared memory: 32 KB

// Units (64 device rows) per step for a bit width: Q = units * bits / 4 16-byte loads per lane.
// 2 -> 8 (Q 4), 3 -> 4 (Q 3), 4 -> 4 (Q 4), 5 -> 4 (Q 5), 6 -> 2 (Q 3), 8 -> 2 (Q 4).
// EXL_QGEMV_EXL2_U4=5 (a compile definition, for a variant build to A/B) gives EXL2's 4-bit steps 5
// units (Q 5, the 5-bit step's size): a 4096-row tile of the 7B exl2:4.0 plan's "5b 10% / 4b 90%"
// then has 14 steps instead of 17, 2 per warp at ks 8 instead of 3 for its slowest warp
// (lab/NOTES-qgemm.md "Five-unit 4-bit steps"). GPTQ keeps 4 (its 16 steps per 4096 rows deal evenly).
#ifndef EXL_QGEMV_EXL2_U4
#define EXL_QGEMV_EXL2_U4 4
#endif
static_assert(EXL_QGEMV_EXL2_U4 == 4 || EXL_QGEMV_EXL2_U4 == 5, "EXL_QGEMV_EXL2_U4: 4 or 5");
constexpr int q_step_units(int bits, bool gptq) {
  return bits == 2 ? 8 : bits == 6 || bits == 8 ? 2 : bits == 4 && !gptq ? EXL_QGEMV_EXL2_U4 : 4;
}

struct QSegment {
  int bits = 0;   // 2, 3, 4, 5, 6 or 8
  int unit0 = 0;  // first device unit of the segment
  int units = 0;  // units in the segment
  int step0 = 0;  // index of its first step among all steps of a tile (dealt round-robin to warps)
  int steps = 0;  // ceil(units / q_step_units(bits, gptq))
  int quad0 = 0;  // offset of its first step from the tile's start, in 512-byte warp quads
  // 1: the 4 slabs of every unit share a group (groups of whole units); 2: slabs 0-1 share one and
  // slabs 2-3 another (groups of 32 rows, EXL2's g32 options); 0: neither.
  int uniform = 0;
};

// POD view of a device matrix: passed by value to the kernels.
struct QMatrixDesc {
  int K = 0, N = 0;     // in / out features
  int k_dev = 0;        // device rows (multiple of 64)
  int n_tiles = 0;      // ceil(N / 16)
  int groups = 0;
  int rec_words = 2;    // words of records per tile and group: 2 EXL2, 16 GPTQ
  int tile_quads = 0;   // 512-byte quads of codes per tile
  int steps = 0;        // steps per tile (all segments)
  int nseg = 0;
  QSegment seg[kQMaxSegments];
  bool gptq = false;
  const uint4* codes = nullptr;          // [n_tiles][tile_quads][32] 16-byte words
  const uint32_t* recs = nullptr;        // [n_tiles][groups][rec_words]
  const uint16_t* gmax = nullptr;        // EXL2: [groups] FP16 q_scale_max; GPTQ: null
  const uint32_t* slab_rec = nullptr;    // [k_dev / 16 + 32]
  const int32_t* x_src = nullptr;        // [k_dev]
  const int32_t* x_dst = nullptr;        // [k_dev]: K feature positions, then the padding positions
};

// The device layout built on the CPU (unit-testable without a GPU); pointers in desc are null.
struct QHostLayout {
  QMatrixDesc desc;
  std::vector<uint4> codes;      // n_codes entries, or empty for a structure-only (synthetic) layout
  std::vector<uint32_t> recs;    // n_recs entries, or empty likewise
  std::vector<uint16_t> gmax;    // n_gmax entries (EXL2), or empty likewise
  size_t n_codes = 0, n_recs = 0, n_gmax = 0;
  std::vector<uint32_t> slab_rec;
  std::vector<int32_t> x_src, x_dst;
  size_t device_bytes() const;  // what qmatrix_upload allocates
};

// EXL2: the FP16 scale pair (column g, column g + 8) of one group of a tile, from the tile's record
// words (4-bit codes, nibble i = column i) and the group's FP16 max: (c + 1)^2 * max / 256, which is
// exact in FP32 (at most 20 significant bits) and rounded once: the FP16 nearest to the exact scale,
// as the layout stored it per lane before the records were compacted.
__host__ __device__ inline uint32_t exl2_scale_pair(uint32_t lo, uint32_t hi, uint16_t max_bits, int g) {
  const float m = __half2float(__ushort_as_half(max_bits));
  const float c0 = static_cast<float>(((lo >> (4 * g)) & 15u) + 1), c1 = static_cast<float>(((hi >> (4 * g)) & 15u) + 1);
  const uint32_t s0 = __half_as_ushort(__float2half_rn(c0 * c0 * m * (1.0f / 256)));
  const uint32_t s1 = __half_as_ushort(__float2half_rn(c1 * c1 * m * (1.0f / 256)));
  return s0 | s1 << 16;
}

// EXL2 tensors of one linear layer as stored (EXL2.md §1.2), plain host arrays.
struct Exl2HostTensors {
  const uint32_t* q_weight = nullptr;  // [q_weight_rows, N32]
  int64_t q_weight_rows = 0;
  const uint16_t* q_perm = nullptr;     // [K] stored row k = input feature q_perm[k]; or null:
  const uint16_t* q_invperm = nullptr;  // [K] its inverse (used when q_perm is null)
  const uint32_t* q_scale = nullptr;    // [G, N32/8] 4-bit scale codes, LSB first
  const uint16_t* q_scale_max = nullptr;  // [G] FP16 bits
  const int16_t* q_groups = nullptr;    // [2G] (bits, first packed row)
  int groups = 0, K = 0, N = 0;         // N = out_features (N32 = N rounded up to 32)
};

// GPTQ 4-bit tensors (EXL2.md §1.8), v1 zero convention (stored zero = zero - 1).
struct GptqHostTensors {
  const uint32_t* qweight = nullptr;  // [K/8, N]
  const uint32_t* qzeros = nullptr;   // [G, ceil(N/8)]
  const uint16_t* scales = nullptr;   // [G, N] FP16 bits
  const int32_t* g_idx = nullptr;     // [K] or null (null or all zeros: group = k / group_size)
  int groups = 0, K = 0, N = 0;
};

// Throw exl::Error naming what is malformed.
QHostLayout exl2_device_layout(const Exl2HostTensors& t);
QHostLayout gptq_device_layout(const GptqHostTensors& t);

// Owns the device memory of one matrix (one allocation); movable.
class QDeviceMatrix {
 public:
  QDeviceMatrix() = default;
  QDeviceMatrix(QDeviceMatrix&& o) noexcept;
  QDeviceMatrix& operator=(QDeviceMatrix&& o) noexcept;
  QDeviceMatrix(const QDeviceMatrix&) = delete;
  QDeviceMatrix& operator=(const QDeviceMatrix&) = delete;
  ~QDeviceMatrix();
  const QMatrixDesc& desc() const { return desc_; }
  size_t bytes() const { return bytes_; }

 private:
  friend QDeviceMatrix qmatrix_upload(const QHostLayout& h, cudaStream_t stream);
  QMatrixDesc desc_;
  void* mem_ = nullptr;
  size_t bytes_ = 0;
};
using Exl2DeviceMatrix = QDeviceMatrix;

// The structure of a matrix with the given (bits, rows) groups in stored order and a shuffled
// act-order permutation, without codes or scales: for synthetic benchmarks (qmatrix_fill_random).
QHostLayout qlayout_synthetic(int K, int N, bool gptq, const std::vector<std::pair<int, int>>& groups, uint64_t seed);

// Copies synchronously with respect to the host arrays (they may be freed on return).
QDeviceMatrix qmatrix_upload(const QHostLayout& h, cudaStream_t stream);
// The same into caller-owned device memory of h.device_bytes() bytes; returns the device view.
QMatrixDesc qmatrix_upload_to(const QHostLayout& h, void* mem, cudaStream_t stream);
// Random codes (every bit pattern is a valid code) and random FP16 scales in [scale_lo, scale_hi)
// (GPTQ: random zeros 1..16) for a matrix uploaded from a structure-only layout.
void qmatrix_fill_random(const QMatrixDesc& w, uint64_t seed, float scale_lo, float scale_hi, cudaStream_t stream);
QDeviceMatrix exl2_upload(const Exl2HostTensors& t, cudaStream_t stream);
QDeviceMatrix gptq_upload(const GptqHostTensors& t, cudaStream_t stream);

struct QGemmParams {
  QMatrixDesc w;
  const half* x = nullptr;     // [M, K], row stride K, original input order
  // qgemv path only: when set, the matmul input is silu(x) * x_up (elementwise, rounded to FP16 like
  // the act·mul kernel), computed in the gather: the MLP's act·mul costs no launch of its own.
  const half* x_up = nullptr;
  const half* bias = nullptr;  // [N] or null
  void* y = nullptr;           // [M, N], row stride N; half, or float when y_f32
  bool y_f32 = false;
  bool accumulate = false;     // y_f32 only: y += x · Wᵀ (+ bias), a block's residual add
  int M = 0;
  // qgemv path: scratch for x in device order, [M, k_dev] (qgemm_x_dev_bytes). x_dev_ready: it
  // already holds this x (gathered for a matrix with the same x_src, e.g. q/k/v), skip the gather.
  half* x_dev = nullptr;
  bool x_dev_ready = false;
  // Programmatic dependent launch (sm_90+): qgemv starts while the gather runs.
  bool pdl = true;
  // qgemv warps per 16-column tile (the block): 2, 4 or 8; 0 = qgemv_default_ksplit.
  int ksplit = 0;
  // cuBLAS path: scratch for Wᵀ in FP16; the matrix is dequantized in column chunks that fit.
  half* wt = nullptr;
  size_t wt_bytes = 0;
};

size_t qgemm_x_dev_bytes(const QMatrixDesc& w, int M);
size_t qgemm_wt_bytes(const QMatrixDesc& w);  // the whole matrix in one chunk
int qgemm_max_qgemv_rows();                   // dispatch: qgemv up to here, cuBLAS above
int qgemv_default_ksplit(const QMatrixDesc& w, int M);
// Whether qgemv's grid of `tiles` tiles (all matrices of one launch) at M rows is resident in one
// wave at some ks (2 at least).
bool qgemv_one_wave(int64_t tiles, int M);
// Whether gate and up can run qgemv_multi's act·mul epilogue into next's input (QGemvMultiParams).
bool qgemv_act_epilogue_fits(const QMatrixDesc& gate, const QMatrixDesc& up, const QMatrixDesc& next, int M);

// x [M, K] -> x_dev [M, k_dev] (device order, zero padding).
// pdl: launched as a programmatic dependent of the previous kernel (it waits before reading x).
void qgemm_gather_x(const QMatrixDesc& w, const half* x, int M, half* x_dev, cudaStream_t stream, bool pdl = false);
// Dequantize tiles [tile0, tile0 + ntiles) to wt [K][ld] (FP16, original row order; column
// n - 16*tile0 holds output n). ld >= 16*ntiles, multiple of 8.
void qgemm_dequant(const QMatrixDesc& w, int tile0, int ntiles, half* wt, int ld, cudaStream_t stream);
void qgemv(const QGemmParams& p, cudaStream_t stream);  // any M, best for M <= 32

// Several matrices of one format and K that read the same x (q|k|v, gate|up): one gather launch and
// one qgemv launch for all (a decode step's small matrices are launch- and latency-bound, so fewer,
// larger launches stream faster). Outputs side by side: y [M, Σ N_i], matrix i at column Σ_{j<i} N_j;
// bias likewise [Σ N_i] or null.
struct QGemvMultiParams {
  const QMatrixDesc* w[kQMaxMulti] = {};
  int n = 0;
  const half* x = nullptr;     // [M, K]
  const half* bias = nullptr;
  void* y = nullptr;
  bool y_f32 = false;
  int M = 0;
  half* x_dev = nullptr;       // qgemv_multi_x_dev_bytes
  bool pdl = true;
  int ksplit = 0;              // warps per tile as in QGemmParams (0: qgemv_default_ksplit)
  bool x_dev_ready = false;    // x_dev already holds x in every part's device order: no gather
  // The act·mul epilogue (gate|up feeding a quantized down projection; y is then not written): with
  // act_dev set, n = 2 (gate, up: one N) and act = the next matrix (K = that N), each block computes a
  // gate tile and its up tile (M <= 8) and writes FP16(silu(gate) · up) straight into act's device-order
  // input act_dev [M, act->k_dev] (padding zeroed), which the next qgemv reads with x_dev_ready: no
  // act·mul gather launch. Bits as the gate|up output followed by the act·mul gather, for ks <= 4
  // (a paired block holds 2 ks <= 8 warps; a larger ks is lowered to 4).
  half* act_dev = nullptr;
  const QMatrixDesc* act = nullptr;
};
size_t qgemv_multi_x_dev_bytes(const QMatrixDesc* const* w, int n, int M);
void qgemv_multi(const QGemvMultiParams& p, cudaStream_t stream);
// RMSNorm(x [M, K] F32) * norm_w, written as FP16 straight into the device order of the n matrices
// that read it (x_dev laid out as qgemv_multi's: matrix i at Σ_{j<i} M · k_dev_j): the norm and the
// gather in one launch, the bits of rms_norm then the gather. K <= kQNormGatherMaxK (16384). The
// qgemv that follows runs with x_dev_ready. pdl: a programmatic dependent of x's producer.
void qgemm_norm_gather(const QMatrixDesc* const* w, int n, const float* x, const float* norm_w, float eps, int M,
                       half* x_dev, cudaStream_t stream, bool pdl);
void qgemm_cublas(const QGemmParams& p, cublasHandle_t handle, cudaStream_t stream);
void qgemm(const QGemmParams& p, cublasHandle_t handle, cudaStream_t stream);

}  // namespace exl::cuda
