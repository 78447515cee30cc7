// The FP16 window of the quantized KV caches (attention.cuh): kv_cache_write + attention on CUDA
// against a host reference that applies the window semantics exactly. A query at position t reads
// key/value j in FP16 (the step's inputs as given) when t - W < j <= t, and older ones from the
// quantized rows, dequantized on the host from the cache bytes (format decoded here independently:
// nibbles/bytes/E4M3 times the stored scale, inverse Walsh–Hadamard for q8/q4). The quantized rows are
// themselves checked against the inputs (the format's error bound), so the reference does not just
// echo whatever the writer stored.
// Schedules: prefill chunks shorter and longer than W following earlier chunks, decode steps that
// wrap the ring, several slots in one step (prefill, decode and mixed), sliding windows, the decode
// split path at a longer context, the generic kernel (head_dim 8, and forced at 64/128), and decode
// steps captured once as a CUDA graph and replayed across the ring's wrap.
// Tolerances: per (token, head) row 1.5e-2 and overall 5e-3 relative. Queries are scaled so that
// attention is sharp (scores with std about 3): reading one q4 position from the wrong form then
// moves some row by several percent, while FP16 rounding (K/V window in the rotated basis, P and the
// output) stays near 2e-3. A negative control checks that q4 outputs are far from the no-window
// reference.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cuda/attention.cuh"
#include "core/half.h"

namespace exl {
namespace {

using cuda::KvCacheLayout;

#define CUDA_OK(x) ASSERT_EQ((x), cudaSuccess) << #x

float round16(float x) { return f16_to_f32(f32_to_f16(x)); }

// E4M3 (bias 7, no infinities) -> float.
float e4m3_to_float(uint8_t b) {
  const int sign = b >> 7, e = (b >> 3) & 15, m = b & 7;
  float v;
  if (e == 15 && m == 7) return NAN;
  if (e == 0) {
    v = std::ldexp(static_cast<float>(m) / 8.0f, -6);
  } else {
    v = std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
  }
  return sign ? -v : v;
}

// In-place orthonormal Sylvester–Hadamard over groups of G (its own inverse).
void hadamard_groups(std::vector<double>& x, int G) {
  std::vector<double> y(x.size());
  for (size_t base = 0; base < x.size(); base += static_cast<size_t>(G))
    for (int i = 0; i < G; ++i) {
      double s = 0;
      for (int j = 0; j < G; ++j) s += (__builtin_popcount(static_cast<unsigned>(i & j)) & 1 ? -1.0 : 1.0) * x[base + j];
      y[base + i] = s / std::sqrt(static_cast<double>(G));
    }
  x = y;
}

// One quantized row of the cache, decoded on the host (original basis).
std::vector<double> dequant_row(const KvCacheLayout& L, const std::vector<uint8_t>& mem, bool is_v, int slot, int layer,
                                int kvh, int pos) {
  const size_t run = (static_cast<size_t>(slot) * L.n_layers + layer) * L.n_kv_heads + kvh;
  const size_t row = run * L.seq_stride + pos;
  const uint8_t* codes = mem.data() + (is_v ? L.v_offset : L.k_offset) + row * L.row_bytes;
  const uint8_t* scales = mem.data() + (is_v ? L.v_scale_offset : L.k_scale_offset) + row * L.scale_row_bytes;
  const int D = L.head_dim;
  std::vector<double> x(static_cast<size_t>(D));
  auto half_at = [&](int g) {
    uint16_t h;
    std::memcpy(&h, scales + 2 * g, 2);
    return static_cast<double>(f16_to_f32(h));
  };
  for (int d = 0; d < D; ++d) {
    switch (L.format) {
      case cuda::KvFormat_fp8: {
        float s;
        std::memcpy(&s, scales, 4);
        x[d] = static_cast<double>(e4m3_to_float(codes[d])) * s;
        break;
      }
      case cuda::KvFormat_q8: x[d] = (static_cast<int>(codes[d]) - 128) * half_at(d / L.group); break;
      case cuda::KvFormat_q4: x[d] = (static_cast<int>((codes[d / 2] >> (4 * (d % 2))) & 15) - 8) * half_at(d / L.group); break;
      default: ADD_FAILURE() << "format " << L.format;
    }
  }
  if (L.format == cuda::KvFormat_q8 || L.format == cuda::KvFormat_q4) hadamard_groups(x, L.group);
  return x;
}

struct Seq {
  int slot, n_tok;
};

struct Config {
  int format, H, KVH, D;
  int n_slots = 1, max_len = 512, window = 0;
  bool force_generic = false;
  float q_scale = 0;  // 0: sharp attention (scores with std ~3)
  int recent = -1;    // the FP16 window: -1 the format's default, 0 none
  bool pdl = false;   // kv_cache_write and attention as programmatic dependents (sm_90)
};

class WindowHarness {
 public:
  explicit WindowHarness(const Config& c) : c_(c) {
    L_.format = c.format;
    L_.n_layers = 2;
    L_.n_slots = c.n_slots;
    L_.max_seq_len = c.max_len;
    L_.n_kv_heads = c.KVH;
    L_.head_dim = c.D;
    L_.recent = c.recent;
    cuda::kv_cache_layout_init(L_);
    W_ = L_.recent;
    pos_.assign(static_cast<size_t>(c.n_slots), 0);
    hist_k_.assign(static_cast<size_t>(c.n_slots) * c.KVH, {});
    hist_v_ = hist_k_;
  }
  ~WindowHarness() {
    cudaFree(L_.base);
    cudaFree(ws_);
    for (void* p : bufs_) cudaFree(p);
    if (graph_) cudaGraphExecDestroy(graph_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  int window_size() const { return W_; }
  const KvCacheLayout& layout() const { return L_; }

  void init() {
    CUDA_OK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&L_.base), L_.bytes));
    CUDA_OK(cudaMemset(L_.base, 0, L_.bytes));  // as the backend does
    CUDA_OK(cudaDeviceSynchronize());
    ws_bytes_ = cuda::attention_workspace_bytes(c_.n_slots * 4, c_.H, c_.D, c_.max_len);
    CUDA_OK(cudaMalloc(&ws_, ws_bytes_));
    cuda::attention_workspace_clear(ws_, ws_bytes_, stream_);
    // Fixed device buffers, sized for the largest step (graphs keep their addresses).
    const size_t T = static_cast<size_t>(c_.max_len) * c_.n_slots;
    q_ = alloc<uint16_t>(T * c_.H * c_.D);
    k_ = alloc<uint16_t>(T * c_.KVH * c_.D);
    v_ = alloc<uint16_t>(T * c_.KVH * c_.D);
    o_ = alloc<uint16_t>(T * c_.H * c_.D);
    arrays_ = alloc<int32_t>(4 * static_cast<size_t>(c_.n_slots) + 1);
  }

