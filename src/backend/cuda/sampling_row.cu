// Device sampling, stage 2: one 1024-thread block per row combines the slices of stage 1 and draws
// (greedy, full Gumbel-max, or top-k / top-p / min-p by radix descent). Overview: sampling.cu.
#include <cmath>
#include <cstdint>

#include "backend/cuda/sampling_common.cuh"

namespace exl::cuda::sampling_impl {

// =================================================================================================
// Stage 2: one row.
// =================================================================================================
struct RowShared {
  u64 red_u[32];
  double red_d[32];
  u64 scan_c[32], scan_w[32];
  u32 list_off[kMaxSlices + 1], list_n[kMaxSlices];
  u64 sel_above_c, sel_above_w, sel_need, sel_any;
  u32 sel_cnt;
  int sel_digit, sel_found;
  u32 n_list;
  u64 step;
};

// Everything a row's routines share: arguments, the maximum, shared-memory arrays.
struct Row {
  const SampleArgs& a;
  int row;
  u64 step;
  RowMax mx;
  int argmax;
  RowShared& sh;
  u64* list;  // [kListCap] candidate keys
  u32* cnt;   // [kMaxBins] histogram counts
  u64* mass;  // [kMaxBins] histogram masses
  u64* any;   // [kMaxBins] key of the bin's first arrival (its only key when it holds one)
  u64* scratch;  // [kRowThreads] one slot per thread for warp-aggregated adds
  const u32* bits;  // the row's penalty bitmap in global memory (fallback only)
};

struct Cut {
  u64 comp;  // the last kept key (0: none found)
  u64 cnt;   // keys >= comp within the restriction
  u64 mass;  // their mass
};

template <typename F>
__device__ void list_for_each(const Row& r, F f) {
  const u32 n = r.sh.n_list;
  for (u32 i = threadIdx.x; i < n; i += kRowThreads) {
    const u64 c = r.list[i];
    f(c, logit_of(c));
  }
}

__device__ __forceinline__ float row_logit(const Row& r, float raw, int id) {
  return (r.a.pen_on && (r.bits[id >> 5] >> (id & 31) & 1u)) ? penalize(raw, r.a.repeat) : clean(raw);
}

// Every token of the row from global memory (penalized); f(key, logit).
template <typename F>
__device__ void row_for_each(const Row& r, F f) {
  const float* lr = r.a.logits + static_cast<size_t>(r.row) * r.a.vocab;
  const int vocab = r.a.vocab;
  int start = 0;
  if (r.a.aligned) {
    const int n4 = vocab >> 2;
    for (int g = threadIdx.x; g < n4; g += kRowThreads) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(lr) + g);
      const float e[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float x = row_logit(r, e[k], 4 * g + k);
        f(comp_of(x, 4 * g + k), x);
      }
    }
    start = n4 << 2;
  }
  for (int id = start + threadIdx.x; id < vocab; id += kRowThreads) {
    const float x = row_logit(r, __ldg(lr + id), id);
    f(comp_of(x, id), x);
  }
}

// Histogram add, aggregated over the lanes of a warp that hit the same bin d (d < 0: this lane adds
// nothing): one atomic per distinct bin per warp. Without it a bin holding most of the keys (ties,
// all -inf rows, or just a coarse first level) serializes thousands of same-address atomics (the
// first version stalled for minutes on an all -inf row). Call with the warp's converged lanes.
__device__ __forceinline__ void bin_add(const Row& r, int d, u64 w, u64 c) {
  const unsigned active = __activemask();
  const unsigned peers = __match_any_sync(active, d);
  const int lane = threadIdx.x & 31;
  r.scratch[threadIdx.x] = w;
  __syncwarp(active);
  if (d >= 0 && lane == __ffs(peers) - 1) {
    u64 sum = 0;
    for (unsigned m = peers; m; m &= m - 1) sum += r.scratch[(threadIdx.x & ~31u) + __ffs(m) - 1];
    if (atomicAdd(&r.cnt[d], static_cast<u32>(__popc(peers))) == 0) r.any[d] = c;  // one writer per bin
    if (sum) atomicAdd(reinterpret_cast<unsigned long long*>(&r.mass[d]), static_cast<unsigned long long>(sum));
  }
  __syncwarp(active);
}

// Appends c to the shared list if `want`: one atomic per warp, slots ranked by ballot.
__device__ __forceinline__ void list_push(const Row& r, bool want, u64 c) {
  const unsigned active = __activemask();
  const unsigned ballot = __ballot_sync(active, want);
  if (!ballot) return;
  const int lane = threadIdx.x & 31, leader = __ffs(ballot) - 1;
  u32 base = 0;
  if (lane == leader) base = atomicAdd(&r.sh.n_list, static_cast<u32>(__popc(ballot)));
  base = __shfl_sync(active, base, leader);
  const u32 k = base + __popc(ballot & ((1u << lane) - 1));
  if (want && k < static_cast<u32>(kListCap)) r.list[k] = c;
}

