// CPU block-sparse attention: one thread per (batch, head); each component of a head is gathered into
// its order, walked block by block, and its (output, log-sum-exp) merged into the head's result.
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cpu/vexp.h"
#include "error.h"

namespace st {

namespace {

void check_dims(const LayerLayout& lay, int B, int T, int C, int NH) {
    if (B < 1 || T < 1 || NH < 1 || C % NH != 0)
        fail("attention: bad sizes B " + std::to_string(B) + ", T " + std::to_string(T) + ", C " + std::to_string(C) +
             ", NH " + std::to_string(NH));
    if (lay.T != T || int(lay.heads.size()) != NH)
        fail("attention: layout built for T " + std::to_string(lay.T) + " and " + std::to_string(lay.heads.size()) +
             " heads, used with T " + std::to_string(T) + " and " + std::to_string(NH));
}

int64_t position(const AttnComponent& part, int64_t t) { return part.order.empty() ? t : part.order[size_t(t)]; }

// Whether each query block of a component holds a row in rows (in the component's order, rows
// wanted are scattered: a strided component walks the sequence column by column).
std::vector<char> wanted_blocks(const AttnComponent& part, int T, int bs, QueryRows rows) {
    std::vector<char> want(size_t(part.nblk), 0);
    for (int64_t t = 0; t < T; t++) {
        const int64_t pos = position(part, t);
        if (pos >= rows.lo && pos < rows.hi) want[size_t(t / bs)] = 1;
    }
    return want;
}

// Rows of one head's slice of a (B, T, width) tensor, in the component's order, into dst (T, Dh).
template <class F> void gather(F* dst, const F* src, int64_t width, const AttnComponent& part, int T, int Dh) {
    for (int64_t t = 0; t < T; t++) {
        const F* row = src + position(part, t) * width;
        std::copy(row, row + Dh, dst + t * Dh);
    }
}

template <class F> void scatter_add(F* dst, const F* src, int64_t width, const AttnComponent& part, int T, int Dh) {
    for (int64_t t = 0; t < T; t++) {
        F* row = dst + position(part, t) * width;
        const F* s = src + t * Dh;
        for (int d = 0; d < Dh; d++) row[d] += s[d];
    }
}

// Rows r0 .. r0+n-1 of x (rows of Dh) as columns: xt[d * bs + c] = x[(r0 + c) * Dh + d].
template <class F> void transpose_rows(F* xt, const F* x, int64_t r0, int n, int Dh, int bs) {
    for (int c = 0; c < n; c++)
        for (int d = 0; d < Dh; d++) xt[d * bs + c] = x[(r0 + c) * Dh + d];
}

// The top-left m x n of a (ld bs) transposed into at (ld bs).
template <class F> void transpose_block(F* at, const F* a, int m, int n, int bs) {
    for (int r = 0; r < m; r++)
        for (int c = 0; c < n; c++) at[c * bs + r] = a[r * bs + c];
}

// c (m x n, ldc) += a (m x k, lda) . b (k x n, ldb): every product of the kernels. The body keeps a
// tile of 4 rows by two 256-bit vectors of c in registers (GCC/Clang vector extensions: the
// auto-vectoriser spills such a tile); the edges go plainly. A fixed order of sums: deterministic.
template <class F> void gemm_acc(F* c, int ldc, const F* a, int lda, const F* b, int ldb, int m, int n, int k) {
    typedef F Vec __attribute__((vector_size(32)));
    constexpr int R = 4, L = int(sizeof(Vec) / sizeof(F)), W = 2 * L;
    const int m_body = m / R * R, n_body = n / W * W;
    for (int i = 0; i < m_body; i += R)
        for (int j = 0; j < n_body; j += W) {
            Vec t[R][2] = {};
            for (int p = 0; p < k; p++) {
                Vec b0, b1;
                std::memcpy(&b0, b + p * ldb + j, sizeof(Vec));
                std::memcpy(&b1, b + p * ldb + j + L, sizeof(Vec));
                for (int r = 0; r < R; r++) {
                    const F ar = a[(i + r) * lda + p];
                    t[r][0] += ar * b0;
                    t[r][1] += ar * b1;
                }
            }
            for (int r = 0; r < R; r++)
                for (int w = 0; w < W; w++) c[(i + r) * ldc + j + w] += t[r][w / L][w % L];
        }
    for (int i = 0; i < m; i++)
        for (int p = 0; p < k; p++) {
            const F ai = a[i * lda + p];
            for (int j = i < m_body ? n_body : 0; j < n; j++) c[i * ldc + j] += ai * b[p * ldb + j];
        }
}

// s (nr x nk, ld bs) = a (nr rows of Dh) . bt (Dh x nk, ld bs).
template <class F> void block_dots(F* s, const F* a, const F* bt, int nr, int nk, int Dh, int bs) {
    for (int r = 0; r < nr; r++) std::fill(s + r * bs, s + r * bs + nk, F(0));
    gemm_acc(s, bs, a, Dh, bt, bs, nr, nk, Dh);
}

// Scaled scores with the pairs outside the set at -inf.
template <class F>
void block_scores(F* s, const F* q, const F* kt, int nr, int nk, int Dh, int bs, F scale, const uint64_t* mask) {
    const F ninf = -std::numeric_limits<F>::infinity();
    block_dots(s, q, kt, nr, nk, Dh, bs);
    for (int r = 0; r < nr; r++) {
        F* sr = s + r * bs;
        for (int c = 0; c < nk; c++) sr[c] *= scale;
        if (mask)
            for (int c = 0; c < nk; c++) {
                int bit = r * bs + c;
                if (!((mask[bit >> 6] >> (bit & 63)) & 1)) sr[c] = ninf;
            }
    }
}

const uint64_t* entry_mask(const AttnComponent& part, int32_t e) {
    int32_t m = part.mask[size_t(e)];
    return m < 0 ? nullptr : part.masks[size_t(m)].data();
}

// One head of one batch row: every component, merged by log-sum-exp into o (rows of width C) and l.
template <class F>
void forward_head(F* o, F* l, const F* qkv, int64_t C, const HeadLayout& head, int T, int Dh, int bs, QueryRows rows) {
    const F ninf = -std::numeric_limits<F>::infinity();
    const F scale = F(1) / std::sqrt(F(Dh));
    const int64_t width = 3 * C;
    for (int64_t t = 0; t < T; t++) {
        std::fill(o + t * C, o + t * C + Dh, F(0));
        l[t] = ninf;
    }
    const size_t n = size_t(T) * Dh, nb = size_t(bs);
    std::vector<F> q(n), k(n), v(n), kt(nb * Dh), s(nb * nb), acc(nb * Dh), m(nb), sum(nb);
    for (const AttnComponent& part : head.parts) {
        gather(q.data(), qkv, width, part, T, Dh);
        gather(k.data(), qkv + C, width, part, T, Dh);
        gather(v.data(), qkv + 2 * C, width, part, T, Dh);
        const std::vector<char> want = wanted_blocks(part, T, bs, rows);
        for (int qb = 0; qb < part.nblk; qb++) {
            if (!want[size_t(qb)]) continue;
            const int64_t q0 = int64_t(qb) * bs;
            const int nr = int(std::min<int64_t>(bs, T - q0));
            std::fill(m.begin(), m.end(), ninf);
            std::fill(sum.begin(), sum.end(), F(0));
            std::fill(acc.begin(), acc.end(), F(0));
            for (int32_t e = part.row_ptr[size_t(qb)]; e < part.row_ptr[size_t(qb) + 1]; e++) {
                const int64_t k0 = int64_t(part.col[size_t(e)]) * bs;
                const int nk = int(std::min<int64_t>(bs, T - k0));
                transpose_rows(kt.data(), k.data(), k0, nk, Dh, bs);
                block_scores(s.data(), q.data() + q0 * Dh, kt.data(), nr, nk, Dh, bs, scale, entry_mask(part, e));
                for (int r = 0; r < nr; r++) {
                    F* sr = s.data() + r * bs;
                    F mx = ninf;
                    for (int c = 0; c < nk; c++) mx = std::max(mx, sr[c]);
                    if (mx == ninf) {  // nothing of this block in the row's set
                        std::fill(sr, sr + nk, F(0));
                        continue;
                    }
                    const F m_new = std::max(m[size_t(r)], mx);
                    const F alpha = std::exp(m[size_t(r)] - m_new);
                    sum[size_t(r)] = sum[size_t(r)] * alpha + exp_shifted_sum(sr, nk, m_new);
                    m[size_t(r)] = m_new;
                    F* ar = acc.data() + r * Dh;
                    for (int d = 0; d < Dh; d++) ar[d] *= alpha;
                }
                gemm_acc(acc.data(), Dh, s.data(), bs, v.data() + k0 * Dh, Dh, nr, Dh, nk);
            }
            for (int r = 0; r < nr; r++) {
                if (sum[size_t(r)] == F(0)) continue;  // empty set in this component
                const int64_t pos = position(part, q0 + r);
                const F lc = m[size_t(r)] + std::log(sum[size_t(r)]);
                F* orow = o + pos * C;
                const F* ar = acc.data() + r * Dh;
                const F lp = l[pos];  // the components merged so far
                if (lp == ninf) {
                    for (int d = 0; d < Dh; d++) orow[d] = ar[d] / sum[size_t(r)];
                    l[pos] = lc;
                    continue;
                }
                const F mx = std::max(lp, lc);
                const F ln = mx + std::log(std::exp(lp - mx) + std::exp(lc - mx));
                const F wp = std::exp(lp - ln), wc = std::exp(lc - ln) / sum[size_t(r)];
                for (int d = 0; d < Dh; d++) orow[d] = wp * orow[d] + wc * ar[d];
                l[pos] = ln;
            }
        }
    }
}

// Gradients of one head of one batch row, walking each component by key block (the transposed CSR,
// as the GPU does so that dK/dV need no atomics).
template <class F> void backward_head(F* dqkv, const F* dout, const F* qkv, const F* out, const F* lse, int64_t C,
                                      const HeadLayout& head, int T, int Dh, int bs, QueryRows rows) {
    const F scale = F(1) / std::sqrt(F(Dh));
    const int64_t width = 3 * C;
    const size_t n = size_t(T) * Dh, nt = size_t(T), nb = size_t(bs);
    std::vector<F> dsum(nt);  // D = rowsum(dout * out), in sequence order
    for (int64_t t = 0; t < T; t++) {
        F acc = 0;
        for (int d = 0; d < Dh; d++) acc += dout[t * C + d] * out[t * C + d];
        dsum[size_t(t)] = acc;
    }
    std::vector<F> q(n), k(n), v(n), g(n), dq(n), dk(n), dv(n), l(nt), D(nt);
    std::vector<F> kt(nb * Dh), vt(nb * Dh), p(nb * nb), ds(nb * nb), at(nb * nb);
    for (const AttnComponent& part : head.parts) {
        gather(q.data(), qkv, width, part, T, Dh);
        gather(k.data(), qkv + C, width, part, T, Dh);
        gather(v.data(), qkv + 2 * C, width, part, T, Dh);
        gather(g.data(), dout, C, part, T, Dh);
        for (int64_t t = 0; t < T; t++) {
            l[size_t(t)] = lse[position(part, t)];
            D[size_t(t)] = dsum[size_t(position(part, t))];
        }
        std::fill(dq.begin(), dq.end(), F(0));
        std::fill(dk.begin(), dk.end(), F(0));
        std::fill(dv.begin(), dv.end(), F(0));
        const std::vector<char> want = wanted_blocks(part, T, bs, rows);
        for (int kb = 0; kb < part.nblk; kb++) {
            const int64_t k0 = int64_t(kb) * bs;
            const int nk = int(std::min<int64_t>(bs, T - k0));
            transpose_rows(kt.data(), k.data(), k0, nk, Dh, bs);
            transpose_rows(vt.data(), v.data(), k0, nk, Dh, bs);
            for (int32_t x = part.col_ptr[size_t(kb)]; x < part.col_ptr[size_t(kb) + 1]; x++) {
                if (!want[size_t(part.row_of[size_t(x)])]) continue;
                const int64_t q0 = int64_t(part.row_of[size_t(x)]) * bs;
                const int nr = int(std::min<int64_t>(bs, T - q0));
                block_scores(p.data(), q.data() + q0 * Dh, kt.data(), nr, nk, Dh, bs, scale,
                             entry_mask(part, part.entry_of[size_t(x)]));
                block_dots(ds.data(), g.data() + q0 * Dh, vt.data(), nr, nk, Dh, bs);
                for (int r = 0; r < nr; r++) {
                    F* pr = p.data() + r * bs;
                    F* dr = ds.data() + r * bs;
                    const F lr = l[size_t(q0 + r)], Dr = D[size_t(q0 + r)];
                    exp_shifted_sum(pr, nk, lr);  // P, exactly 0 where masked
                    for (int c = 0; c < nk; c++)
                        dr[c] = pr[c] * (dr[c] - Dr) * scale;  // dS, with the score scale folded in
                }
                // dV += P^T dO, dK += dS^T Q, dQ += dS K for this pair of blocks.
                transpose_block(at.data(), p.data(), nr, nk, bs);
                gemm_acc(dv.data() + k0 * Dh, Dh, at.data(), bs, g.data() + q0 * Dh, Dh, nk, Dh, nr);
                transpose_block(at.data(), ds.data(), nr, nk, bs);
                gemm_acc(dk.data() + k0 * Dh, Dh, at.data(), bs, q.data() + q0 * Dh, Dh, nk, Dh, nr);
                gemm_acc(dq.data() + q0 * Dh, Dh, ds.data(), bs, k.data() + k0 * Dh, Dh, nr, Dh, nk);
            }
        }
        scatter_add(dqkv, dq.data(), width, part, T, Dh);
        scatter_add(dqkv + C, dk.data(), width, part, T, Dh);
        scatter_add(dqkv + 2 * C, dv.data(), width, part, T, Dh);
    }
}

}  // namespace

template <class F> void attention_forward(F* out, F* lse, const F* qkv, const LayerLayout& lay, int B, int T, int C,
                                          int NH, QueryRows rows) {
    check_dims(lay, B, T, C, NH);
    const int Dh = C / NH;
#pragma omp parallel for schedule(dynamic, 1)
    for (int bh = 0; bh < B * NH; bh++) {
        const int b = bh / NH, h = bh % NH;
        forward_head(out + int64_t(b) * T * C + h * Dh, lse + (int64_t(b) * NH + h) * T,
                     qkv + int64_t(b) * T * 3 * C + h * Dh, int64_t(C), lay.heads[size_t(h)], T, Dh, lay.block, rows);
    }
}

template <class F> void attention_backward(F* dqkv, const F* dout, const F* qkv, const F* out, const F* lse,
                                           const LayerLayout& lay, int B, int T, int C, int NH, QueryRows rows) {
    check_dims(lay, B, T, C, NH);
    const int Dh = C / NH;
#pragma omp parallel for schedule(dynamic, 1)
    for (int bh = 0; bh < B * NH; bh++) {
        const int b = bh / NH, h = bh % NH;
        const int64_t qkv_off = int64_t(b) * T * 3 * C + h * Dh, out_off = int64_t(b) * T * C + h * Dh;
        backward_head(dqkv + qkv_off, dout + out_off, qkv + qkv_off, out + out_off, lse + (int64_t(b) * NH + h) * T,
                      int64_t(C), lay.heads[size_t(h)], T, Dh, lay.block, rows);
    }
}

template void attention_forward<float>(float*, float*, const float*, const LayerLayout&, int, int, int, int, QueryRows);
template void attention_forward<double>(double*, double*, const double*, const LayerLayout&, int, int, int, int,
                                        QueryRows);
template void attention_backward<float>(float*, const float*, const float*, const float*, const float*,
                                        const LayerLayout&, int, int, int, int, QueryRows);
template void attention_backward<double>(double*, const double*, const double*, const double*, const double*,
                                         const LayerLayout&, int, int, int, int, QueryRows);

}  // namespace st