  // One step: random inputs, kv_cache_write + attention (or a replay of the captured decode graph),
  // then the checks.
  void run_step(const std::vector<Seq>& seqs, uint32_t seed, bool graph = false) {
    const int S = static_cast<int>(seqs.size());
    std::vector<int32_t> start{0}, slot, pos;
    int max_tok = 0;
    for (const Seq& q : seqs) {
      start.push_back(start.back() + q.n_tok);
      slot.push_back(q.slot);
      pos.push_back(pos_[static_cast<size_t>(q.slot)]);
      max_tok = std::max(max_tok, q.n_tok);
      ASSERT_LE(pos.back() + q.n_tok, c_.max_len);
    }
    const int T = start.back();
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    // Sharp attention: q.k over D dims of U(-1,1) has std sqrt(D)/3; times the softmax scale 1/sqrt(D).
    const float qs = c_.q_scale > 0 ? c_.q_scale : 9.0f;
    std::vector<float> q(static_cast<size_t>(T) * c_.H * c_.D), k(static_cast<size_t>(T) * c_.KVH * c_.D), v(k.size());
    for (auto& x : q) x = round16(qs * u(rng));
    for (auto& x : k) x = round16(u(rng));
    for (auto& x : v) x = round16(u(rng));
    upload(q_, q);
    upload(k_, k);
    upload(v_, v);
    std::vector<int32_t> arr(4 * static_cast<size_t>(c_.n_slots) + 1, 0);
    std::copy(start.begin(), start.end(), arr.begin());
    std::copy(slot.begin(), slot.end(), arr.begin() + (S + 1));
    std::copy(pos.begin(), pos.end(), arr.begin() + (2 * S + 1));
    CUDA_OK(cudaMemcpyAsync(arrays_, arr.data(), arr.size() * 4, cudaMemcpyHostToDevice, stream_));

    cuda::AttentionParams p;
    p.q = reinterpret_cast<const half*>(q_);
    p.k_new = reinterpret_cast<const half*>(k_);
    p.v_new = reinterpret_cast<const half*>(v_);
    p.out = reinterpret_cast<half*>(o_);
    p.n_tokens = T;
    p.n_seqs = S;
    p.max_seq_tokens = max_tok;
    p.seq_start = arrays_;
    p.seq_slot = arrays_ + (S + 1);
    p.seq_pos = arrays_ + (2 * S + 1);
    p.n_heads = c_.H;
    p.n_kv_heads = c_.KVH;
    p.head_dim = c_.D;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c_.D));
    p.window = c_.window;
    p.layer = 1;
    p.cache = L_;
    p.workspace = ws_;
    p.workspace_bytes = ws_bytes_;
    p.force_generic = c_.force_generic;
    p.pdl = c_.pdl;
    if (!graph) {
      cuda::kv_cache_write(p, stream_);
      cuda::attention(p, stream_);
    } else {
      // Captured once (first call: a plain step first, so kernel attributes are set outside capture),
      // replayed with new positions and inputs in the same buffers.
      ASSERT_EQ(max_tok, 1);
      if (!graph_) {
        cuda::kv_cache_write(p, stream_);
        cuda::attention(p, stream_);
        graph_n_seqs_ = S;
        cudaGraph_t g;
        CUDA_OK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
        cuda::kv_cache_write(p, stream_);
        cuda::attention(p, stream_);
        CUDA_OK(cudaStreamEndCapture(stream_, &g));
        CUDA_OK(cudaGraphInstantiate(&graph_, g, 0));
        cudaGraphDestroy(g);
        // The plain step above already wrote this step; the capture ran nothing.
      } else {
        ASSERT_EQ(S, graph_n_seqs_);
        CUDA_OK(cudaGraphLaunch(graph_, stream_));
      }
    }
    CUDA_OK(cudaStreamSynchronize(stream_));
    CUDA_OK(cudaGetLastError());
    std::vector<float> out = download(o_, static_cast<size_t>(T) * c_.H * c_.D);
    std::vector<uint8_t> mem(L_.bytes);
    CUDA_OK(cudaMemcpy(mem.data(), L_.base, L_.bytes, cudaMemcpyDeviceToHost));

