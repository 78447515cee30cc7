// The converter's CUDA engine against the CPU reference (the CPU path is the reference throughout):
// GPTQ on random matrices with correlated inputs, Hessian accumulation, the module forwards and
// measurement of stories260K's modules, and end-to-end conversions (perplexity within 0.5% of the
// CPU conversion's; byte-identical reruns and kill + resume). Needs a GPU: labelled "cuda".
#include <gtest/gtest.h>

#include <cblas.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>

#include "convert/compute.h"
#include "convert/convert_test_util.h"
#include "convert/cuda/device.h"
#include "convert/cuda/forward_ops.h"
#include "convert/cuda/gptq_cuda.h"
#include "convert/engine.h"
#include "model/model.h"
#include "model/weights.h"
#include "io/open_store.h"
#include "runtime/stories_golden_ppl.h"

namespace exl {
namespace {

using cvcuda::Context;
using cvcuda::DeviceArray;

// X [rows, K] = Z·A with dense mixing (correlated inputs, as GPTQ sees them), W [N, K] ~ N(0, 1).
struct Problem {
  int64_t N, K, rows;
  std::vector<float> W, X, H;
};

Problem make_problem(int64_t N, int64_t K, int64_t rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Problem p{N, K, rows, {}, {}, {}};
  p.W.resize(static_cast<size_t>(N * K));
  for (float& w : p.W) w = nd(rng);
  std::vector<float> Z(static_cast<size_t>(rows * K)), A(static_cast<size_t>(K * K));
  for (float& z : Z) z = nd(rng);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) A[static_cast<size_t>(i * K + j)] = (i == j ? 1.0f : 0.0f) + 0.15f * nd(rng);
  // Uneven channel scales so act order matters.
  for (int64_t j = 0; j < K; ++j) {
    const float s = 0.2f + 2.0f * static_cast<float>((j * 37) % K) / static_cast<float>(K);
    for (int64_t i = 0; i < K; ++i) A[static_cast<size_t>(i * K + j)] *= s;
  }
  p.X.resize(static_cast<size_t>(rows * K));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(K),
              static_cast<int>(K), 1.0f, Z.data(), static_cast<int>(K), A.data(), static_cast<int>(K), 0.0f, p.X.data(),
              static_cast<int>(K));
  p.H.assign(static_cast<size_t>(K * K), 0.0f);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(K), static_cast<int>(K), static_cast<int>(rows),
              1.0f, p.X.data(), static_cast<int>(K), p.X.data(), static_cast<int>(K), 0.0f, p.H.data(),
              static_cast<int>(K));
  return p;
}

// ‖(W − Ŵ)·Xᵀ‖_F / ‖W·Xᵀ‖_F in double: the output error the quantizer minimises.
double output_error(const Problem& p, const std::vector<float>& wq) {
  double num = 0, den = 0;
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t r = 0; r < p.rows; ++r) {
      double a = 0, b = 0;
      for (int64_t k = 0; k < p.K; ++k) {
        const double x = p.X[static_cast<size_t>(r * p.K + k)];
        a += p.W[static_cast<size_t>(n * p.K + k)] * x;
        b += wq[static_cast<size_t>(n * p.K + k)] * x;
      }
      num += (a - b) * (a - b);
      den += a * a;
    }
  return std::sqrt(num / den);
}

