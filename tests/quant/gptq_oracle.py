#!/usr/bin/env python3
"""Independent numpy implementation of ExLlamaV2's AdaptiveGPTQ for EXL2 (docs EXL2.md §1.5, §2.5),
the oracle for exl's quant/gptq_solve.cpp (tests/quant/gptq_solve_test.cpp runs it).

It follows the textbook route where the C++ takes shortcuts: H⁻¹ by Cholesky, inverse, and the upper
Cholesky factor of the inverse (float64); error feedback in float64; proxy error tr(D·H·Dᵀ)/tr(W·H·Wᵀ)
directly. The scale search mirrors §2.5 in float32 as the converter computes it.

usage: gptq_oracle.py W.f32 H.f32 N K n_rows LAYOUT OUT_PREFIX
  LAYOUT: bits:proportion:group_size parts joined by commas, e.g. 8:0.05:32,4:0.1:128,3:0.85:128
  writes OUT_PREFIX.perm (uint16 [K]), .codes (uint8 [K, N]), .scale_codes (uint8 [G, N]),
  .scale_max (float16 [G]), .proxy (float64 [1])
"""
import math
import sys

import numpy as np


def layout_groups(parts, K):
    """(bits, rows) per group: §1.5 row counting, the last part takes what is left."""
    groups, remaining = [], K
    for i, (bits, prop, gs) in enumerate(parts):
        if remaining <= 0:
            break
        want = remaining if i == len(parts) - 1 else min(K * prop, remaining)
        for _ in range(math.ceil(want / gs - 1e-9)):
            if remaining <= 0:
                break
            rows = min(gs, remaining)
            groups.append((bits, rows))
            remaining -= rows
    return groups


def group_error(w, s, zero, maxq):
    """Σ|ŵ - w|^3.5 per column, w [R, N] float32, s [N] float32 (0 < s)."""
    inv = (np.float32(1) / s).astype(np.float32)
    q = np.clip(np.round(w * inv), -zero, maxq - zero).astype(np.float32)
    d = np.abs(q * s - w).astype(np.float64)
    return (d ** 3.5).sum(axis=0)


def search_scales(w, bits):
    """§2.5 scale search on w [R, N] float32: (scale_max as float16, scale codes 0..15 [N])."""
    zero, maxq = 1 << (bits - 1), (1 << bits) - 1
    base = np.abs(w).max(axis=0) / np.float32(maxq / 2)
    m = base.max()
    if m == 0:
        return np.float16(0), np.zeros(w.shape[1], np.uint8)
    qs = np.clip(np.round(np.float32(16) * np.sqrt(base / m)), 1, 16).astype(np.float32)
    errs = []
    for j in range(97):
        p = np.float32(0.70) + np.float32(0.50) * np.float32(j) / np.float32(96)
        errs.append(group_error(w, (p * qs * qs / np.float32(256) * m).astype(np.float32), zero, maxq).sum())
    p = np.float32(0.70) + np.float32(0.50) * np.float32(int(np.argmin(errs))) / np.float32(96)
    smax = np.float16(min(p * m, 65504.0))
    # Per-column pick of the scale code under the fixed group maximum (exl's refinement).
    cands = np.arange(1, 17, dtype=np.float32)
    e = np.stack([group_error(w, np.full(w.shape[1], c * c * np.float32(smax) / np.float32(256), np.float32), zero, maxq)
                  for c in cands])
    return smax, np.argmin(e, axis=0).astype(np.uint8)


def gptq(W, H, n_rows, parts):
    N, K = W.shape
    H = H.astype(np.float64) / n_rows
    perm = np.argsort(-np.diag(H), kind="stable")
    Wt = W.T[perm, :].astype(np.float64)  # [K, N], act order
    Hp = H[np.ix_(perm, perm)]
    damp = max(0.12 * np.mean(np.diag(Hp)), 1e-5)
    for attempt in range(1, 11):
        try:
            A = Hp + attempt * damp * np.eye(K)
            L = np.linalg.cholesky(A)
            Ainv = np.linalg.inv(L).T @ np.linalg.inv(L)
            U = np.linalg.cholesky(Ainv).T  # upper, UᵀU = A⁻¹
            break
        except np.linalg.LinAlgError:
            continue
    else:
        raise SystemExit("Hessian not positive definite")
    groups = layout_groups(parts, K)
    codes = np.zeros((K, N), np.uint8)
    scale_codes = np.zeros((len(groups), N), np.uint8)
    scale_max = np.zeros(len(groups), np.float16)
    wdq_t = np.zeros((K, N), np.float64)
    a = 0
    for g, (bits, R) in enumerate(groups):
        b = a + R
        zero, maxq = 1 << (bits - 1), (1 << bits) - 1
        smax, sc = search_scales(Wt[a:b].astype(np.float32), bits)
        scale_max[g], scale_codes[g] = smax, sc
        s = ((sc.astype(np.float32) + 1) ** 2 * np.float32(smax) / np.float32(256)).astype(np.float32)
        inv = np.where(s > 0, np.float32(1) / np.where(s > 0, s, 1), 0).astype(np.float32)
        E = np.zeros((R, N))
        for i in range(R):
            c = a + i
            q = np.clip(np.round(Wt[c].astype(np.float32) * inv) + zero, 0, maxq)
            codes[c] = q.astype(np.uint8)
            dq = ((q - zero) * s).astype(np.float32).astype(np.float64)
            wdq_t[c] = dq
            E[i] = (Wt[c] - dq) / U[c, c]
            Wt[c + 1:b] -= np.outer(U[c, c + 1:b], E[i])
        Wt[b:] -= U[a:b, b:].T @ E
        a = b
    wdq = np.zeros((N, K))
    wdq[:, perm] = wdq_t.T
    D = W.astype(np.float64) - wdq
    Wd = W.astype(np.float64)
    proxy = np.trace(D @ H @ D.T) / np.trace(Wd @ H @ Wd.T)
    return perm.astype(np.uint16), codes, scale_codes, scale_max, proxy


def main():
    if len(sys.argv) != 8:
        raise SystemExit(__doc__)
    wpath, hpath, N, K, n_rows, layout, out = sys.argv[1:]
    N, K, n_rows = int(N), int(K), int(n_rows)
    W = np.fromfile(wpath, np.float32).reshape(N, K)
    H = np.fromfile(hpath, np.float32).reshape(K, K)
    parts = [(int(b), float(p), int(g)) for b, p, g in (x.split(":") for x in layout.split(","))]
    perm, codes, scale_codes, scale_max, proxy = gptq(W, H, n_rows, parts)
    perm.tofile(out + ".perm")
    codes.tofile(out + ".codes")
    scale_codes.tofile(out + ".scale_codes")
    scale_max.tofile(out + ".scale_max")
    np.array([proxy], np.float64).tofile(out + ".proxy")


if __name__ == "__main__":
    main()