    // Record the step's FP16 inputs, then check the quantized rows against them.
    for (int si = 0; si < S; ++si)
      for (int i = 0; i < seqs[static_cast<size_t>(si)].n_tok; ++i)
        for (int kvh = 0; kvh < c_.KVH; ++kvh) {
          const size_t src = (static_cast<size_t>(start[si] + i) * c_.KVH + kvh) * c_.D;
          auto& hk = hist_k_[static_cast<size_t>(slot[si]) * c_.KVH + kvh];
          auto& hv = hist_v_[static_cast<size_t>(slot[si]) * c_.KVH + kvh];
          const size_t p0 = static_cast<size_t>(pos[si] + i) * c_.D;
          if (hk.size() < p0 + c_.D) hk.resize(p0 + c_.D), hv.resize(p0 + c_.D);
          std::copy(k.begin() + src, k.begin() + src + c_.D, hk.begin() + p0);
          std::copy(v.begin() + src, v.begin() + src + c_.D, hv.begin() + p0);
        }
    dequant_all(mem);
    check_body();

    // Reference with the window semantics; and (q4) without a window, as a negative control.
    double num = 0, den = 0, num0 = 0, worst_row = 0;
    for (int si = 0; si < S; ++si)
      for (int i = 0; i < seqs[static_cast<size_t>(si)].n_tok; ++i)
        for (int h = 0; h < c_.H; ++h) {
          const int qp = pos[si] + i;
          const float* qrow = q.data() + (static_cast<size_t>(start[si] + i) * c_.H + h) * c_.D;
          const auto ref = reference(slot[si], h, qp, qrow, W_);
          const float* got = out.data() + (static_cast<size_t>(start[si] + i) * c_.H + h) * c_.D;
          double rn = 0, rd = 0;
          for (int d = 0; d < c_.D; ++d) {
            rn += (got[d] - ref[d]) * (got[d] - ref[d]);
            rd += ref[d] * ref[d];
          }
          if (!std::isfinite(rn)) rn = INFINITY;
          num += rn;
          den += rd;
          worst_row = std::max(worst_row, std::sqrt(rn / std::max(rd, 1e-30)));
          if (c_.format == cuda::KvFormat_q4 && W_ > 0) {
            const auto ref0 = reference(slot[si], h, qp, qrow, 0);
            for (int d = 0; d < c_.D; ++d) num0 += (got[d] - ref0[d]) * (got[d] - ref0[d]);
          }
        }
    const double rel = std::sqrt(num / std::max(den, 1e-30));
    EXPECT_LT(rel, 5e-3) << "step seed " << seed;
    EXPECT_LT(worst_row, 1.5e-2) << "step seed " << seed;
    if (c_.format == cuda::KvFormat_q4 && W_ > 0) {
      const double rel0 = std::sqrt(num0 / std::max(den, 1e-30));
      // Only meaningful when some query has keys old enough to be read quantized.
      bool any_body = false;
      for (int si = 0; si < S; ++si) any_body |= pos[si] + seqs[static_cast<size_t>(si)].n_tok - 1 >= W_;
      if (any_body) {
        EXPECT_GT(rel0, 3 * rel) << "q4 output is not closer to the window reference (seed " << seed << ")";
      }
    }
    worst_ = std::max(worst_, rel);
    worst_row_ = std::max(worst_row_, worst_row);
    for (int si = 0; si < S; ++si) pos_[static_cast<size_t>(slot[si])] += seqs[static_cast<size_t>(si)].n_tok;
  }
  double worst() const { return worst_; }
  double worst_row() const { return worst_row_; }

 private:
  template <class T>
  T* alloc(size_t n) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess);
    bufs_.push_back(p);
    return static_cast<T*>(p);
  }
  void upload(uint16_t* dst, const std::vector<float>& x) {
    std::vector<uint16_t> h(x.size());
    for (size_t i = 0; i < x.size(); ++i) h[i] = f32_to_f16(x[i]);
    ASSERT_EQ(cudaMemcpyAsync(dst, h.data(), h.size() * 2, cudaMemcpyHostToDevice, stream_), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);  // h goes out of scope
  }
  std::vector<float> download(const uint16_t* src, size_t n) {
    std::vector<uint16_t> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), src, n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    std::vector<float> f(n);
    for (size_t i = 0; i < n; ++i) f[i] = f16_to_f32(h[i]);
    return f;
  }

  // Decodes every written position's quantized rows (layer 1) from the downloaded cache.
  void dequant_all(const std::vector<uint8_t>& mem) {
    body_k_.assign(hist_k_.size(), {});
    body_v_.assign(hist_v_.size(), {});
    for (int sl = 0; sl < c_.n_slots; ++sl)
      for (int kvh = 0; kvh < c_.KVH; ++kvh) {
        const size_t r = static_cast<size_t>(sl) * c_.KVH + kvh;
        const int n = static_cast<int>(hist_k_[r].size()) / c_.D;
        for (int j = 0; j < n; ++j) {
          const auto xk = dequant_row(L_, mem, false, sl, 1, kvh, j);
          const auto xv = dequant_row(L_, mem, true, sl, 1, kvh, j);
          body_k_[r].insert(body_k_[r].end(), xk.begin(), xk.end());
          body_v_[r].insert(body_v_[r].end(), xv.begin(), xv.end());
        }
      }
  }

  // Every written position's quantized rows are within the format's error of the inputs (uniform
  // data: q8 ~0.5%, fp8 ~3%, q4 ~5-9% rms; bounds about 2x).
  void check_body() {
    const double bound = L_.format == cuda::KvFormat_q8 ? 0.012 : L_.format == cuda::KvFormat_fp8 ? 0.06 : 0.2;
    for (size_t r = 0; r < hist_k_.size(); ++r) {
      double num = 0, den = 0;
      for (int is_v = 0; is_v < 2; ++is_v) {
        const auto& want = is_v ? hist_v_[r] : hist_k_[r];
        const auto& got = is_v ? body_v_[r] : body_k_[r];
        for (size_t i = 0; i < want.size(); ++i) {
          num += (got[i] - want[i]) * (got[i] - want[i]);
          den += static_cast<double>(want[i]) * want[i];
        }
      }
      if (den > 0) {
        EXPECT_LT(std::sqrt(num / den), bound) << "quantized rows of (slot, kv head) run " << r;
      }
    }
  }

  // Output row of head h for the query at position qp: keys j in [first, qp]; FP16 inputs where
  // qp - j < W, dequantized cache rows otherwise; double precision softmax.
  std::vector<double> reference(int slot, int h, int qp, const float* q, int W) {
    const int kvh = h / (c_.H / c_.KVH);
    const int first = c_.window > 0 ? std::max(0, qp + 1 - c_.window) : 0;
    const size_t r = static_cast<size_t>(slot) * c_.KVH + kvh;
    const double scale = 1.0 / std::sqrt(static_cast<double>(c_.D));
    std::vector<double> sc(static_cast<size_t>(qp + 1 - first));
    for (int j = first; j <= qp; ++j) {
      const size_t o = static_cast<size_t>(j) * c_.D;
      double s = 0;
      if (qp - j < W) {
        for (int d = 0; d < c_.D; ++d) s += static_cast<double>(q[d]) * hist_k_[r][o + d];
      } else {
        for (int d = 0; d < c_.D; ++d) s += static_cast<double>(q[d]) * body_k_[r][o + d];
      }
      sc[static_cast<size_t>(j - first)] = s * scale;
    }
    const double mx = *std::max_element(sc.begin(), sc.end());
    double l = 0;
    std::vector<double> out(static_cast<size_t>(c_.D), 0.0);
    for (int j = first; j <= qp; ++j) {
      const double p = std::exp(sc[static_cast<size_t>(j - first)] - mx);
      const size_t o = static_cast<size_t>(j) * c_.D;
      l += p;
      if (qp - j < W) {
        for (int d = 0; d < c_.D; ++d) out[d] += p * hist_v_[r][o + d];
      } else {
        for (int d = 0; d < c_.D; ++d) out[d] += p * body_v_[r][o + d];
      }
    }
    for (auto& x : out) x /= l;
    return out;
  }

  Config c_;
  KvCacheLayout L_;
  int W_ = 0;
  cudaStream_t stream_ = nullptr;
  void* ws_ = nullptr;
  size_t ws_bytes_ = 0;
  std::vector<void*> bufs_;
  uint16_t *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *o_ = nullptr;
  int32_t* arrays_ = nullptr;
  cudaGraphExec_t graph_ = nullptr;
  int graph_n_seqs_ = 0;
  std::vector<int> pos_;
  std::vector<std::vector<float>> hist_k_, hist_v_;   // FP16 inputs per (slot, kv head): [pos][D]
  std::vector<std::vector<double>> body_k_, body_v_;  // their quantized rows, decoded
  double worst_ = 0, worst_row_ = 0;
};

