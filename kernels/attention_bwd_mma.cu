// Block-sparse flash attention, backward, on mma.sync (any sm_80+). After attention_backward's dsum
// (D = rowsum(dO * O) per query, once per layer), two launches per component, neither with atomics:
//   dkv:  one CTA per key block walks the query blocks that see it (the transposed CSR), keeping dK
//         and dV of its keys in registers: S^T = K Q^T, P^T = exp(S^T - lse), dP^T = V dO^T,
//         dS^T = P^T (dP^T - D) / sqrt(d), dV += P^T dO, dK += dS^T Q;
//   dq:   one CTA per query block walks its key blocks (the CSR) and recomputes P and dS to form
//         dQ = dS K.
// Recomputing P in both passes costs two extra products per block pair; in exchange each output row
// is owned by one CTA, so the result is the same bits on every run.
#include <cfloat>
#include <string>

#include "kernels/attention_bwd_common.cuh"
#include "kernels/check.h"

namespace st::gpu {

namespace {

using namespace mma;

// Shapes: MT row tiles of 16 per warp (2 where the registers allow: fewer shared-memory reads per
// product), and the width of the tiles the other side streams in (32 where the accumulators are big).
template <int D, int BLK> constexpr int bwd_mt() { return BLK == 128 && D <= 64 ? 2 : 1; }
template <int D, int BLK> constexpr int bwd_threads() { return BLK / (16 * bwd_mt<D, BLK>()) * 32; }
template <int D, int BLK> constexpr int bwd_tile() { return D * bwd_mt<D, BLK>() >= 128 ? 32 : 64; }

template <int D, int BLK> __global__ void __launch_bounds__(bwd_threads<D, BLK>()) dkv_kernel(BwdArgs a) {
    constexpr int MT = bwd_mt<D, BLK>(), NT = bwd_threads<D, BLK>(), LD = D + kPad, QT = bwd_tile<D, BLK>(),
                  QN = QT / 8, SUB = BLK / QT;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16* Ks = reinterpret_cast<bf16*>(smem);                // BLK x LD
    bf16* Vs = Ks + BLK * LD;                                // BLK x LD
    bf16* Qs = Vs + BLK * LD;                                // 2 x QT x LD
    bf16* Gs = Qs + 2 * QT * LD;                             // 2 x QT x LD (dO)
    float* Ls = reinterpret_cast<float*>(Gs + 2 * QT * LD);  // 2 x QT: lse
    float* Ds = Ls + 2 * QT;                                 // 2 x QT: dsum
    const int h = blockIdx.y, b = blockIdx.z;
    const AttnPartDev P = a.parts[h];
    if (!P.row_ptr) return;
    const int kb = P.k_sched[blockIdx.x];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const HeadRows<D> r(a, b, h);
    const int x0 = P.col_ptr[kb], ntiles = (P.col_ptr[kb + 1] - x0) * SUB;

    load_rows<D, NT>(Ks, r.qkv + a.C, r.W3, P.order, kb * BLK, BLK, a.T);
    load_rows<D, NT>(Vs, r.qkv + 2 * a.C, r.W3, P.order, kb * BLK, BLK, a.T);
    cp_async_commit();
    auto load_q = [&](int it, int buf) {
        const int q0 = P.row_of[x0 + it / SUB] * BLK + (it % SUB) * QT;
        load_rows<D, NT>(Qs + buf * QT * LD, r.qkv, r.W3, P.order, q0, QT, a.T);
        load_rows<D, NT>(Gs + buf * QT * LD, r.dout, a.C, P.order, q0, QT, a.T);
        load_lse_dsum<D, NT, QT>(Ls + buf * QT, Ds + buf * QT, r, P.order, q0, a.T);
    };
    if (ntiles > 0) load_q(0, 0);
    cp_async_commit();

    float dk[MT][D / 8][4] = {}, dv[MT][D / 8][4] = {};
    const int r0 = warp * 16 * MT;  // this warp's first key in the block
    for (int it = 0; it < ntiles; it++) {
        __syncthreads();  // the buffer about to be refilled is no longer read
        if (it + 1 < ntiles) load_q(it + 1, (it + 1) & 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const int buf = it & 1;
        const bf16* Qt = Qs + buf * QT * LD;
        const bf16* Gt = Gs + buf * QT * LD;
        float s[MT][QN][4] = {}, dp[MT][QN][4] = {};
        tile_product_s<D, QN, MT>(s, Ks + r0 * LD, LD, Qt, LD, lane);   // S^T: keys x QT queries
        tile_product_s<D, QN, MT>(dp, Vs + r0 * LD, LD, Gt, LD, lane);  // dP^T

        const int x = x0 + it / SUB, sub = it % SUB;
        const int q0 = P.row_of[x] * BLK + sub * QT;
        mask_tile<BLK, MT, QN>(s, P.masks_t, P.mask_t[x], sub * QT, a.T - q0, r0, lane);
        probs_by_column<QN, MT>(s, dp, Ls + buf * QT, Ds + buf * QT, a.scale_log2, lane);
        // dV += P^T dO and dK += dS^T Q over the tile's queries, 16 at a time.
#pragma unroll
        for (int j = 0; j < QT / 16; j++) {
            uint32_t pa[MT][4], da[MT][4];
            acc_to_a<QN, MT>(pa, s, j);
            acc_to_a<QN, MT>(da, dp, j);
            accumulate_pv<D, MT>(dv, pa, Gt + j * 16 * LD, LD, lane);
            accumulate_pv<D, MT>(dk, da, Qt + j * 16 * LD, LD, lane);
        }
    }
    cp_async_wait<0>();
    bf16* kdst = a.dqkv + int64_t(b) * a.T * r.W3 + a.C + h * D;
    store_rows<D, MT>(kdst, r.W3, dk, P.order, kb * BLK + r0, a.T, lane, a.merge, a.scale);
    store_rows<D, MT>(kdst + a.C, r.W3, dv, P.order, kb * BLK + r0, a.T, lane, a.merge, 1.f);
}

template <int D, int BLK> __global__ void __launch_bounds__(bwd_threads<D, BLK>()) dq_kernel(BwdArgs a) {
    constexpr int MT = bwd_mt<D, BLK>(), NT = bwd_threads<D, BLK>(), LD = D + kPad, KT = bwd_tile<D, BLK>(),
                  KN = KT / 8, SUB = BLK / KT;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16* Qs = reinterpret_cast<bf16*>(smem);  // BLK x LD
    bf16* Gs = Qs + BLK * LD;                  // BLK x LD (dO)
    bf16* Ks = Gs + BLK * LD;                  // 2 x KT x LD
    bf16* Vs = Ks + 2 * KT * LD;               // 2 x KT x LD
    const int h = blockIdx.y, b = blockIdx.z;
    const AttnPartDev P = a.parts[h];
    if (!P.row_ptr) return;
    const int qb = P.q_sched[blockIdx.x];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const HeadRows<D> r(a, b, h);
    const int e0 = P.row_ptr[qb], ntiles = (P.row_ptr[qb + 1] - e0) * SUB;

    load_rows<D, NT>(Qs, r.qkv, r.W3, P.order, qb * BLK, BLK, a.T);
    load_rows<D, NT>(Gs, r.dout, a.C, P.order, qb * BLK, BLK, a.T);
    cp_async_commit();
    auto load_kv = [&](int it, int buf) {
        const int k0 = P.col[e0 + it / SUB] * BLK + (it % SUB) * KT;
        load_rows<D, NT>(Ks + buf * KT * LD, r.qkv + a.C, r.W3, P.order, k0, KT, a.T);
        load_rows<D, NT>(Vs + buf * KT * LD, r.qkv + 2 * a.C, r.W3, P.order, k0, KT, a.T);
    };
    if (ntiles > 0) load_kv(0, 0);
    cp_async_commit();

    const int r0 = warp * 16 * MT;
    float L[MT][2], Dq[MT][2];
    row_lse_dsum<D, MT>(L, Dq, r, P.order, qb * BLK + r0, a.T, lane);
    float dq[MT][D / 8][4] = {};
    for (int it = 0; it < ntiles; it++) {
        __syncthreads();
        if (it + 1 < ntiles) load_kv(it + 1, (it + 1) & 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const bf16* Kt = Ks + (it & 1) * KT * LD;
        const bf16* Vt = Vs + (it & 1) * KT * LD;
        float s[MT][KN][4] = {}, dp[MT][KN][4] = {};
        tile_product_s<D, KN, MT>(s, Qs + r0 * LD, LD, Kt, LD, lane);
        tile_product_s<D, KN, MT>(dp, Gs + r0 * LD, LD, Vt, LD, lane);

        const int e = e0 + it / SUB, sub = it % SUB;
        mask_tile<BLK, MT, KN>(s, P.masks, P.mask[e], sub * KT, a.T - (P.col[e] * BLK + sub * KT), r0, lane);
        dscores_by_row<KN, MT>(s, dp, L, Dq, a.scale_log2);
#pragma unroll
        for (int j = 0; j < KT / 16; j++) {
            uint32_t da[MT][4];
            acc_to_a<KN, MT>(da, dp, j);
            accumulate_pv<D, MT>(dq, da, Kt + j * 16 * LD, LD, lane);
        }
    }
    cp_async_wait<0>();
    store_rows<D, MT>(a.dqkv + int64_t(b) * a.T * r.W3 + h * D, r.W3, dq, P.order, qb * BLK + r0, a.T, lane, a.merge,
                      a.scale);
}

template <int D, int BLK> void launch_bwd(const BwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    constexpr int LD = D + kPad, W = bwd_tile<D, BLK>(), NT = bwd_threads<D, BLK>();
    constexpr int smem_kv = (2 * BLK + 4 * W) * LD * int(sizeof(bf16)) + 4 * W * int(sizeof(float));
    constexpr int smem_q = (2 * BLK + 4 * W) * LD * int(sizeof(bf16));
    allow_smem(reinterpret_cast<const void*>(dkv_kernel<D, BLK>), smem_kv);
    allow_smem(reinterpret_cast<const void*>(dq_kernel<D, BLK>), smem_q);
    for_each_component(plan, a, [&](const BwdArgs& ak) {
        dkv_kernel<D, BLK><<<dim3(plan.nblk, a.NH, B), NT, smem_kv, s>>>(ak);
        CUDA_LAUNCH_CHECK();
        dq_kernel<D, BLK><<<dim3(plan.nblk, a.NH, B), NT, smem_q, s>>>(ak);
        CUDA_LAUNCH_CHECK();
    });
}

}  // namespace

void backward_mma(const BwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    const int D = a.C / a.NH;
    if (D == 32 && plan.block == 64) return launch_bwd<32, 64>(a, plan, B, s);
    if (D == 64 && plan.block == 64) return launch_bwd<64, 64>(a, plan, B, s);
    if (D == 128 && plan.block == 64) return launch_bwd<128, 64>(a, plan, B, s);
    if (D == 32 && plan.block == 128) return launch_bwd<32, 128>(a, plan, B, s);
    if (D == 64 && plan.block == 128) return launch_bwd<64, 128>(a, plan, B, s);
    if (D == 128 && plan.block == 128) return launch_bwd<128, 128>(a, plan, B, s);
    fail("backward_mma: no kernel for head size " + std::to_string(D) + ", block " + std::to_string(plan.block));
}

}  // namespace st::gpu