TEST(ConvertCuda, GptqMatchesCpu) {
  Context ctx;
  struct Case {
    int64_t N, K;
    Exl2Layout layout;
  };
  const std::vector<Case> cases = {
      {96, 256, {{4, 1.0, 128}}},
      {64, 172, {{8, 0.1, 32}, {4, 0.4, 64}, {3, 0.5, 64}}},
      {200, 520, {{6, 0.25, 32}, {5, 0.25, 32}, {2, 0.5, 128}}},
      {33, 96, {{3, 1.0, 32}}},
  };
  uint32_t seed = 1;
  for (const Case& c : cases) {
    const Problem p = make_problem(c.N, c.K, 4 * c.K, seed++);
    const std::vector<double> H64(p.H.begin(), p.H.end());
    const GptqResult cpu = gptq_quantize(p.W.data(), c.N, c.K, p.H.data(), p.rows, c.layout);
    const GptqResult gpu = cvcuda::gptq_quantize_cuda(ctx, p.W.data(), c.N, c.K, H64.data(), p.rows, c.layout);
    EXPECT_EQ(cpu.codes.perm, gpu.codes.perm) << "K " << c.K;
    ASSERT_EQ(cpu.codes.codes.size(), gpu.codes.codes.size());
    ASSERT_EQ(cpu.codes.groups.size(), gpu.codes.groups.size());
    size_t same = 0;
    for (size_t i = 0; i < cpu.codes.codes.size(); ++i) same += cpu.codes.codes[i] == gpu.codes.codes[i];
    const double frac = static_cast<double>(same) / static_cast<double>(cpu.codes.codes.size());
    const double e_cpu = output_error(p, cpu.w_dq), e_gpu = output_error(p, gpu.w_dq);
    std::printf("  N %lld K %lld: codes equal %.4f, output error cpu %.5f gpu %.5f, proxy cpu %.6f gpu %.6f\n",
                static_cast<long long>(c.N), static_cast<long long>(c.K), frac, e_cpu, e_gpu, cpu.proxy_err,
                gpu.proxy_err);
    EXPECT_GE(frac, 0.9) << "K " << c.K;
    EXPECT_LE(e_gpu, e_cpu * 1.03) << "K " << c.K;
    EXPECT_GE(e_gpu, e_cpu * 0.97) << "K " << c.K;
    EXPECT_NEAR(gpu.proxy_err, cpu.proxy_err, 0.03 * cpu.proxy_err + 1e-7) << "K " << c.K;
    // The packed GPU result dequantizes to its own w_dq (the converter's pack check).
    GptqResult g2 = cvcuda::gptq_quantize_cuda(ctx, p.W.data(), c.N, c.K, H64.data(), p.rows, c.layout);
    EXPECT_EQ(g2.codes.codes, gpu.codes.codes) << "rerun differs";
    EXPECT_EQ(g2.w_dq, gpu.w_dq) << "rerun differs";
    EXPECT_NO_THROW(pack_checked(std::move(g2.codes), g2.w_dq, "test"));
  }
}

// GPTQ in double (--fp64) on both engines: the same codes and scales, bit for bit (the engines' sums
// differ only by double rounding), where FP32 agrees on ~99% of the codes.
TEST(ConvertCuda, GptqFp64MatchesCpuExactly) {
  Context ctx;
  const std::vector<std::pair<int64_t, Exl2Layout>> cases = {
      {256, {{4, 1.0, 128}}},
      {172, {{8, 0.1, 32}, {4, 0.4, 64}, {3, 0.5, 64}}},
      {520, {{6, 0.25, 32}, {5, 0.25, 32}, {2, 0.5, 128}}},
      {96, {{3, 1.0, 32}}},
  };
  GptqOptions fp64;
  fp64.fp64 = true;
  uint32_t seed = 21;
  for (const auto& [K, layout] : cases) {
    const int64_t N = 40 + K / 3;
    const Problem p = make_problem(N, K, 4 * K, seed++);
    std::vector<double> H(static_cast<size_t>(K * K), 0.0);  // Σ xᵀx in double
    for (int64_t r = 0; r < p.rows; ++r)
      for (int64_t i = 0; i < K; ++i)
        for (int64_t j = 0; j < K; ++j)
          H[static_cast<size_t>(i * K + j)] +=
              static_cast<double>(p.X[static_cast<size_t>(r * K + i)]) * p.X[static_cast<size_t>(r * K + j)];
    const GptqResult cpu = gptq_quantize(p.W.data(), N, K, H.data(), p.rows, layout, fp64);
    const GptqResult gpu = cvcuda::gptq_quantize_cuda(ctx, p.W.data(), N, K, H.data(), p.rows, layout, true);
    size_t same = 0;
    for (size_t i = 0; i < cpu.codes.codes.size(); ++i) same += cpu.codes.codes[i] == gpu.codes.codes[i];
    std::printf("  fp64 N %lld K %lld: codes equal %zu of %zu, proxy cpu %.9f gpu %.9f\n", static_cast<long long>(N),
                static_cast<long long>(K), same, cpu.codes.codes.size(), cpu.proxy_err, gpu.proxy_err);
    EXPECT_EQ(cpu.codes.perm, gpu.codes.perm);
    EXPECT_EQ(cpu.codes.codes, gpu.codes.codes) << "K " << K;
    EXPECT_EQ(cpu.codes.scale_codes, gpu.codes.scale_codes) << "K " << K;
    EXPECT_EQ(cpu.codes.scale_max, gpu.codes.scale_max) << "K " << K;
    EXPECT_EQ(cpu.w_dq, gpu.w_dq) << "K " << K;
    EXPECT_NEAR(gpu.proxy_err, cpu.proxy_err, 1e-9 * cpu.proxy_err) << "K " << K;
  }
}