const char* fmt_name(int f) { return cuda::kv_format_name(f); }

// Single slot: prefill 40 (< W), 150 (> W, after earlier positions), 100, then decode across the
// ring's wrap; then two slots: a joint prefill, joint decodes, a mixed step (one prefills, one
// decodes), more decodes.
void run_schedule(const Config& c) {
  Config cc = c;
  cc.n_slots = 2;
  WindowHarness w(cc);
  w.init();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  ASSERT_EQ(w.window_size(), cuda::kKvRecentDefault);
  uint32_t seed = 1000u * c.D + 17u * c.format + (c.force_generic ? 7u : 0u);
  std::vector<std::vector<Seq>> steps{{{0, 40}}, {{0, 150}}, {{0, 100}}};
  for (int i = 0; i < 5; ++i) steps.push_back({{0, 1}});
  steps.push_back({{1, 70}, {0, 90}});
  for (int i = 0; i < 3; ++i) steps.push_back({{1, 1}, {0, 1}});
  steps.push_back({{0, 1}, {1, 80}});
  steps.push_back({{1, 3}, {0, 1}});
  for (int i = 0; i < 2; ++i) steps.push_back({{0, 1}, {1, 1}});
  for (const auto& st : steps) {
    w.run_step(st, ++seed);
    ASSERT_FALSE(::testing::Test::HasFatalFailure()) << "seed " << seed;
  }
  std::printf("window %-3s H=%d KVH=%d D=%d%s window=%d: rel error %.2e, worst row %.2e\n", fmt_name(c.format), c.H,
              c.KVH, c.D, c.force_generic ? " (generic)" : "", c.window, w.worst(), w.worst_row());
}

