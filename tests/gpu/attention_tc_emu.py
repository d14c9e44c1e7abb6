# tests/gpu/attention_tc_emu.py — a pure-Python emulation of core/cuda/attention_tc.cu's fragment plumbing,
# for checking its index math without a GPU: ldmatrix (with and without .trans) and mma.m16n8k16 are modelled
# from the PTX ISA's fragment layouts, the kernels' tiling, masking, online softmax and stores are transcribed
# with the same formulas (64-row blocks, 64-key tiles, BQ 32/64, head dim zero-padded to 32/64/128), and the
# results are compared with a direct attention forward/backward. Arithmetic is f64 with no bf16 rounding, so
# agreement is ~1e-15; anything larger is an indexing bug. Keep it in step with the kernels when they change.
# Usage: python3 tests/gpu/attention_tc_emu.py   (a few minutes on one core; no dependencies)
import math, random

INF = float('inf')

# ---- PTX semantics -----------------------------------------------------------------------------------------
def ldmatrix(addr, trans):
    # addr[lane] = (tile, row, col): lanes 8i..8i+7 give the rows of matrix i. Returns regs[lane][i] = (lo, hi).
    mats = []
    for i in range(4):
        m = []
        for r in range(8):
            tile, row, col = addr[8 * i + r]
            m.append([tile[row][col + c] for c in range(8)])
        mats.append(m)
    out = []
    for l in range(32):
        regs = []
        for i in range(4):
            M = mats[i]
            if not trans:
                regs.append((M[l // 4][2 * (l % 4)], M[l // 4][2 * (l % 4) + 1]))
            else:
                regs.append((M[2 * (l % 4)][l // 4], M[2 * (l % 4) + 1][l // 4]))
        out.append(regs)
    return out

def mma(C, A, B0, B1):
    # C[lane][4], A[lane][4 regs], B0[lane], B1[lane] regs; PTX m16n8k16 layouts.
    Am = [[0.0] * 16 for _ in range(16)]
    Bm = [[0.0] * 8 for _ in range(16)]
    for l in range(32):
        g, c = l // 4, l % 4
        a = A[l]
        Am[g][2 * c], Am[g][2 * c + 1] = a[0]
        Am[g + 8][2 * c], Am[g + 8][2 * c + 1] = a[1]
        Am[g][2 * c + 8], Am[g][2 * c + 9] = a[2]
        Am[g + 8][2 * c + 8], Am[g + 8][2 * c + 9] = a[3]
        Bm[2 * c][g], Bm[2 * c + 1][g] = B0[l]
        Bm[2 * c + 8][g], Bm[2 * c + 9][g] = B1[l]
    for l in range(32):
        g, c = l // 4, l % 4
        for e in range(4):
            row = g + 8 * (e >> 1)
            col = 2 * c + (e & 1)
            C[l][e] += sum(Am[row][k] * Bm[k][col] for k in range(16))

# ---- the kernel helpers (same formulas as attention_tc.cu) --------------------------------------------------
def load_a(tile, r0, k0):
    addr = [(tile, r0 + ((l >> 3) & 1) * 8 + (l & 7), k0 + (l >> 4) * 8) for l in range(32)]
    return ldmatrix(addr, False)

def load_b_nk(tile, n0, k0):
    addr = [(tile, n0 + (l >> 4) * 8 + (l & 7), k0 + ((l >> 3) & 1) * 8) for l in range(32)]
    return ldmatrix(addr, False)

def load_b_kn(tile, n0, k0):
    addr = [(tile, k0 + ((l >> 3) & 1) * 8 + (l & 7), n0 + (l >> 4) * 8) for l in range(32)]
    return ldmatrix(addr, True)

def regs(frag, i):
    return [frag[l][i] for l in range(32)]

def zeros(n):
    return [[[0.0] * 4 for _ in range(n)] for _ in range(32)]  # acc[lane][tile][4]

def mma_abt(acc, a_tile, r0, b_tile, HP, NT):
    for ks in range(HP // 16):
        a = load_a(a_tile, r0, ks * 16)
        for np_ in range(NT // 2):
            b = load_b_nk(b_tile, np_ * 16, ks * 16)
            C0 = [acc[l][2 * np_] for l in range(32)]
            C1 = [acc[l][2 * np_ + 1] for l in range(32)]
            mma(C0, a, regs(b, 0), regs(b, 1))
            mma(C1, a, regs(b, 2), regs(b, 3))

def mma_pb(acc, p, b_tile, HP, NT):
    for kk in range(NT // 2):
        a = [[(p[l][2 * kk][0], p[l][2 * kk][1]), (p[l][2 * kk][2], p[l][2 * kk][3]),
              (p[l][2 * kk + 1][0], p[l][2 * kk + 1][1]), (p[l][2 * kk + 1][2], p[l][2 * kk + 1][3])] for l in range(32)]
        for dp in range(HP // 16):
            b = load_b_kn(b_tile, dp * 16, kk * 16)
            C0 = [acc[l][2 * dp] for l in range(32)]
            C1 = [acc[l][2 * dp + 1] for l in range(32)]
            mma(C0, a, regs(b, 0), regs(b, 1))
            mma(C1, a, regs(b, 2), regs(b, 3))

def load_tile(X, row0, nrows, ROWS, HP, D):
    return [[(X[row0 + r][d] if (row0 + r < nrows and d < D) else 0.0) for d in range(HP + 8)] for r in range(ROWS)]

# ---- kernels --------------------------------------------------------------------------------------------------
BM = BN = 64

def key_end(S, shift, causal, q_end):
    if not causal: return S
    return min(q_end - 1 + shift + 1, S)

def fwd(Q, K, V, T, S, D, HP, causal, scale):
    shift = S - T
    O = [[0.0] * D for _ in range(T)]
    L = [0.0] * T
    sl2 = scale * 1.4426950408889634
    NT, OT = BN // 8, HP // 8
    for qb in range((T + BM - 1) // BM):
        q0 = qb * BM
        kend = key_end(S, shift, causal, min(q0 + BM, T))
        ntiles = (kend + BN - 1) // BN if kend > 0 else 0
        Qs = load_tile(Q, q0, T, BM, HP, D)
        for warp in range(4):
            row_a = lambda l: q0 + warp * 16 + l // 4
            oacc = zeros(OT)
            m2 = [[-INF, -INF] for _ in range(32)]
            lsum = [[0.0, 0.0] for _ in range(32)]
            for j in range(ntiles):
                Kt = load_tile(K, j * BN, S, BN, HP, D)
                Vt = load_tile(V, j * BN, S, BN, HP, D)
                s = zeros(NT)
                mma_abt(s, Qs, warp * 16, Kt, HP, NT)
                k0 = j * BN
                need = k0 + BN > S or (causal and k0 + BN - 1 > q0 + shift)
                mt = [[-INF, -INF] for _ in range(32)]
                for l in range(32):
                    tig = l % 4
                    for nt in range(NT):
                        for e in range(4):
                            x = s[l][nt][e] * sl2
                            if need:
                                key = k0 + nt * 8 + 2 * tig + (e & 1); row = row_a(l) + (e >> 1) * 8
                                if key >= S or (causal and key > row + shift): x = -INF
                            s[l][nt][e] = x
                            mt[l][e >> 1] = max(mt[l][e >> 1], x)
                # quad reduction
                mt = [[max(mt[(l & ~3) + i][r] for i in range(4)) for r in range(2)] for l in range(32)]
                muse = [[0, 0] for _ in range(32)]
                for l in range(32):
                    for r in range(2):
                        mnew = max(m2[l][r], mt[l][r])
                        muse[l][r] = 0.0 if mnew == -INF else mnew
                        corr = 2.0 ** (m2[l][r] - muse[l][r]) if m2[l][r] != -INF else 0.0
                        m2[l][r] = mnew
                        lsum[l][r] *= corr
                        for i in range(OT):
                            oacc[l][i][2 * r] *= corr; oacc[l][i][2 * r + 1] *= corr
                for l in range(32):
                    for nt in range(NT):
                        for e in range(4):
                            x = s[l][nt][e]
                            p = 0.0 if x == -INF else 2.0 ** (x - muse[l][e >> 1])
                            s[l][nt][e] = p
                            lsum[l][e >> 1] += p
                mma_pb(oacc, s, Vt, HP, NT)
            inv = []
            for l in range(32):
                tot = [sum(lsum[(l & ~3) + i][r] for i in range(4)) for r in range(2)]
                inv.append([1 / t if t > 0 else 0 for t in tot])
                for r in range(2):
                    row = row_a(l) + 8 * r
                    if l % 4 == 0 and row < T:
                        L[row] = m2[l][r] * math.log(2) + math.log(tot[r]) if tot[r] > 0 else -INF
            # per-lane multipliers
            for l in range(32):
                g, tig = l // 4, l % 4
                for r in range(2):
                    row = row_a(l) + 8 * r
                    if row >= T: continue
                    for nt in range(OT):
                        d = nt * 8 + 2 * tig
                        if d < D: O[row][d] = oacc[l][nt][2 * r] * inv[l][r]
                        if d + 1 < D: O[row][d + 1] = oacc[l][nt][2 * r + 1] * inv[l][r]
    return O, L

def lse_base2(x):
    return INF if x == -INF else x * 1.4426950408889634

def bwd(Q, K, V, O, L, dO, T, S, D, HP, causal, scale):
    shift = S - T
    sl2 = scale * 1.4426950408889634
    Dr = [sum(dO[t][d] * O[t][d] for d in range(D)) for t in range(T)]
    dQ = [[0.0] * D for _ in range(T)]
    dK = [[0.0] * D for _ in range(S)]
    dV = [[0.0] * D for _ in range(S)]
    NT = BN // 8; OT = HP // 8
    # dQ kernel
    for qb in range((T + BM - 1) // BM):
        q0 = qb * BM
        kend = key_end(S, shift, causal, min(q0 + BM, T))
        ntiles = (kend + BN - 1) // BN if kend > 0 else 0
        Qs = load_tile(Q, q0, T, BM, HP, D); dOs = load_tile(dO, q0, T, BM, HP, D)
        for warp in range(4):
            row_a = lambda l: q0 + warp * 16 + l // 4
            dq = zeros(OT)
            for j in range(ntiles):
                Kt = load_tile(K, j * BN, S, BN, HP, D); Vt = load_tile(V, j * BN, S, BN, HP, D)
                p = zeros(NT); dp = zeros(NT)
                mma_abt(p, Qs, warp * 16, Kt, HP, NT)
                mma_abt(dp, dOs, warp * 16, Vt, HP, NT)
                k0 = j * BN
                need = k0 + BN > S or (causal and k0 + BN - 1 > q0 + shift)
                for l in range(32):
                    tig = l % 4
                    for nt in range(NT):
                        for e in range(4):
                            r = e >> 1; row = row_a(l) + 8 * r
                            l2 = lse_base2(L[row]) if row < T else INF
                            dr = Dr[row] if row < T else 0.0
                            x = p[l][nt][e] * sl2 - l2
                            pr = 2.0 ** x if x > -1e30 else 0.0
                            if need:
                                key = k0 + nt * 8 + 2 * tig + (e & 1)
                                if key >= S or (causal and key > row + shift): pr = 0.0
                            p[l][nt][e] = pr * (dp[l][nt][e] - dr)
                mma_pb(dq, p, Kt, HP, NT)
            for l in range(32):
                tig = l % 4
                for r in range(2):
                    row = row_a(l) + 8 * r
                    if row >= T: continue
                    for nt in range(OT):
                        d = nt * 8 + 2 * tig
                        if d < D: dQ[row][d] = dq[l][nt][2 * r] * scale
                        if d + 1 < D: dQ[row][d + 1] = dq[l][nt][2 * r + 1] * scale
    # dK/dV kernel
    BK = 64; BQ = 32 if HP == 128 else 64; NTQ = BQ // 8
    for kb in range((S + BK - 1) // BK):
        s0 = kb * BK
        t_begin = max(s0 - shift, 0) if causal else 0
        t_begin = t_begin // BQ * BQ
        nq = (T - t_begin + BQ - 1) // BQ if t_begin < T else 0
        Ks = load_tile(K, s0, S, BK, HP, D); Vs = load_tile(V, s0, S, BK, HP, D)
        for warp in range(4):
            key_a = lambda l: s0 + warp * 16 + l // 4
            dk = zeros(OT); dv = zeros(OT)
            for i in range(nq):
                t0 = t_begin + i * BQ
                Qt = load_tile(Q, t0, T, BQ, HP, D); dOt = load_tile(dO, t0, T, BQ, HP, D)
                Lt = [lse_base2(L[t0 + c]) if t0 + c < T else INF for c in range(BQ)]
                Dt = [Dr[t0 + c] if t0 + c < T else 0.0 for c in range(BQ)]
                p = zeros(NTQ); dp = zeros(NTQ)
                mma_abt(p, Ks, warp * 16, Qt, HP, NTQ)
                mma_abt(dp, Vs, warp * 16, dOt, HP, NTQ)
                need = t0 + BQ > T or s0 + BK > S or (causal and s0 + BK - 1 > t0 + shift)
                for l in range(32):
                    tig = l % 4
                    for nt in range(NTQ):
                        for e in range(4):
                            col = nt * 8 + 2 * tig + (e & 1)
                            x = p[l][nt][e] * sl2 - Lt[col]
                            pr = 2.0 ** x if x > -1e30 else 0.0
                            if need:
                                t = t0 + col; key = key_a(l) + (e >> 1) * 8
                                if t >= T or key >= S or (causal and key > t + shift): pr = 0.0
                            p[l][nt][e] = pr
                            dp[l][nt][e] = pr * (dp[l][nt][e] - Dt[col])
                mma_pb(dv, p, dOt, HP, NTQ)
                mma_pb(dk, dp, Qt, HP, NTQ)
            for l in range(32):
                tig = l % 4
                for r in range(2):
                    row = key_a(l) + 8 * r
                    if row >= S: continue
                    for nt in range(OT):
                        d = nt * 8 + 2 * tig
                        if d < D:
                            dK[row][d] = dk[l][nt][2 * r] * scale; dV[row][d] = dv[l][nt][2 * r]
                        if d + 1 < D:
                            dK[row][d + 1] = dk[l][nt][2 * r + 1] * scale; dV[row][d + 1] = dv[l][nt][2 * r + 1]
    return dQ, dK, dV

# ---- reference ------------------------------------------------------------------------------------------------
def ref(Q, K, V, dO, T, S, D, causal, scale):
    shift = S - T
    O = [[0.0] * D for _ in range(T)]; L = [0.0] * T; P = []
    for t in range(T):
        n = min(S, t + shift + 1) if causal else S
        sc = [scale * sum(Q[t][d] * K[s][d] for d in range(D)) for s in range(max(n, 0))]
        if n <= 0:
            P.append([0.0] * S); L[t] = -INF; continue
        m = max(sc); e = [math.exp(x - m) for x in sc]; l = sum(e)
        p = [x / l for x in e] + [0.0] * (S - n)
        P.append(p); L[t] = m + math.log(l)
        for d in range(D): O[t][d] = sum(p[s] * V[s][d] for s in range(S))
    dV = [[sum(P[t][s] * dO[t][d] for t in range(T)) for d in range(D)] for s in range(S)]
    dP = [[sum(dO[t][d] * V[s][d] for d in range(D)) for s in range(S)] for t in range(T)]
    dS = [[P[t][s] * (dP[t][s] - sum(P[t][j] * dP[t][j] for j in range(S))) for s in range(S)] for t in range(T)]
    dQ = [[scale * sum(dS[t][s] * K[s][d] for s in range(S)) for d in range(D)] for t in range(T)]
    dK = [[scale * sum(dS[t][s] * Q[t][d] for t in range(T)) for d in range(D)] for s in range(S)]
    return O, L, dQ, dK, dV

def maxerr(a, b):
    m = max(abs(x) for r in b for x in r) or 1
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)) / m

def run(T, S, D, causal, scale, seed=1):
    rnd = random.Random(seed)
    mk = lambda n: [[rnd.uniform(-1, 1) for _ in range(D)] for _ in range(n)]
    Q, K, V, dO = mk(T), mk(S), mk(S), mk(T)
    HP = 32 if D <= 32 else 64 if D <= 64 else 128
    O, L = fwd(Q, K, V, T, S, D, HP, causal, scale)
    Or, Lr, dQr, dKr, dVr = ref(Q, K, V, dO, T, S, D, causal, scale)
    dQ, dK, dV = bwd(Q, K, V, O, L, dO, T, S, D, HP, causal, scale)
    lerr = max(abs(a - b) for a, b in zip(L, Lr) if b != -INF) if any(b != -INF for b in Lr) else 0
    linf = all((a == -INF) == (b == -INF) for a, b in zip(L, Lr))
    print(f"T={T} S={S} D={D} HP={HP} causal={causal}: O {maxerr(O, Or):.1e} lse {lerr:.1e} (-inf match {linf}) "
          f"dQ {maxerr(dQ, dQr):.1e} dK {maxerr(dK, dKr):.1e} dV {maxerr(dV, dVr):.1e}", flush=True)
    worst = max(maxerr(O, Or), lerr, maxerr(dQ, dQr), maxerr(dK, dKr), maxerr(dV, dVr))
    return worst <= 1e-9 and linf

if __name__ == "__main__":
    import sys
    ok = all([
        run(70, 70, 20, True, 0.3),
        run(5, 5, 4, True, 0.5),
        run(3, 6, 4, True, 0.7),
        run(4, 5, 3, False, 0.6),
        run(40, 97, 32, False, 0.2),
        run(70, 40, 8, True, 0.4),  # T > S: rows without keys
        run(70, 80, 48, True, 0.3),
        run(40, 70, 100, True, 0.25),
    ])
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)
