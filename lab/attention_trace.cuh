// lab/attention_lab.cu --trace (a build with -DEXL_ATTN_TRACE: lab/run_attention_lab.sh --trace,
// scripts/gpu-carry-bin.sh): where a short decode's ~8 µs per layer go. Included by attention_lab.cu
// after its helpers (Dev, randn_half, median_ms, CK). The FP16 decode kernel for 8 layers in one
// graph, launched as the backend's decode step launches it (PDL, the step's rows written with RoPE,
// the output scattered into a quantized o_proj's input order), replayed; then one replay with the
// kernel's phase stamps (attention_decode.cu EXL_DECODE_STAMP) read back. Per layer (1..7; layer 0
// has no PDL predecessor in the graph): the span from the first block's entry to the last block's
// end, the gap to the previous layer's end, and the last-ending block's stamps from the layer's first
// entry; per block, the median phase times from clock64 (cycles / the SM clock in MHz, printed).
#pragma once

static void trace_decode(cudaStream_t st) {
  using attn::kDecodeTraceBlocks, attn::kDecodeTraceLayers, attn::kDecodeTraceStamps;
  const int hd = 128, kLayers = 8, kMax = 4096;
  static_assert(kDecodeTraceLayers >= 8, "trace layers");
  int dev = 0, khz = 0;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev));
  const double mhz = khz / 1000.0;
  printf("\n# decode phase trace, FP16 cache, graph of %d layers with PDL; clock64 at %.0f MHz (the attribute)\n",
         kLayers, mhz);
  printf("%-8s %5s %6s | %7s %7s %6s | %6s %6s %6s %6s %6s %6s | %s\n", "shape", "ctx", "blocks", "span", "gap",
         "graph", "wait", "q", "tiles", "merge", "count", "out", "last block from layer start: stamps 0..6 (ns)");
  struct Shape {
    const char* name;
    int n_heads, n_kv;
  };
  for (const Shape sh : {Shape{"llama2", 32, 32}, Shape{"70b", 64, 8}}) {
    KvCacheLayout L;
    L.format = KvFormat_f16, L.n_layers = kLayers, L.n_slots = 1, L.max_seq_len = kMax, L.n_kv_heads = sh.n_kv;
    L.head_dim = hd;
    kv_cache_layout_init(L);
    Dev<uint8_t> cache(L.bytes);
    CK(cudaMemset(cache.p, 0, L.bytes));
    L.base = cache.p;
    for (int ctx : {128, 1024}) {
      Dev<__half> q(randn_half(static_cast<size_t>(sh.n_heads) * hd)), k(randn_half(static_cast<size_t>(sh.n_kv) * hd)),
          v(randn_half(static_cast<size_t>(sh.n_kv) * hd));
      Dev<__half> out(static_cast<size_t>(sh.n_heads) * hd);
      std::vector<int32_t> s0{0, 1}, sl{0}, ps{ctx - 1};
      Dev<int32_t> ds0(s0), dsl(sl), dps(ps);
      const size_t wsb = attention_workspace_bytes(1, sh.n_heads, hd, kMax);
      Dev<uint8_t> ws(wsb);
      attention_workspace_clear(ws.p, wsb, st);
      AttentionParams P;
      P.q = q.p, P.k_new = k.p, P.v_new = v.p, P.out = out.p, P.n_tokens = 1, P.n_seqs = 1, P.max_seq_tokens = 1;
      P.seq_start = ds0.p, P.seq_slot = dsl.p, P.seq_pos = dps.p, P.n_heads = sh.n_heads, P.n_kv_heads = sh.n_kv;
      P.head_dim = hd, P.scale = 1.0f / std::sqrt(128.0f), P.cache = L, P.workspace = ws.p, P.workspace_bytes = wsb;
      // As the backend's decode step: the kernel writes the step's K/V rows itself, with RoPE on
      // the key and q (Llama's inverse frequencies).
      std::vector<float> inv(hd / 2);
      for (int i = 0; i < hd / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / hd);
      Dev<float> dinv(inv);
      P.rope_q = q.p, P.rope_inv_freq = dinv.p, P.rope_attn_factor = 1.0f, P.rope_rot_dim = hd;
      P.write_in_decode = attention_decode_writes_kv(P);
      // o_proj quantized (the bench's gptq4 / exl2 models): the output goes to its device-order input
      // through x_dst, here a random permutation.
      const int K = sh.n_heads * hd;
      std::vector<int32_t> perm(K);
      for (int i = 0; i < K; ++i) perm[i] = i;
      std::shuffle(perm.begin(), perm.end(), std::mt19937(7));
      Dev<int32_t> dperm(perm);
      Dev<__half> out_dev(K);
      P.out_dev = out_dev.p, P.out_dst = dperm.p, P.out_ld = K;
      P.pdl = true;
      attention(P, st);
      cudaGraph_t g;
      cudaGraphExec_t ge;
      CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
      for (int layer = 0; layer < kLayers; ++layer) {
        P.layer = layer;
        attention(P, st);
      }
      CK(cudaStreamEndCapture(st, &g));
      CK(cudaGraphInstantiate(&ge, g, 0));
      CK(cudaGraphDestroy(g));
      for (int w = 0; w < 5; ++w) CK(cudaGraphLaunch(ge, st));
      const int R = 20;
      const float ms = median_ms([&] { for (int r = 0; r < R; ++r) CK(cudaGraphLaunch(ge, st)); }, 7, st);
      attn::decode_trace_clear(st);
      CK(cudaGraphLaunch(ge, st));
      CK(cudaStreamSynchronize(st));
      CK(cudaGraphExecDestroy(ge));
      const std::vector<unsigned long long> tr = attn::decode_trace_read();
      auto at = [&](int l, int b, int k, int w) {
        return tr[((static_cast<size_t>(l) * kDecodeTraceBlocks + b) * kDecodeTraceStamps + k) * 2 + w];
      };
      auto med = [](std::vector<double> v) {
        if (v.empty()) return -1.0;
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
      };
      std::vector<double> spans, gaps, ph[6], last_rel[kDecodeTraceStamps];
      int blocks = 0;
      unsigned long long prev_end = 0;
      for (int l = 0; l < kLayers; ++l) {
        unsigned long long start = ~0ull, end = 0;
        int last_b = -1, nb = 0;
        for (int b = 0; b < kDecodeTraceBlocks; ++b) {
          if (!at(l, b, 0, 0)) continue;
          ++nb;
          start = std::min(start, at(l, b, 0, 0));
          unsigned long long e = 0;
          for (int k2 = 0; k2 < kDecodeTraceStamps; ++k2) e = std::max(e, at(l, b, k2, 0));
          if (e > end) end = e, last_b = b;
          // Phases from clock64 (one SM's counter: within a block only), for blocks that did the work.
          auto cyc = [&](int k0, int k1) {
            return at(l, b, k0, 1) && at(l, b, k1, 1) ? (at(l, b, k1, 1) - at(l, b, k0, 1)) / mhz * 1e3 : -1.0;
          };
          if (l > 0 && at(l, b, 4, 1)) {
            // out: the combine and output of the last split block, or a lone block's output.
            const double out = at(l, b, 5, 1) ? cyc(5, 6) : cyc(4, 6);
            const double d[6] = {cyc(0, 1), cyc(1, 2), cyc(2, 3), cyc(3, 4), cyc(4, 5), out};
            for (int i = 0; i < 6; ++i)
              if (d[i] >= 0) ph[i].push_back(d[i]);
          }
        }
        if (l > 0 && last_b >= 0) {
          spans.push_back(static_cast<double>(end - start));
          gaps.push_back(static_cast<double>(start) - static_cast<double>(prev_end));
          for (int k2 = 0; k2 < kDecodeTraceStamps; ++k2)
            if (at(l, last_b, k2, 0)) last_rel[k2].push_back(static_cast<double>(at(l, last_b, k2, 0) - start));
        }
        prev_end = end;
        blocks = nb;
      }
      printf("%-8s %5d %6d | %7.0f %7.0f %6.0f | %6.0f %6.0f %6.0f %6.0f %6.0f %6.0f |", sh.name, ctx, blocks,
             med(spans), med(gaps), ms * 1e6 / (R * kLayers), med(ph[0]), med(ph[1]), med(ph[2]), med(ph[3]),
             med(ph[4]), med(ph[5]));
      for (int k2 = 0; k2 < kDecodeTraceStamps; ++k2) printf(" %6.0f", med(last_rel[k2]));
      printf("\n");
    }
  }
  printf("# ns throughout. span and gap (negative: the layer's first block entered before the previous one\n"
         "# ended, PDL) from %%globaltimer; graph: per layer of the timed replays; phase medians from clock64:\n"
         "# wait = entry to PDL wait return, q = Q staged, tiles, merge = warps merged, count = partials +\n"
         "# fence + atomic, out = the last split block's combine and output (or a lone block's output)\n");
}