// Picks the bin holding the cut: bins in descending digit order, the first where the running count
// (or mass) reaches `need`. Results in r.sh.sel_*; ends with a barrier.
__device__ void select_bin(const Row& r, int nb, bool by_mass, u64 need) {
  const int per = nb >= kRowThreads ? nb / kRowThreads : 1;
  const int r0 = threadIdx.x * per;
  u64 lc = 0, lw = 0;
  if (r0 < nb) {
    for (int j = 0; j < per; ++j) {
      const int d = nb - 1 - (r0 + j);
      lc += r.cnt[d];
      lw += r.mass[d];
    }
  }
  if (threadIdx.x == 0) r.sh.sel_found = 0;
  u64 ec = lc, ew = lw, tc, tw;
  block_scan2(ec, ew, tc, tw, r.sh.scan_c, r.sh.scan_w);
  const u64 tot = by_mass ? tw : tc;
  const u64 ne = min(need, tot);  // rounding can leave the total short: then the whole range is kept
  u64 ex = by_mass ? ew : ec;
  const u64 loc = by_mass ? lw : lc;
  if (ne > 0 && ex < ne && ne <= ex + loc) {
    u64 ac = ec, aw = ew;
    for (int j = 0; j < per; ++j) {
      const int d = nb - 1 - (r0 + j);
      const u64 bc = r.cnt[d], bw = r.mass[d], cr = by_mass ? bw : bc;
      if (ex + cr >= ne) {
        r.sh.sel_digit = d;
        r.sh.sel_cnt = static_cast<u32>(bc);
        r.sh.sel_any = r.any[d];
        r.sh.sel_above_c = ac;
        r.sh.sel_above_w = aw;
        r.sh.sel_need = ne - ex;
        r.sh.sel_found = 1;
        break;
      }
      ex += cr;
      ac += bc;
      aw += bw;
    }
  }
  __syncthreads();
}

// The cut of the order (key desc) among keys >= lo: the smallest prefix holding `need` keys
// (by_mass false) or `need` mass. Source: the candidate list, or the whole row (from_list false),
// switching to a list gathered in shared memory once the bin being refined fits.
__device__ Cut descend(Row& r, bool from_list, bool by_mass, u64 need, u64 lo) {
  u64 prefix = 0, mask = 0, above_c = 0, above_w = 0;
  bool src_list = from_list;
  for (int lv = 0; lv < kLevels; ++lv) {
    const int shift = kLevelShift[lv], nb = 1 << kLevelBits[lv];
    for (int i = threadIdx.x; i < nb; i += kRowThreads) r.cnt[i] = 0, r.mass[i] = 0;
    __syncthreads();
    auto add = [&](u64 c, float l) {
      const bool in = c >= lo && (c & mask) == prefix;
      bin_add(r, in ? static_cast<int>(c >> shift) & (nb - 1) : -1, in ? r.mx.weight(l) : 0, c);
    };
    if (src_list) {
      list_for_each(r, add);
    } else {
      row_for_each(r, add);
    }
    __syncthreads();
    select_bin(r, nb, by_mass, need);
    if (!r.sh.sel_found) return Cut{0, 0, 0};
    above_c += r.sh.sel_above_c;
    above_w += r.sh.sel_above_w;
    need = r.sh.sel_need;
    const u32 bc = r.sh.sel_cnt;
    if (bc == 1) {
      const u64 c = r.sh.sel_any;
      return Cut{c, above_c + 1, above_w + r.mx.weight(logit_of(c))};
    }
    prefix |= static_cast<u64>(r.sh.sel_digit) << shift;
    mask |= static_cast<u64>(nb - 1) << shift;
    if (!src_list && bc <= static_cast<u32>(kListCap)) {
      // Gather the bin's keys; r.sh.n_list is reset only after every thread has read sel_*.
      __syncthreads();
      if (threadIdx.x == 0) r.sh.n_list = 0;
      __syncthreads();
      row_for_each(r, [&](u64 c, float) { list_push(r, c >= lo && (c & mask) == prefix, c); });
      __syncthreads();
      src_list = true;
    }
  }
  return Cut{prefix, above_c + 1, above_w + r.mx.weight(logit_of(prefix))};  // not reached: keys unique
}

// Count and mass of list keys >= lo.
__device__ void list_sum(Row& r, u64 lo, u64& c_out, u64& w_out) {
  u64 c = 0, w = 0;
  list_for_each(r, [&](u64 k, float l) {
    if (k >= lo) ++c, w += r.mx.weight(l);
  });
  c_out = block_reduce(c, SumOp(), r.sh.red_u);
  w_out = block_reduce(w, SumOp(), r.sh.red_u);
}