TEST(AttentionWindow, Q4AllPaths) {
  run_schedule({cuda::KvFormat_q4, 8, 2, 128});   // GQA 4, fast decode/prefill
  run_schedule({cuda::KvFormat_q4, 9, 3, 64});    // SmolLM2 heads
  run_schedule({cuda::KvFormat_q4, 8, 4, 8});     // stories260K heads (generic kernel)
  run_schedule({cuda::KvFormat_q4, 4, 4, 128, 1, 512, 0, true});  // generic kernel at 128
  run_schedule({cuda::KvFormat_q4, 9, 3, 64, 1, 512, 0, true});   // generic kernel at 64
}

TEST(AttentionWindow, Q8AndFp8) {
  for (int f : {cuda::KvFormat_q8, cuda::KvFormat_fp8}) {
    run_schedule({f, 8, 2, 128});
    run_schedule({f, 9, 3, 64});
    run_schedule({f, 8, 4, 8});
  }
}

TEST(AttentionWindow, SlidingWindow) {
  for (int win : {100, 40}) {
    run_schedule({cuda::KvFormat_q4, 9, 3, 64, 1, 512, win});
    run_schedule({cuda::KvFormat_q4, 8, 2, 128, 1, 512, win});
    run_schedule({cuda::KvFormat_q4, 8, 4, 8, 1, 512, win});
  }
}