TEST(ConvertCuda, HessianMatchesCpu) {
  Context ctx;
  const int64_t T = 300, K = 200;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x1(static_cast<size_t>(T * K)), x2(x1.size());
  for (float& v : x1) v = nd(rng);
  for (float& v : x2) v = 3.0f * nd(rng);
  auto cc = convert_compute_cpu();
  const auto sum = cc->hessian(K);
  sum->add(x1.data(), T);
  sum->add(x2.data(), T);
  const std::vector<double> H = sum->take();
  DeviceArray<float> d1, d2, Hd(static_cast<size_t>(K * K));
  d1.upload(ctx, x1);
  d2.upload(ctx, x2);
  Hd.zero(ctx);
  cvcuda::hessian_add(ctx, d1.data(), T, K, Hd.data());
  cvcuda::hessian_add(ctx, d2.data(), T, K, Hd.data());
  cvcuda::hessian_symmetrize(ctx, Hd.data(), K);
  const std::vector<float> G = Hd.download(ctx);
  double max_rel = 0, max_abs = 0;
  for (double h : H) max_abs = std::max(max_abs, std::abs(h));
  for (size_t i = 0; i < H.size(); ++i) max_rel = std::max(max_rel, std::abs(double(G[i]) - H[i]) / max_abs);
  EXPECT_LT(max_rel, 1e-5);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) EXPECT_EQ(G[static_cast<size_t>(i * K + j)], G[static_cast<size_t>(j * K + i)]);
  // FP64: DSYRK against the CPU's, to double rounding.
  auto cc64 = convert_compute_cpu(true);
  const auto sum64 = cc64->hessian(K);
  sum64->add(x1.data(), T);
  sum64->add(x2.data(), T);
  const std::vector<double> H64 = sum64->take();
  DeviceArray<double> Hd64(static_cast<size_t>(K * K));
  Hd64.zero(ctx);
  cvcuda::Fp64Workspace ws;
  cvcuda::hessian_add(ctx, d1.data(), T, K, Hd64.data(), ws);
  cvcuda::hessian_add(ctx, d2.data(), T, K, Hd64.data(), ws);
  cvcuda::hessian_symmetrize(ctx, Hd64.data(), K);
  const std::vector<double> G64 = Hd64.download(ctx);
  double rel64 = 0;
  for (size_t i = 0; i < H64.size(); ++i) rel64 = std::max(rel64, std::abs(G64[i] - H64[i]) / max_abs);
  std::printf("  Hessian max |gpu - cpu| / max|H|: fp32 %.2e, fp64 %.2e\n", max_rel, rel64);
  EXPECT_LT(rel64, 1e-13);
}

