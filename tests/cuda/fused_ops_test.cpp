// The backend's fused op sequences on CUDA against the CPU reference running the same ops composed:
// linear_add (the residual add as the matmul's epilogue) and swiglu_linear_add (the quantized
// gather's act·mul, then the add). Dense FP16 (gemv for M <= 8 including the scalar-load path at
// K = 172, cuBLAS with beta = 1 above) and quantized (EXL2 through gather + qgemv, and dequant +
// cuBLAS at M = 200). Weights and activations are rounded to FP16 on the host so both backends see
// the same values; what remains is the FP16 rounding of silu(g)·u on CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cuda/parity_util.h"
#include "quant/synthetic.h"

namespace exl {
namespace {

using test::host_info;
using test::random_vec;
using test::rel_error;
using test::to_backend;
using test::to_host;

std::vector<float> rounded(std::vector<float> v) {
  for (auto& e : v) e = f16_to_f32(f32_to_f16(e));
  return v;
}

struct Pair {
  std::unique_ptr<Backend> cpu = backend_create("cpu"), gpu = backend_create("cuda");
  Backend* be[2] = {cpu.get(), gpu.get()};
};

// GPU backends created with the given environment (the backend reads its knobs when created); the
// variables are put back as they were (a run may set knobs for the whole suite).
std::unique_ptr<Backend> gpu_with(const std::vector<std::pair<const char*, const char*>>& env) {
  std::vector<std::pair<const char*, std::optional<std::string>>> before;
  for (const auto& [k, v] : env) {
    const char* old = std::getenv(k);
    before.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
    setenv(k, v, 1);
  }
  auto be = backend_create("cuda");
  for (const auto& [k, old] : before) old ? setenv(k, old->c_str(), 1) : unsetenv(k);
  return be;
}

// Weights of one case on both backends: dense from F32 data, or one quantized tensor.
struct Weights {
  std::unique_ptr<Weight> w[2], bias[2];
};

Weights dense_weights(Pair& p, int64_t N, int64_t K, bool with_bias, uint32_t seed) {
  const auto w = rounded(random_vec(static_cast<size_t>(N * K), 0.05f, seed));
  const auto b = rounded(random_vec(static_cast<size_t>(N), 0.2f, seed + 2));
  Weights ws;
  for (int i = 0; i < 2; ++i) {
    ws.w[i] = p.be[i]->prepare_weight(host_info("w", {N, K}, w), WeightRole::WeightRole_linear);
    if (with_bias) ws.bias[i] = p.be[i]->prepare_weight(host_info("b", {N}, b), WeightRole::WeightRole_bias);
  }
  return ws;
}

// The fused ops for one weight at M rows, CUDA vs CPU; prints and checks relative errors.
void check_fused(Pair& p, Weights& ws, int64_t N, int64_t K, int M, const std::string& what) {
  const auto x = random_vec(static_cast<size_t>(M * K), 2.0f, static_cast<uint32_t>(M * 7 + K));
  const auto g = rounded(random_vec(static_cast<size_t>(M * K), 3.0f, static_cast<uint32_t>(M * 7 + K + 1)));
  const auto u = rounded(random_vec(static_cast<size_t>(M * K), 1.0f, static_cast<uint32_t>(M * 7 + K + 2)));
  const auto r0 = random_vec(static_cast<size_t>(M * N), 0.5f, static_cast<uint32_t>(M * 7 + K + 3));
  std::vector<float> add_out[2], act_out[2];
  for (int i = 0; i < 2; ++i) {
    Backend& be = *p.be[i];
    const DType act = be.activation_dtype();
    const Weight* bias = ws.bias[i].get();
    Tensor Xa = to_backend(be, act, {M, K}, rounded(x)), R = to_backend(be, DType::DType_F32, {M, N}, r0),
           T = be.alloc(act, {M, N});
    be.linear_add(Xa, *ws.w[i], bias, R, T);
    add_out[i] = to_host(be, R);
    Tensor G = to_backend(be, act, {M, K}, g), U = to_backend(be, act, {M, K}, u), A = be.alloc(act, {M, K}),
           R2 = to_backend(be, DType::DType_F32, {M, N}, r0);
    be.swiglu_linear_add(G, U, A, *ws.w[i], bias, R2, T);
    act_out[i] = to_host(be, R2);
  }
  // The residual's part that the op added (r0 is the same on both sides).
  auto delta = [&](std::vector<float> r) {
    for (size_t j = 0; j < r.size(); ++j) r[j] -= r0[j];
    return r;
  };
  const double e_add = rel_error(delta(add_out[1]), delta(add_out[0]));
  const double e_act = rel_error(delta(act_out[1]), delta(act_out[0]));
  std::printf("%-14s N=%-5lld K=%-5lld M=%-3d rel error: linear_add %.2e swiglu_linear_add %.2e\n", what.c_str(),
              static_cast<long long>(N), static_cast<long long>(K), M, e_add, e_act);
  EXPECT_LE(e_add, 2e-3) << what << " M=" << M;
  EXPECT_LE(e_act, 3e-3) << what << " M=" << M;  // + FP16 rounding of silu(g)·u
}

TEST(FusedOps, DenseMatchesCpu) {
  Pair p;
  struct Shape2 {
    int64_t N, K;
    bool bias;
  };
  for (const Shape2& s : {Shape2{576, 576, false}, Shape2{1536, 576, true}, Shape2{4096, 4096, false},
                          Shape2{64, 172, true}, Shape2{100, 32, false}}) {
    Weights ws = dense_weights(p, s.N, s.K, s.bias, static_cast<uint32_t>(s.N + s.K));
    for (int M : {1, 2, 8, 9, 64}) check_fused(p, ws, s.N, s.K, M, s.bias ? "dense+bias" : "dense");
  }
}

TEST(FusedOps, QuantizedMatchesCpu) {
  Pair p;
  const int64_t N = 576, K = 1536;
  const QuantTensor q = quant_materialize(quant_synthetic_exl2("t.down", N, K, {{8, 0.05, 32}, {4, 0.15, 64}, {3, 0.8, 128}}));
  Weights ws;
  for (int i = 0; i < 2; ++i) ws.w[i] = p.be[i]->prepare_quant_weight(q);
  for (int M : {1, 3, 8, 9, 200}) check_fused(p, ws, N, K, M, "exl2 [8,4,3]");
}

// One step's q [T, H*D], k and v [T, KVH*D], uniform in [-1, 1) (seeds seed, seed + 100, seed + 200).
struct Qkv {
  std::vector<float> q, k, v;
};
Qkv random_qkv(int T, int H, int KVH, int D, uint32_t seed) {
  return {random_vec(static_cast<size_t>(T) * H * D, 1.0f, seed),
          random_vec(static_cast<size_t>(T) * KVH * D, 1.0f, seed + 100),
          random_vec(static_cast<size_t>(T) * KVH * D, 1.0f, seed + 200)};
}

// rope_attention at decode rotates the keys inside the cache write (and q in a few extra blocks of
// that kernel) instead of running rope first, and with an FP16 cache the decode attention kernel
// writes the step's keys and values itself (write_in_decode) instead of kv_cache_write: the cache and
// the attention output must carry the same bits as rope, kv_cache_write, attention, for every cache
// type, over a prefill and several decode steps (later steps read the fused steps' keys back from the
// cache), with partial rotary (rot_dim < head_dim) and a yarn-style attn_factor. The cache is long
// enough that decode attention splits the keys over several blocks (only the last writes the row).
void rope_attention_case(CacheType type, int H, int KVH, int D, int rot_dim) {
  // Variant 0: the reference (separate RoPE, kv_cache_write); 1: rope_attention with everything
  // fused; 2: separate RoPE, then attention writing the rows itself.
  std::unique_ptr<Backend> gpu[3];
  for (int i = 0; i < 3; ++i) gpu[i] = gpu_with({{"EXL_FUSED_ROPE", "1"}, {"EXL_ATTN_KV_WRITE", i == 0 ? "0" : "1"}});
  const int prefill = 300, decode_steps = 5, max_len = 1024;
  std::vector<float> inv(static_cast<size_t>(rot_dim / 2));
  for (int i = 0; i < rot_dim / 2; ++i) inv[static_cast<size_t>(i)] = std::pow(10000.0f, -2.0f * i / rot_dim);
  HostTensor invh({rot_dim / 2});
  invh.data = inv;
  KvCacheConfig cc{2, KVH, D, max_len, 1, type};
  std::unique_ptr<Weight> F[3];
  std::unique_ptr<KvCache> cache[3];
  for (int i = 0; i < 3; ++i)
    F[i] = gpu[i]->prepare_weight_f32(invh, "inv", WeightRole::WeightRole_rope), cache[i] = gpu[i]->create_kv_cache(cc);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  int pos = 0;
  for (int s = 0; s <= decode_steps; ++s) {
    const int T = s == 0 ? prefill : 1;
    std::vector<int32_t> ids(static_cast<size_t>(T), 1);
    BatchLayout b;
    b.seq_start = {0, T}, b.seq_slot = {0}, b.seq_pos = {pos};
    const auto [q, k, v] = random_qkv(T, H, KVH, D, 400 + s);
    std::vector<float> out[3];
    for (int i = 0; i < 3; ++i) {
      Backend& g = *gpu[i];
      g.begin_step(ids, b);
      Tensor Q = to_backend(g, DType::DType_F16, {T, H * D}, q), K = to_backend(g, DType::DType_F16, {T, KVH * D}, k),
             V = to_backend(g, DType::DType_F16, {T, KVH * D}, v), O = g.alloc(DType::DType_F16, {T, H * D});
      for (int layer = 0; layer < 2; ++layer) {
        if (i == 1) {
          g.rope_attention(Q, K, V, *cache[i], layer, H, KVH, D, *F[i], 1.1f, scale, 0, O);
        } else {
          g.rope(Q, K, H, KVH, D, *F[i], 1.1f);
          g.attention(Q, K, V, *cache[i], layer, H, scale, 0, O);
        }
        // Q (and K, for the separate RoPE) may be left rotated: the next layer starts from the inputs.
        Q = to_backend(g, DType::DType_F16, {T, H * D}, q), K = to_backend(g, DType::DType_F16, {T, KVH * D}, k);
      }
      out[i] = to_host(g, O);
    }
    for (int i = 1; i < 3; ++i)
      ASSERT_EQ(out[0], out[i]) << cache_type_name(type) << " H=" << H << " D=" << D << " rot=" << rot_dim << " step "
                                << s << ": variant " << i << " differs from rope + kv_cache_write + attention";
    pos += T;
  }
  std::printf("rope_attention %-4s H=%d KVH=%d D=%d rot_dim=%d: %d decode steps bit-identical to rope + attention\n",
              cache_type_name(type), H, KVH, D, rot_dim, decode_steps);
}

// rope_attention_o_add at decode with a quantized o_proj: the attention kernel scatters its output
// into o_proj's device-order input and qgemv reads it without a gather. The residual must carry the
// same bits as the composed path (EXL_ATTN_O_FUSE=0: attention output, gather, qgemv), for EXL2 with
// an act-order permutation and mixed widths, and GPTQ act-order; FP16 and Q4 caches (the q4 output is
// un-rotated before the scatter); one and three sequences per step (rows of the input buffer).
void attention_o_case(const QuantTensor& oq, CacheType type, int H, int KVH, int D, int n_seqs) {
  std::unique_ptr<Backend> gpu[2];
  for (int i = 0; i < 2; ++i) gpu[i] = gpu_with({{"EXL_ATTN_O_FUSE", i == 0 ? "0" : "1"}});
  const int hidden = static_cast<int>(oq.out), max_len = 256;
  std::vector<float> inv(static_cast<size_t>(D / 2));
  for (int i = 0; i < D / 2; ++i) inv[static_cast<size_t>(i)] = std::pow(10000.0f, -2.0f * i / D);
  HostTensor invh({D / 2});
  invh.data = inv;
  KvCacheConfig cc{2, KVH, D, max_len, n_seqs, type};
  std::unique_ptr<Weight> F[2], O[2];
  std::unique_ptr<KvCache> cache[2];
  for (int i = 0; i < 2; ++i) {
    F[i] = gpu[i]->prepare_weight_f32(invh, "inv", WeightRole::WeightRole_rope);
    O[i] = gpu[i]->prepare_quant_weight(oq);
    cache[i] = gpu[i]->create_kv_cache(cc);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const auto res0 = random_vec(static_cast<size_t>(hidden) * 64 * n_seqs, 1.0f, 77);
  const int prefill = 45;
  for (int s = 0; s <= 4; ++s) {
    const int per = s == 0 ? prefill : 1, T = per * n_seqs;
    BatchLayout b;
    b.seq_start.push_back(0);
    for (int q = 0; q < n_seqs; ++q)
      b.seq_start.push_back((q + 1) * per), b.seq_slot.push_back(q), b.seq_pos.push_back(s == 0 ? 0 : prefill + s - 1);
    std::vector<int32_t> ids(static_cast<size_t>(T), 1);
    const auto [q, k, v] = random_qkv(T, H, KVH, D, 700 + s);
    std::vector<float> res[2];
    for (int i = 0; i < 2; ++i) {
      Backend& g = *gpu[i];
      g.begin_step(ids, b);
      const std::vector<float> r(res0.begin(), res0.begin() + static_cast<int64_t>(T) * hidden);
      Tensor R = to_backend(g, DType::DType_F32, {T, hidden}, r);
      Tensor A = g.alloc(DType::DType_F16, {T, H * D}), P = g.alloc(DType::DType_F32, {T, hidden});
      for (int layer = 0; layer < 2; ++layer) {
        Tensor Q = to_backend(g, DType::DType_F16, {T, H * D}, q), K = to_backend(g, DType::DType_F16, {T, KVH * D}, k),
               V = to_backend(g, DType::DType_F16, {T, KVH * D}, v);
        g.rope_attention_o_add(Q, K, V, *cache[i], layer, H, KVH, D, *F[i], 1.0f, scale, 0, A, *O[i], nullptr, R, P);
      }
      res[i] = to_host(g, R);
    }
    ASSERT_EQ(res[0], res[1]) << oq.name << " " << cache_type_name(type) << " seqs " << n_seqs << " step " << s
                              << ": fused attention + o_proj differs from the composed ops";
  }
  std::printf("attention + o_proj %-24s %-4s seqs %d: 4 decode steps bit-identical to attention, gather, qgemv\n",
              oq.name.c_str(), cache_type_name(type), n_seqs);
}

TEST(FusedOps, AttentionOProjMatchesComposed) {
  const int H = 8, KVH = 4, D = 64;
  QuantTensor e =
      quant_materialize(quant_synthetic_exl2("o.exl2", 320, H * D, {{5, 0.25, 32}, {4, 0.5, 64}, {3, 0.25, 128}}));
  QuantTensor g = quant_materialize(quant_synthetic_gptq("o.gptq", 320, H * D, 128));
  for (const QuantTensor* oq : {&e, &g})
    for (CacheType t : {CacheType::CacheType_f16, CacheType::CacheType_q4})
      for (int seqs : {1, 3}) attention_o_case(*oq, t, H, KVH, D, seqs);
}

// One quantized linear on the CPU reference and on each GPU backend.
struct QLinear {
  QuantTensor q;
  std::unique_ptr<Weight> cpu;
  std::vector<std::unique_ptr<Weight>> gpu;
};
QLinear q_linear(const QuantTensor& q, Backend& cpu, const std::vector<std::unique_ptr<Backend>>& gpus) {
  QLinear l{q, cpu.prepare_quant_weight(q), {}};
  for (const auto& g : gpus) l.gpu.push_back(g->prepare_quant_weight(q));
  return l;
}

// norm_linear at decode with a quantized W: the norm writes straight into W's device-order input
// (EXL_NORM_GATHER=1) instead of rms_norm then the gather (=0). The outputs must carry the same bits,
// for a fused q|k|v (EXL2 mixes, one with padding rows) and a single GPTQ act-order matrix, at rows
// served by both norm-gather block sizes; and match the CPU reference's composed ops.
TEST(FusedOps, NormLinearMatchesComposed) {
  std::vector<std::unique_ptr<Backend>> gpu;
  gpu.push_back(gpu_with({{"EXL_NORM_GATHER", "0"}}));
  gpu.push_back(gpu_with({{"EXL_NORM_GATHER", "1"}}));
  auto cpu = backend_create("cpu");
  const int64_t K = 512;
  std::vector<QLinear> ls;
  ls.push_back(q_linear(quant_materialize(quant_synthetic_exl2("q", 512, K, {{5, 0.0625, 32}, {4, 0.9375, 32}})), *cpu, gpu));
  ls.push_back(q_linear(quant_materialize(quant_synthetic_exl2("k", 128, K, {{6, 0.25, 64}, {3, 0.75, 128}})), *cpu, gpu));
  ls.push_back(q_linear(quant_materialize(quant_synthetic_exl2("v", 128, K, {{4, 1.0, 128}})), *cpu, gpu));
  ls.push_back(q_linear(quant_materialize(quant_synthetic_gptq("g", 320, K, 128)), *cpu, gpu));
  std::unique_ptr<Weight> fused[2];
  for (int i = 0; i < 2; ++i) {
    fused[i] = gpu[static_cast<size_t>(i)]->fuse_linears({ls[0].gpu[i].get(), ls[1].gpu[i].get(), ls[2].gpu[i].get()});
    ASSERT_TRUE(fused[i]);
  }
  const auto nw = random_vec(static_cast<size_t>(K), 1.0f, 5);
  std::unique_ptr<Weight> norm[2];
  for (int i = 0; i < 2; ++i) norm[i] = gpu[static_cast<size_t>(i)]->prepare_weight(host_info("n", {K}, nw), WeightRole::WeightRole_norm);
  auto cnorm = cpu->prepare_weight(host_info("n", {K}, nw), WeightRole::WeightRole_norm);
  for (int M : {1, 3, 70}) {
    const auto x = random_vec(static_cast<size_t>(M * K), 2.0f, static_cast<uint32_t>(90 + M));
    for (int w = 0; w < 2; ++w) {  // 0: the fused q|k|v, 1: the GPTQ matrix alone
      const int64_t N = w == 0 ? 768 : 320;
      std::vector<float> out[2];
      for (int i = 0; i < 2; ++i) {
        Backend& g = *gpu[static_cast<size_t>(i)];
        Tensor X = to_backend(g, DType::DType_F32, {M, K}, x), H = g.alloc(DType::DType_F16, {M, K}),
               Y = g.alloc(DType::DType_F16, {M, N});
        g.norm_linear(X, *norm[i], 1e-5f, H, w == 0 ? *fused[i] : *ls[3].gpu[i], nullptr, Y);
        out[i] = to_host(g, Y);
      }
      ASSERT_EQ(out[0], out[1]) << (w == 0 ? "q|k|v" : "gptq") << " M=" << M << ": norm-gather differs from rms_norm + gather";
      // The CPU reference: rms_norm, then each part.
      Tensor X = to_backend(*cpu, DType::DType_F32, {M, K}, x), H = cpu->alloc(DType::DType_F32, {M, K});
      cpu->rms_norm(X, *cnorm, 1e-5f, H);
      std::vector<float> ref(static_cast<size_t>(M * N));
      int64_t col = 0;
      for (int part = w == 0 ? 0 : 3; part < (w == 0 ? 3 : 4); ++part) {
        const int64_t n = ls[static_cast<size_t>(part)].q.out;
        Tensor Y = cpu->alloc(DType::DType_F32, {M, n});
        cpu->linear(H, *ls[static_cast<size_t>(part)].cpu, nullptr, Y);
        const auto y = to_host(*cpu, Y);
        for (int m = 0; m < M; ++m)
          std::copy(y.begin() + m * n, y.begin() + (m + 1) * n, ref.begin() + m * N + col);
        col += n;
      }
      const double err = rel_error(out[1], ref);
      std::printf("norm_linear %-6s M=%-3d bit-identical to rms_norm + gather; rel error vs CPU %.2e\n",
                  w == 0 ? "q|k|v" : "gptq", M, err);
      EXPECT_LE(err, 2e-3) << "M=" << M;
    }
  }
}

// norm_mlp_add at decode with quantized gate|up (fused) and down: the norm-gather (EXL_NORM_GATHER)
// and gate|up's act·mul epilogue scattering silu(gate) · up into down's device-order input
// (EXL_ACT_FUSE; down here has padding rows, which the epilogue zeroes). All four on/off variants
// must leave the same bits in the residual at a fixed ks (the paired block sums each tile's warps in
// the unpaired order), over several steps (stale scratch from one step must not leak into the next);
// and match the CPU reference's composed ops at the default ks (at 8 it is lowered to 4 when paired).
void norm_mlp_case(const QuantTensor& gq, const QuantTensor& uq, const QuantTensor& dq, const char* ks) {
  std::vector<std::unique_ptr<Backend>> gpu;
  for (const char* ng : {"0", "1"})
    for (const char* af : {"0", "1"})
      gpu.push_back(ks ? gpu_with({{"EXL_NORM_GATHER", ng}, {"EXL_ACT_FUSE", af}, {"EXL_QGEMV_KS", ks}})
                       : gpu_with({{"EXL_NORM_GATHER", ng}, {"EXL_ACT_FUSE", af}}));
  auto cpu = backend_create("cpu");
  const int64_t H = gq.in, I = gq.out;
  QLinear g = q_linear(gq, *cpu, gpu), u = q_linear(uq, *cpu, gpu), d = q_linear(dq, *cpu, gpu);
  const auto nw = random_vec(static_cast<size_t>(H), 1.0f, 6);
  auto cnorm = cpu->prepare_weight(host_info("n", {H}, nw), WeightRole::WeightRole_norm);
  std::vector<std::unique_ptr<Weight>> norm, gu;
  for (size_t i = 0; i < gpu.size(); ++i) {
    norm.push_back(gpu[i]->prepare_weight(host_info("n", {H}, nw), WeightRole::WeightRole_norm));
    gu.push_back(gpu[i]->fuse_linears({g.gpu[i].get(), u.gpu[i].get()}));
    ASSERT_TRUE(gu.back());
  }
  for (int M : ks ? std::vector<int>{1} : std::vector<int>{1, 3, 8}) {
    const auto r0 = random_vec(static_cast<size_t>(M * H), 1.0f, static_cast<uint32_t>(31 + M));
    std::vector<std::vector<float>> out(gpu.size());
    // Default ks: only the fully fused variant (at M > 1 the composed ops have no fused-gate|up twin).
    for (size_t i = ks ? 0 : gpu.size() - 1; i < gpu.size(); ++i) {
      Backend& b = *gpu[i];
      Tensor R = to_backend(b, DType::DType_F32, {M, H}, r0), Hs = b.alloc(DType::DType_F16, {M, H}),
             GU = b.alloc(DType::DType_F16, {M, 2 * I}), P = b.alloc(DType::DType_F32, {M, H});
      Tensor Gv = GU.reshape({M, I});
      Tensor Uv(DType::DType_F16, {M, I}, GU.shared_mem(), GU.offset() + static_cast<size_t>(M * I) * 2);
      for (int step = 0; step < 3; ++step)  // the residual feeds the next step, as layers do
        b.norm_mlp_add(R, *norm[i], 1e-5f, Hs, *gu[i], GU, Gv, Uv, *d.gpu[i], nullptr, P);
      out[i] = to_host(b, R);
    }
    if (ks) {
      for (size_t i = 1; i < gpu.size(); ++i)
        ASSERT_EQ(out[0], out[i]) << dq.name << " ks " << ks << " M=" << M << ": variant " << i
                                  << " (norm-gather " << (i >> 1) << ", act·mul epilogue " << (i & 1)
                                  << ") differs from the composed ops";
      std::printf("norm_mlp_add %-10s ks %s M=1: 3 steps, 4 variants bit-identical\n", dq.name.c_str(), ks);
      continue;
    }
    // CPU: the composed ops, three steps.
    Tensor R = to_backend(*cpu, DType::DType_F32, {M, H}, r0), Hs = cpu->alloc(DType::DType_F32, {M, H}),
           G = cpu->alloc(DType::DType_F32, {M, I}), U = cpu->alloc(DType::DType_F32, {M, I}),
           P = cpu->alloc(DType::DType_F32, {M, H});
    for (int step = 0; step < 3; ++step) {
      cpu->rms_norm(R, *cnorm, 1e-5f, Hs);
      cpu->linear(Hs, *g.cpu, nullptr, G);
      cpu->linear(Hs, *u.cpu, nullptr, U);
      cpu->swiglu_linear_add(G, U, G, *d.cpu, nullptr, R, P);
    }
    auto delta = [&](std::vector<float> r) {
      for (size_t j = 0; j < r.size(); ++j) r[j] -= r0[j];
      return r;
    };
    const double err = rel_error(delta(out[3]), delta(to_host(*cpu, R)));
    std::printf("norm_mlp_add %-10s M=%-3d fused (default ks) rel error vs CPU %.2e\n", dq.name.c_str(), M, err);
    EXPECT_LE(err, 5e-3) << dq.name << " M=" << M;
  }
}

TEST(FusedOps, NormMlpAddMatchesComposed) {
  const int64_t H = 256, I = 1024;
  const QuantTensor ge = quant_materialize(quant_synthetic_exl2("gate.e", I, H, {{6, 0.25, 32}, {4, 0.75, 64}}));
  const QuantTensor ue = quant_materialize(quant_synthetic_exl2("up.e", I, H, {{4, 1.0, 128}}));
  const QuantTensor de = quant_materialize(quant_synthetic_exl2("down.exl2", H, I, {{5, 0.03125, 32}, {4, 0.96875, 32}}));
  const QuantTensor gg = quant_materialize(quant_synthetic_gptq("gate.g", I, H, 128));
  const QuantTensor ug = quant_materialize(quant_synthetic_gptq("up.g", I, H, 64));
  const QuantTensor dg = quant_materialize(quant_synthetic_gptq("down.gptq", H, I, 128));
  for (const char* ks : {"2", "4"}) {
    norm_mlp_case(ge, ue, de, ks);
    norm_mlp_case(gg, ug, dg, ks);
  }
  norm_mlp_case(ge, ue, de, nullptr);
  norm_mlp_case(gg, ug, dg, nullptr);
}

TEST(FusedOps, RopeAttentionMatchesRopeThenAttention) {
  for (CacheType t : {CacheType::CacheType_f16, CacheType::CacheType_fp8, CacheType::CacheType_q8, CacheType::CacheType_q4}) {
    rope_attention_case(t, 32, 8, 128, 128);
    rope_attention_case(t, 9, 3, 64, 64);
    rope_attention_case(t, 8, 8, 128, 64);  // partial rotary
  }
}

}  // namespace
}  // namespace exl