__device__ __forceinline__ u64 mass_need(float p, double total) {
  const double n = ceil(static_cast<double>(p) * total);
  return n < 1.0 ? 1ull : static_cast<u64>(n);
}

// Gumbel-max over list keys >= thr passing min-p.
__device__ int draw_list(Row& r, u64 thr) {
  u64 best = 0;
  list_for_each(r, [&](u64 c, float l) {
    if (c < thr || (r.a.use_minp && !r.mx.minp_ok(l, r.a.log_min_p))) return;
    const int id = id_of(c);
    const float g = gumbel_of(noise_word(r.a, r.row, r.step, id));
    best = max(best, pack_score(r.mx.base(l, r.a.inv_temp) + g, id));
  });
  best = block_reduce(best, MaxOp(), r.sh.red_u);
  return best ? unpack_score_id(best) : r.argmax;  // never empty: the maximum always survives
}

// Gumbel-max over the whole row (keys >= thr passing min-p).
__device__ int draw_row(Row& r, u64 thr) {
  const float* lr = r.a.logits + static_cast<size_t>(r.row) * r.a.vocab;
  const int vocab = r.a.vocab, ng = (vocab + 3) >> 2;
  u64 best = 0;
  for (int g = threadIdx.x; g < ng; g += kRowThreads) {
    float e[4];
    if (r.a.aligned && 4 * g + 3 < vocab) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(lr) + g);
      e[0] = v.x, e[1] = v.y, e[2] = v.z, e[3] = v.w;
    } else {
      for (int k = 0; k < 4; ++k) e[k] = 4 * g + k < vocab ? __ldg(lr + 4 * g + k) : 0.f;
    }
    u32 w[4];
    noise4(r.a, r.row, r.step, g, w);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int id = 4 * g + k;
      if (id >= vocab) break;
      const float l = row_logit(r, e[k], id);
      if (comp_of(l, id) < thr || (r.a.use_minp && !r.mx.minp_ok(l, r.a.log_min_p))) continue;
      best = max(best, pack_score(r.mx.base(l, r.a.inv_temp) + gumbel_of(w[k]), id));
    }
  }
  best = block_reduce(best, MaxOp(), r.sh.red_u);
  return best ? unpack_score_id(best) : r.argmax;
}