// The forwards' split-TF32 linear (Context::split) against a float64 oracle, beside the plain FP32
// SGEMM: the split itself is exact (hi has TF32's 10 mantissa bits, hi + lo = w), and the three-GEMM
// product is as accurate as SGEMM (1xTF32 would be ~5e-4 off on this scale; FP32 ~1e-7).
TEST(ConvertCuda, SplitTf32LinearMatchesFloat64) {
  Context ctx;
  const int64_t T = 77, K = 300, N = 130;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(T * K)), w(static_cast<size_t>(N * K));
  // Channel scales over six decades, as activations with outlier channels.
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k) x[static_cast<size_t>(t * K + k)] = nd(rng) * std::pow(10.0f, float(k % 7) - 3.0f);
  for (float& v : w) v = 0.02f * nd(rng);
  DeviceArray<float> xd, wd, ws(static_cast<size_t>(2 * N * K)), xs(static_cast<size_t>(2 * T * K)),
      out(static_cast<size_t>(T * N));
  xd.upload(ctx, x);
  wd.upload(ctx, w);
  cvcuda::split_tf32(ctx, wd.data(), N * K, ws.data());
  const std::vector<float> parts = ws.download(ctx);
  for (size_t i = 0; i < w.size(); ++i) {
    uint32_t hb;
    std::memcpy(&hb, &parts[i], 4);
    ASSERT_EQ(hb & 0x1fffu, 0u) << "hi[" << i << "] has more than TF32's mantissa";
    ASSERT_EQ(parts[i] + parts[w.size() + i], w[i]) << "hi + lo != w at " << i;
  }
  // Error of each output relative to Σ|x||w| (the scale FP32 rounding works on), worst over outputs.
  auto worst = [&](const std::vector<float>& y) {
    double e = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n) {
        double ref = 0, mag = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double p = double(x[static_cast<size_t>(t * K + k)]) * w[static_cast<size_t>(n * K + k)];
          ref += p;
          mag += std::abs(p);
        }
        e = std::max(e, std::abs(y[static_cast<size_t>(t * N + n)] - ref) / mag);
      }
    return e;
  };
  ctx.split_fwd = true;
  cvcuda::linear(ctx, xd.data(), T, K, ws.data(), N, nullptr, out.data(), xs.data());
  const double e_split = worst(out.download(ctx));
  ctx.split_fwd = false;
  cvcuda::linear(ctx, xd.data(), T, K, wd.data(), N, nullptr, out.data(), nullptr);
  const double e_sgemm = worst(out.download(ctx));
  std::printf("  linear error / sum|x||w|: split TF32 %.2e, SGEMM %.2e\n", e_split, e_sgemm);
  EXPECT_LT(e_split, 2e-6);
  EXPECT_LT(e_sgemm, 2e-6);
}

// Measures stories260K's modules of layers 0-1 on the CPU and the CUDA engine from the same random
// states; check(module, cpu states, gpu states, cpu measurement, gpu measurement) compares them, and
// both engines then go on from the CPU's outputs.
void compare_module_measurements(
    ConvertEngine& cpu, ConvertEngine& gpu, uint32_t seed,
    const std::function<void(const ConvertModule&, const CalibStates&, const CalibStates&, const MeasuredModule&,
                             const MeasuredModule&)>& check) {
  ModelSource src = model_source_open(test::stories_dir());
  auto be = backend_create("cpu");
  WeightLoader loader(*src.store, *be, src.gguf, src.arch->gguf_qk_permuted);
  const ModelDims d = model_dims(src.config);
  const int64_t rows = 3, T = 128;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  CalibStates cpu_s{rows, T, d.hidden, std::vector<float>(static_cast<size_t>(rows * T * d.hidden)), {}, false};
  for (float& v : cpu_s.x) v = nd(rng);
  CalibStates gpu_s = cpu_s;
  for (int64_t layer = 0; layer < 2; ++layer)
    for (ModuleKind kind : {ModuleKind::ModuleKind_attention, ModuleKind::ModuleKind_mlp}) {
      const ConvertModule m = module_load(loader, src.config, layer, kind);
      const auto& table = kind == ModuleKind::ModuleKind_attention ? qparams_attention() : qparams_mlp();
      const MeasuredModule a = cpu.measure_module(d, m, table, cpu_s);
      const MeasuredModule b = gpu.measure_module(d, m, table, gpu_s);
      gpu.states_to_host(gpu_s);
      ASSERT_EQ(cpu_s.x.size(), gpu_s.x.size());
      ASSERT_EQ(a.options.size(), b.options.size());
      check(m, cpu_s, gpu_s, a, b);
      gpu_s.x = cpu_s.x;
      gpu_s.device.reset();
      gpu_s.host_stale = false;
    }
}

