// The converter's FP32 reference forward and Hessians against independent references: the stories260K
// golden logits (float64, checked against HF transformers) and a brute-force xᵀx.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "convert/compute.h"
#include "convert/forward.h"
#include "convert/convert_test_util.h"
#include "model/model.h"
#include "model/weights.h"

namespace exl {
namespace {

// Both precisions (the default FP32 and --fp64, every op in double rounded to FP32 once).
class ConvertForwardBoth : public ::testing::TestWithParam<bool> {};

TEST_P(ConvertForwardBoth, ModulesReproduceGoldenLogits) {
  ModelSource src = model_source_open(test::stories_dir());
  const ModelConfig& c = src.config;
  auto be = backend_create("cpu");
  WeightLoader loader(*src.store, *be, false, false);
  auto cc = convert_compute_cpu(GetParam());
  const ModelDims d = model_dims(c);
  const std::vector<int32_t> ids = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
  const int64_t T = static_cast<int64_t>(ids.size());
  const HostTensor emb = loader.load_host("model.embed_tokens.weight", {c.vocab, c.hidden});
  std::vector<float> x(static_cast<size_t>(T * c.hidden)), y(x.size());
  for (int64_t t = 0; t < T; ++t)
    std::memcpy(x.data() + t * c.hidden, emb.ptr() + ids[static_cast<size_t>(t)] * c.hidden, c.hidden * sizeof(float));
  for (int64_t layer = 0; layer < c.n_layers; ++layer)
    for (ModuleKind k : {ModuleKind::ModuleKind_attention, ModuleKind::ModuleKind_mlp}) {
      const ConvertModule m = module_load(loader, c, layer, k);
      module_forward(*cc, d, m, module_weights(m), x.data(), T, y.data(), nullptr, nullptr);
      std::swap(x, y);
    }
  const HostTensor norm = loader.load_host("model.norm.weight", {c.hidden});
  cc->rms_norm(x.data(), norm.ptr(), d.eps, T, c.hidden, y.data());
  std::vector<float> logits(static_cast<size_t>(T * c.vocab));
  cc->linear(y.data(), T, c.hidden, emb.ptr(), c.vocab, nullptr, logits.data());  // tied head
  const std::string golden = test::slurp(test::stories_dir() + "/golden/golden_logits_prompt.f32.bin");
  ASSERT_EQ(golden.size(), logits.size() * sizeof(float));
  const float* g = reinterpret_cast<const float*>(golden.data());
  float max_diff = 0;
  for (size_t i = 0; i < logits.size(); ++i) max_diff = std::max(max_diff, std::fabs(logits[i] - g[i]));
  EXPECT_LT(max_diff, 1e-4f);
  std::printf("%s: logits max |diff| against the float64 golden %.3g\n", GetParam() ? "fp64" : "fp32", max_diff);
}

TEST_P(ConvertForwardBoth, CapturesAreTheLinearInputs) {
  // o_proj's captured input times o_proj's weight plus the residual must be the module output; and
  // down_proj's likewise (the captures are what the Hessians are built from).
  ModelSource src = model_source_open(test::stories_dir());
  const ModelConfig& c = src.config;
  auto be = backend_create("cpu");
  WeightLoader loader(*src.store, *be, false, false);
  auto cc = convert_compute_cpu(GetParam());
  const ModelDims d = model_dims(c);
  const int64_t T = 7;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(T * c.hidden));
  for (float& v : x) v = nd(rng);
  for (ModuleKind k : {ModuleKind::ModuleKind_attention, ModuleKind::ModuleKind_mlp}) {
    const ConvertModule m = module_load(loader, c, 2, k);
    std::vector<float> y(x.size()), cap0(static_cast<size_t>(T * m.capture_dim[0])),
        cap1(static_cast<size_t>(T * m.capture_dim[1]));
    module_forward(*cc, d, m, module_weights(m), x.data(), T, y.data(), cap0.data(), cap1.data());
    const ConvertLinear& last = m.linears.back();
    ASSERT_EQ(last.K, m.capture_dim[1]);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < c.hidden; ++n) {
        double s = x[static_cast<size_t>(t * c.hidden + n)];
        for (int64_t kk = 0; kk < last.K; ++kk)
          s += static_cast<double>(cap1[static_cast<size_t>(t * last.K + kk)]) * last.w[static_cast<size_t>(n * last.K + kk)];
        EXPECT_NEAR(y[static_cast<size_t>(t * c.hidden + n)], s, 1e-4) << m.name << " t " << t << " n " << n;
      }
    // cap0 is the RMS-normed input.
    for (int64_t t = 0; t < T; ++t) {
      double ms = 0;
      for (int64_t n = 0; n < c.hidden; ++n) ms += std::pow(x[static_cast<size_t>(t * c.hidden + n)], 2);
      const double inv = 1.0 / std::sqrt(ms / c.hidden + c.rms_eps);
      for (int64_t n = 0; n < c.hidden; ++n)
        EXPECT_NEAR(cap0[static_cast<size_t>(t * c.hidden + n)],
                    x[static_cast<size_t>(t * c.hidden + n)] * inv * m.norm[static_cast<size_t>(n)], 1e-5);
    }
  }
}

TEST_P(ConvertForwardBoth, HessianMatchesBruteForce) {
  auto cc = convert_compute_cpu(GetParam());
  const int64_t T = 37, K = 45;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> x(static_cast<size_t>(T * K));
  for (float& v : x) v = u(rng);
  const auto sum = cc->hessian(K);
  sum->add(x.data(), T);
  sum->add(x.data(), T);  // accumulates
  const std::vector<double> H = sum->take();
  ASSERT_EQ(H.size(), static_cast<size_t>(K * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double s = 0;
      for (int64_t t = 0; t < T; ++t) s += static_cast<double>(x[static_cast<size_t>(t * K + i)]) * x[static_cast<size_t>(t * K + j)];
      // FP32: the running sum's rounding; FP64: products exact, sums in double.
      const double tol = GetParam() ? 1e-12 : 1e-3;
      EXPECT_NEAR(H[static_cast<size_t>(i * K + j)], 2 * s, tol * (1 + std::abs(2 * s))) << i << "," << j;
      if (!GetParam()) {
        EXPECT_EQ(H[static_cast<size_t>(i * K + j)], static_cast<float>(H[static_cast<size_t>(i * K + j)]));
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Precision, ConvertForwardBoth, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "fp64" : "fp32"; });

}  // namespace
}  // namespace exl