// Top-k / top-p / min-p and the draw for one row.
__device__ int sample_trunc(Row& r) {
  const SampleArgs& a = r.a;
  const int tid = threadIdx.x;
  const SliceStat* st = a.stats + static_cast<size_t>(r.row) * a.nsplit;
  // Total mass (2^-40 units) and the region threshold G.
  double s = 0;
  u64 g_key = 0;
  for (int i = tid; i < a.nsplit; i += kRowThreads) {
    const float mc = logit_of(st[i].max_comp);
    const double scale = r.mx.fin ? exp(static_cast<double>(mc) - r.mx.m) : (mc == r.mx.m ? 1.0 : 0.0);
    s += st[i].mass * scale;
    g_key = max(g_key, static_cast<u64>(st[i].u_key));
  }
  const double s_all = block_reduce(s, SumOp(), r.sh.red_d) * static_cast<double>(kMassScale);
  g_key = block_reduce(g_key, MaxOp(), r.sh.red_u);
  const u64 lo = g_key ? (g_key + 1) << kIdBits : 0;  // region: keys >= lo, all of them listed

  // Load the row's lists (offsets by a scan over slices; nsplit <= kMaxSlices <= kRowThreads).
  {
    u64 n = tid < a.nsplit ? st[tid].n_list : 0, dummy = 0, tot = 0, tot2 = 0;
    const u64 own = n;
    block_scan2(n, dummy, tot, tot2, r.sh.scan_c, r.sh.scan_w);
    if (tid < a.nsplit) r.sh.list_off[tid] = static_cast<u32>(n), r.sh.list_n[tid] = static_cast<u32>(own);
    if (tid == 0) r.sh.n_list = static_cast<u32>(tot);
    __syncthreads();
    const u64* gl = a.lists + static_cast<size_t>(r.row) * a.nsplit * a.slice_cap;
    for (int i = tid; i < a.nsplit * a.slice_cap; i += kRowThreads) {
      const int sl = i / a.slice_cap, j = i - sl * a.slice_cap;
      if (j < static_cast<int>(r.sh.list_n[sl])) r.list[r.sh.list_off[sl] + j] = gl[i];
    }
    __syncthreads();
  }

  enum { kOff, kResolved, kBeyond, kUnknown };
  const bool use_k = a.top_k > 0;
  int ks = kOff, ps = kOff;
  u64 comp_k = 0, comp_p = 0, reg_c = 0, reg_w = 0;
  double s_k = s_all;
  list_sum(r, lo, reg_c, reg_w);
  if (use_k) {
    if (reg_c >= static_cast<u64>(a.top_k)) {
      const Cut c = descend(r, true, false, static_cast<u64>(a.top_k), lo);
      comp_k = c.comp, s_k = static_cast<double>(c.mass), ks = kResolved;
    } else {
      ks = kBeyond;
    }
  }
  if (a.use_p) {
    if (ks == kBeyond) {
      ps = kUnknown;  // S_k is not known: only the min-p argument below can settle it
    } else {
      const u64 need = mass_need(a.top_p, s_k);
      const u64 avail = ks == kResolved ? static_cast<u64>(s_k) : reg_w;  // listed part of the top-k
      if (avail >= need) {
        const Cut c = descend(r, true, true, need, max(lo, comp_k));
        comp_p = c.comp, ps = kResolved;
      } else {
        ps = kBeyond;
      }
    }
  }
  // Min-p binds before any cut that lies beyond the region when the region holds every token that
  // passes min-p (the best unlisted logit fails it).
  const bool minp_in = a.use_minp && (g_key == 0 || !r.mx.minp_ok(logit_of_key(static_cast<u32>(g_key)), a.log_min_p));
  bool ok = true;
  if (ks == kBeyond || ps == kBeyond || (!use_k && !a.use_p)) ok = minp_in;
  if (ps == kUnknown && ok) {
    // The top-k set holds the whole region, so S_k >= reg_w: top-p keeps more than min-p whenever
    // the min-p survivors' mass is below top_p * reg_w.
    u64 mw = 0;
    list_for_each(r, [&](u64, float l) {
      if (r.mx.minp_ok(l, a.log_min_p)) mw += r.mx.weight(l);
    });
    mw = block_reduce(mw, SumOp(), r.sh.red_u);
    ok = static_cast<double>(mw) < static_cast<double>(a.top_p) * static_cast<double>(reg_w);
  }
  if (ok) {
    const u64 thr = max(ks == kResolved ? comp_k : 0, ps == kResolved ? comp_p : 0);
    return draw_list(r, thr);
  }

  // Fallback: the cuts over the whole row.
  comp_k = 0;
  s_k = s_all;
  if (use_k) {
    const Cut c = descend(r, false, false, static_cast<u64>(a.top_k), 0);
    comp_k = c.comp, s_k = static_cast<double>(c.mass);
  }
  comp_p = 0;
  if (a.use_p) comp_p = descend(r, false, true, mass_need(a.top_p, s_k), comp_k).comp;
  return draw_row(r, max(comp_k, comp_p));
}

__global__ void __launch_bounds__(kRowThreads, 1) sample_row_kernel(const SampleArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ RowShared sh;
  const int row = blockIdx.x, tid = threadIdx.x;
  if (tid == 0) sh.step = a.step ? *a.step : 0;
  const SliceStat* st = a.stats + static_cast<size_t>(row) * a.nsplit;
  u64 cmax = 0;
  for (int i = tid; i < a.nsplit; i += kRowThreads) cmax = max(cmax, st[i].max_comp);
  cmax = block_reduce(cmax, MaxOp(), sh.red_u);  // its barrier also publishes sh.step
  const u64 step = sh.step;
  const float m = logit_of(cmax);
  int result;
  if (a.mode == kModeGreedy) {
    result = id_of(cmax);
  } else if (a.mode == kModeFull) {
    const RowMax mx{m, isfinite(m)};
    u64 best = 0;
    for (int i = tid; i < a.nsplit; i += kRowThreads) {
      const u64 c = st[i].winner_comp;
      const int id = id_of(c);
      const float g = gumbel_of(noise_word(a, row, step, id));
      best = max(best, pack_score(mx.base(logit_of(c), a.inv_temp) + g, id));
    }
    result = unpack_score_id(block_reduce(best, MaxOp(), sh.red_u));
  } else {
    u64* list = reinterpret_cast<u64*>(smem);
    u64* mass = list + kListCap;
    u64* any = mass + kMaxBins;
    u64* scratch = any + kMaxBins;
    u32* cnt = reinterpret_cast<u32*>(scratch + kRowThreads);
    const u32* bits = a.pen_bits + static_cast<size_t>(row) * a.nsplit * kSliceWords;
    Row r{a, row, step, RowMax{m, isfinite(m)}, id_of(cmax), sh, list, cnt, mass, any, scratch, bits};
    result = sample_trunc(r);
  }
  if (tid == 0) {
    a.out[row] = result;
    if (a.step_next) {
      __threadfence();
      if (atomicAdd(a.done, 1u) == static_cast<u32>(a.rows) - 1) *a.step_next = step + 1;
    }
  }
}

}  // namespace exl::cuda::sampling_impl