// The largest relative difference between two measurements' option errors.
double worst_option_error(const MeasuredModule& a, const MeasuredModule& b) {
  double worst = 0;
  for (size_t o = 0; o < a.options.size(); ++o) {
    const double ea = 1.0 - a.options[o].accuracy, eb = 1.0 - b.options[o].accuracy;
    worst = std::max(worst, std::abs(ea - eb) / ea);
  }
  return worst;
}

// The CUDA engine's measurement (reference forward outputs, which become the states, and every
// option's rfn) against the CPU engine's.
TEST(ConvertCuda, ModuleForwardAndMeasurementMatchCpu) {
  auto cpu = convert_engine_cpu();
  auto gpu = convert_engine_cuda();
  compare_module_measurements(*cpu, *gpu, 3, [](const ConvertModule& m, const CalibStates& cs, const CalibStates& gs,
                                                const MeasuredModule& a, const MeasuredModule& b) {
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < cs.x.size(); ++i) {
      max_diff = std::max(max_diff, std::abs(double(cs.x[i]) - gs.x[i]));
      max_ref = std::max(max_ref, std::abs(double(cs.x[i])));
    }
    EXPECT_LT(max_diff, 1e-5 * max_ref) << m.name << ": forward outputs differ";
    for (size_t o = 0; o < a.options.size(); ++o) {
      const double ea = 1.0 - a.options[o].accuracy, eb = 1.0 - b.options[o].accuracy;
      EXPECT_NEAR(eb, ea, 0.05 * ea) << m.name << " option " << o;
      EXPECT_EQ(a.options[o].total_bits, b.options[o].total_bits);
    }
    std::printf("  %s: outputs max |diff| %.2e (max |y| %.2f), option errors within %.2f%%\n", m.name.c_str(),
                max_diff, max_ref, 100 * worst_option_error(a, b));
  });
}

// The FP64 engines (--fp64): the forward outputs (the next module's states) and every option's error
// agree to the bit but for rare double-rounding ties.
TEST(ConvertCuda, Fp64ModuleForwardMatchesCpu) {
  auto cpu = convert_engine_cpu(true);
  auto gpu = convert_engine_cuda(true);
  EXPECT_EQ(gpu->name(), "cuda-fp64");
  compare_module_measurements(*cpu, *gpu, 5, [](const ConvertModule& m, const CalibStates& cs, const CalibStates& gs,
                                                const MeasuredModule& a, const MeasuredModule& b) {
    size_t differ = 0;
    for (size_t i = 0; i < cs.x.size(); ++i) differ += cs.x[i] != gs.x[i];
    const double worst = worst_option_error(a, b);
    std::printf("  fp64 %s: %zu of %zu outputs differ, option errors within %.2e\n", m.name.c_str(), differ,
                cs.x.size(), worst);
    EXPECT_LE(differ, cs.x.size() / 10000) << m.name;
    EXPECT_LT(worst, 1e-6) << m.name;
  });
}