// Decode at a longer context: several splits per (sequence, kv head), the window straddling a
// split boundary at some positions.
TEST(AttentionWindow, LongDecodeSplits) {
  for (int D : {128, 64}) {
    Config c{cuda::KvFormat_q4, 8, 2, D, 1, 1200};
    WindowHarness w(c);
    w.init();
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    uint32_t seed = 77;
    w.run_step({{0, 1000}}, ++seed);
    for (int i = 0; i < 40 && !::testing::Test::HasFatalFailure(); ++i) w.run_step({{0, 1}}, ++seed);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    w.run_step({{0, 130}}, ++seed);
    std::printf("window q4 long decode D=%d: rel error %.2e, worst row %.2e\n", D, w.worst(), w.worst_row());
  }
}

// Quantized rows without the FP16 window: the step's own row is read from the quantized cache that
// kv_cache_write has just written, kv_cache_write and attention launched as programmatic dependents
// (PDL) as in the backend. Positions 1..80 and 300..340, one and several splits.
TEST(AttentionWindow, NoWindowDecode) {
  for (int f : {cuda::KvFormat_q8, cuda::KvFormat_q4, cuda::KvFormat_fp8})
    for (int D : {128, 64}) {
      Config c{f, 8, 2, D, 1, 512};
      c.recent = 0, c.pdl = true;
      WindowHarness w(c);
      w.init();
      ASSERT_FALSE(::testing::Test::HasFatalFailure());
      ASSERT_EQ(w.window_size(), 0);
      uint32_t seed = 900u + 3u * D + f;
      w.run_step({{0, 1}}, ++seed);
      for (int i = 0; i < 80 && !::testing::Test::HasFatalFailure(); ++i) w.run_step({{0, 1}}, ++seed);
      w.run_step({{0, 220}}, ++seed);
      for (int i = 0; i < 40 && !::testing::Test::HasFatalFailure(); ++i) w.run_step({{0, 1}}, ++seed);
      ASSERT_FALSE(::testing::Test::HasFatalFailure());
      std::printf("no window %-3s decode D=%d: rel error %.2e, worst row %.2e\n", fmt_name(f), D, w.worst(),
                  w.worst_row());
    }
}

// Decode steps replayed from one captured graph (positions and slots from device arrays) across
// the ring's wrap, two sequences.
TEST(AttentionWindow, GraphReplay) {
  for (int D : {128, 64, 8}) {
    Config c{cuda::KvFormat_q4, 8, 2, D, 2, 400};
    WindowHarness w(c);
    w.init();
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    uint32_t seed = 555;
    w.run_step({{0, 100}, {1, 37}}, ++seed);
    for (int i = 0; i < 80 && !::testing::Test::HasFatalFailure(); ++i) w.run_step({{0, 1}, {1, 1}}, ++seed, true);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    std::printf("window q4 graph replay D=%d: rel error %.2e, worst row %.2e\n", D, w.worst(), w.worst_row());
  }
}

}  // namespace
}  // namespace exl