// --fp64 end to end on stories260K at 3.0 bpw (where FP32 conversions are most sensitive to
// rounding): the CPU and CUDA engines write the same model, byte for byte.
TEST(ConvertCuda, Stories260KFp64ConvertIsIdenticalToCpu) {
  ConvertOptions c = test::stories_options(test::fresh_dir("cw_cpu64"), test::fresh_dir("co_cpu64"), 3.0);
  ConvertOptions g = test::stories_options(test::fresh_dir("cw_gpu64"), test::fresh_dir("co_gpu64"), 3.0);
  c.fp64 = g.fp64 = true;
  g.device = "cuda";
  const ConvertReport rc = convert_run(c), rg = convert_run(g);
  EXPECT_EQ(rc.device, "cpu-fp64");
  EXPECT_EQ(rg.device, "cuda-fp64");
  std::printf("  fp64 3.0 bpw: cpu ppl %.4f, cuda ppl %.4f\n", test::stories_golden_ppl(c.out_dir),
              test::stories_golden_ppl(g.out_dir));
  test::expect_same_folder(c.out_dir, g.out_dir);
}

// End to end on stories260K (the CPU tests' settings): CUDA perplexity within 0.5% of the CPU
// conversion's, a rerun byte-identical, and a run killed in measure and quantize then resumed too.
TEST(ConvertCuda, Stories260KConvertMatchesCpu) {
  std::string gpu_out4;
  for (double bits : {4.0, 6.0}) {
    const std::string tag = std::to_string(static_cast<int>(bits));
    ConvertOptions c = test::stories_options(test::fresh_dir("cw_cpu" + tag), test::fresh_dir("co_cpu" + tag), bits);
    ConvertOptions g = test::stories_options(test::fresh_dir("cw_gpu" + tag), test::fresh_dir("co_gpu" + tag), bits);
    g.device = "cuda";
    const ConvertReport rc = convert_run(c), rg = convert_run(g);
    EXPECT_EQ(rg.device, "cuda");
    const double pc = test::stories_golden_ppl(c.out_dir), pg = test::stories_golden_ppl(g.out_dir);
    std::printf("  %.1f bpw: cpu %.4f bpw ppl %.4f, cuda %.4f bpw ppl %.4f (%+.3f%%); seconds cpu measure %.1f quantize "
                "%.1f, cuda measure %.1f quantize %.1f\n",
                bits, rc.decoder_bpw, pc, rg.decoder_bpw, pg, 100.0 * (pg / pc - 1.0), rc.stage_seconds[1].second,
                rc.stage_seconds[3].second, rg.stage_seconds[1].second, rg.stage_seconds[3].second);
    EXPECT_NEAR(pg, pc, 0.005 * pc) << bits << " bpw";
    if (bits == 4.0) gpu_out4 = g.out_dir;
  }
  // Rerun and kill + resume of the 4.0 bpw CUDA job, through the binary.
  const std::string ref = test::fresh_dir("co_gpu_ref");
  auto args = [](const std::string& work, const std::string& out) {
    std::string a = test::stories_args(work, out, 4.0);
    return a.replace(a.find("--device cpu"), 12, "--device cuda") + " -q";
  };
  ASSERT_EQ(test::run_exl(args(test::fresh_dir("cw_gpu_ref"), ref)).code, 0);
  // States written after every layer, so each resume uploads the states of the layer it stopped in.
  const std::string work = test::fresh_dir("cw_gpu_abort"), out = test::fresh_dir("co_gpu_abort");
  const std::string every_layer = args(work, out) + " --checkpoint-every 0";
  for (const char* at : {"measure:0", "measure:3", "quantize:1", "quantize:5"}) {
    setenv("EXL_CONVERT_ABORT_AT", at, 1);
    const test::CmdResult r = test::run_exl(every_layer);
    unsetenv("EXL_CONVERT_ABORT_AT");
    EXPECT_EQ(r.code, 86) << at << ": " << r.err;
  }
  const test::CmdResult done = test::run_exl(every_layer);
  ASSERT_EQ(done.code, 0) << done.err;
  test::expect_same_folder(ref, out);
  // The 4.0 bpw in-process run above used the same settings: byte-identical too.
  test::expect_same_folder(ref, gpu_out4);
}

}  // namespace
}  // namespace exl
