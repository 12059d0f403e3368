// Block-sparse flash attention, backward, on Hopper's wgmma: the two kernels of attention_bwd_mma.cu
// (dK/dV by key block over the transposed CSR, dQ by query block over the CSR: no atomics, the same
// bits every run), but a CTA is one warpgroup of 4 warps taking 64 rows of the block, multiplying with
// wgmma and reading the streamed tiles (Q and dO, or K and V) straight from swizzled shared memory.
// One warpgroup a CTA lets the CTAs of an SM run apart, one's exponentials beside another's products
// (two warpgroups a CTA, meeting at every barrier, were slower). A tile serves
// both of its uses from one layout: as the K-major B of a score product (S^T = K Q^T) and as the
// N-major B of an accumulation (dK += dS^T Q), as K and V do in attention_fwd_wgmma.cu.
// The CTA's own rows (K and V, or Q and dO) are swizzled tiles too, read by the score products as
// their A operand from shared memory; the products that take computed probabilities (dV, dK, dQ)
// read them from registers. Head size 64 with blocks of 64 (attention_bwd_ws.cu's kernels take blocks
// of 128), and head size 128 with either.
#include <cfloat>
#include <string>

#include "kernels/attention_bwd_common.cuh"
#include "kernels/attention_wgmma_tile.cuh"
#include "kernels/check.h"

namespace st::gpu {

namespace {

using namespace mma;

constexpr int kRows = 64, kThreads = 128;  // a CTA's rows of its block, its threads: one warpgroup

template <int D, int Bufs> constexpr int dkv_wgmma_smem() {  // alignment slack, Q and dO tiles, K and V, lse and D
    return 1024 + (2 * Bufs + 2) * (D / 64) * kPanel + 2 * Bufs * kKeyTile * 4;
}
template <int D, int Bufs> constexpr int dq_wgmma_smem() {  // alignment slack, K and V tiles, Q and dO
    return 1024 + (2 * Bufs + 2) * (D / 64) * kPanel;
}

// The two score products of a tile, s = A0 B0^T and dp = A1 B1^T (qk_issue), issued together and
// waited for once; the wait also takes whatever products were left running before them.
template <int D> __device__ __forceinline__ void score_products(float (&s)[8][4], float (&dp)[8][4],
                                                                const unsigned char* A0, const unsigned char* B0,
                                                                const unsigned char* A1, const unsigned char* B1) {
    wgmma::fence_regs<32>(&s[0][0]);
    wgmma::fence_regs<32>(&dp[0][0]);
    wgmma::fence();
    qk_issue<D>(s, A0, B0);
    qk_issue<D>(dp, A1, B1);
    wgmma::commit();
    wgmma::wait<0>();
    wgmma::fence_regs<32>(&s[0][0]);
    wgmma::fence_regs<32>(&dp[0][0]);
}

template <int D, int BLK, int Bufs> __global__ void __launch_bounds__(kThreads, 2) dkv_wgmma_kernel(BwdArgs a) {
    constexpr int NT = kThreads, SUB = BLK / kKeyTile, TILE = D / 64 * kPanel;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char* smem = swizzle_base(smem_raw);
    unsigned char* Qs = smem;                         // Bufs x TILE
    unsigned char* Gs = Qs + Bufs * TILE;             // Bufs x TILE (dO)
    unsigned char* Ks = Gs + Bufs * TILE;             // TILE: the CTA's keys
    unsigned char* Vs = Ks + TILE;                    // TILE
    float* Ls = reinterpret_cast<float*>(Vs + TILE);  // Bufs x kKeyTile: lse
    float* Ds = Ls + Bufs * kKeyTile;                 // Bufs x kKeyTile: dsum
    const int h = blockIdx.y, b = blockIdx.z;
    const AttnPartDev P = a.parts[h];
    if (!P.row_ptr) return;
    const int kb = P.k_sched[blockIdx.x / (BLK / kRows)], k0 = kb * BLK + blockIdx.x % (BLK / kRows) * kRows;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const HeadRows<D> r(a, b, h);
    const int x0 = P.col_ptr[kb], ntiles = (P.col_ptr[kb + 1] - x0) * SUB;

    load_tile_sw128<D, NT>(Ks, r.qkv + a.C, r.W3, P.order, k0, a.T);
    load_tile_sw128<D, NT>(Vs, r.qkv + 2 * a.C, r.W3, P.order, k0, a.T);
    cp_async_commit();
    // A tile's first query; read a tile ahead of its load, so that the load does not wait for it.
    auto first = [&](int it) { return it < ntiles ? P.row_of[x0 + it / SUB] * BLK + (it % SUB) * kKeyTile : 0; };
    auto load_q = [&](int q0, int buf) {
        load_tile_sw128<D, NT>(Qs + buf * TILE, r.qkv, r.W3, P.order, q0, a.T);
        load_tile_sw128<D, NT>(Gs + buf * TILE, r.dout, a.C, P.order, q0, a.T);
        load_lse_dsum<D, NT, kKeyTile>(Ls + buf * kKeyTile, Ds + buf * kKeyTile, r, P.order, q0, a.T);
    };
    int q0 = first(0), q1 = first(1);  // this tile's first query, the next one's
    if (ntiles > 0) load_q(q0, 0);
    cp_async_commit();

    float dk[1][D / 8][4] = {}, dv[1][D / 8][4] = {};
    uint32_t pv[4][4] = {}, pk[4][4] = {};  // the A operands of the dV and dK products, kept until their wait
    // dV and dK's products, their operands and accumulators: pinned in their registers up to the wait.
    auto settle_dkv = [&] {
        wgmma::fence_regs<D / 2>(&dv[0][0][0]);
        wgmma::fence_regs<D / 2>(&dk[0][0][0]);
        wgmma::fence_frags<16>(&pv[0][0]);
        wgmma::fence_frags<16>(&pk[0][0]);
    };
    // The zeros set here, before the walk: set on the way round an empty walk, they looked to ptxas
    // like writes into a running product, and it serialised every product (warning C7515).
    settle_dkv();
    const int r0 = warp * 16;  // the warp's 16 keys of its warpgroup's 64
    for (int it = 0, buf = 0; it < ntiles; it++, buf = next_buf<Bufs>(buf)) {
        if constexpr (Bufs == 2) {  // the buffer about to be refilled is the one dV and dK still read
            wgmma::wait<0>();
            settle_dkv();
        }
        tile_ready<Bufs>(it + 1 < ntiles, buf, [&](int next) { load_q(q1, next); });
        // The walk's indices, read before the products are issued so that they arrive while those run
        // (a load after a wgmma wait cannot move above it).
        const int x = x0 + it / SUB, sub = it % SUB, mid = P.mask_t[x], q2 = first(it + 2);
        const unsigned char* Qt = Qs + buf * TILE;
        const unsigned char* Gt = Gs + buf * TILE;
        float s[1][8][4], dp[1][8][4];
        score_products<D>(s[0], dp[0], Ks, Qt, Vs, Gt);  // S^T = K Q^T: keys x 64 queries; dP^T = V dO^T
        settle_dkv();  // the previous tile's dV and dK products, issued before these, are done too

        mask_tile<BLK, 1, 8>(s, P.masks_t, mid, sub * kKeyTile, a.T - q0, k0 - kb * BLK + r0, lane);
        probs_by_column<8, 1>(s, dp, Ls + buf * kKeyTile, Ds + buf * kKeyTile, a.scale_log2, lane);
        pack_probs(pv, s[0]);
        pack_probs(pk, dp[0]);
        wgmma::fence_regs<D / 2>(&dv[0][0][0]);
        wgmma::fence_regs<D / 2>(&dk[0][0][0]);
        wgmma::fence();
        pv_issue<D>(dv[0], pv, Gt);  // dV += P^T dO
        pv_issue<D>(dk[0], pk, Qt);  // dK += dS^T Q
        wgmma::commit();             // left running into the next tile
        q0 = q1;
        q1 = q2;
    }
    wgmma::wait<0>();
    settle_dkv();
    cp_async_wait<0>();
    bf16* kdst = a.dqkv + int64_t(b) * a.T * r.W3 + a.C + h * D;
    store_rows<D, 1>(kdst, r.W3, dk, P.order, k0 + r0, a.T, lane, a.merge, a.scale);
    store_rows<D, 1>(kdst + a.C, r.W3, dv, P.order, k0 + r0, a.T, lane, a.merge, 1.f);
}

template <int D, int BLK, int Bufs> __global__ void __launch_bounds__(kThreads, 2) dq_wgmma_kernel(BwdArgs a) {
    constexpr int NT = kThreads, SUB = BLK / kKeyTile, TILE = D / 64 * kPanel;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char* smem = swizzle_base(smem_raw);
    unsigned char* Ks = smem;              // Bufs x TILE
    unsigned char* Vs = Ks + Bufs * TILE;  // Bufs x TILE
    unsigned char* Qs = Vs + Bufs * TILE;  // TILE: the CTA's queries
    unsigned char* Gs = Qs + TILE;         // TILE (dO)
    const int h = blockIdx.y, b = blockIdx.z;
    const AttnPartDev P = a.parts[h];
    if (!P.row_ptr) return;
    const int qb = P.q_sched[blockIdx.x / (BLK / kRows)], q0 = qb * BLK + blockIdx.x % (BLK / kRows) * kRows;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const HeadRows<D> r(a, b, h);
    const int e0 = P.row_ptr[qb], ntiles = (P.row_ptr[qb + 1] - e0) * SUB;

    load_tile_sw128<D, NT>(Qs, r.qkv, r.W3, P.order, q0, a.T);
    load_tile_sw128<D, NT>(Gs, r.dout, a.C, P.order, q0, a.T);
    cp_async_commit();
    // A tile's first key; read a tile ahead of its load, so that the load does not wait for it.
    auto first = [&](int it) { return it < ntiles ? P.col[e0 + it / SUB] * BLK + (it % SUB) * kKeyTile : 0; };
    auto load_kv = [&](int k0, int buf) {
        load_tile_sw128<D, NT>(Ks + buf * TILE, r.qkv + a.C, r.W3, P.order, k0, a.T);
        load_tile_sw128<D, NT>(Vs + buf * TILE, r.qkv + 2 * a.C, r.W3, P.order, k0, a.T);
    };
    int k0 = first(0), k1 = first(1);  // this tile's first key, the next one's
    if (ntiles > 0) load_kv(k0, 0);
    cp_async_commit();

    const int r0 = warp * 16;  // the warp's 16 queries of its warpgroup's 64
    float L[1][2], Dq[1][2];
    row_lse_dsum<D, 1>(L, Dq, r, P.order, q0 + r0, a.T, lane);
    float dq[1][D / 8][4] = {};
    uint32_t da[4][4] = {};  // the A operand of the dQ product, kept until its wait
    auto settle_dq = [&] {
        wgmma::fence_regs<D / 2>(&dq[0][0][0]);
        wgmma::fence_frags<16>(&da[0][0]);
    };
    settle_dq();  // the zeros set before the walk, as in dK/dV
    for (int it = 0, buf = 0; it < ntiles; it++, buf = next_buf<Bufs>(buf)) {
        if constexpr (Bufs == 2) {  // the buffer about to be refilled is the one dQ's product still reads
            wgmma::wait<0>();
            settle_dq();
        }
        tile_ready<Bufs>(it + 1 < ntiles, buf, [&](int next) { load_kv(k1, next); });
        const int sub = it % SUB, mid = P.mask[e0 + it / SUB], k2 = first(it + 2);  // before the products, as in dK/dV
        const unsigned char* Kt = Ks + buf * TILE;
        const unsigned char* Vt = Vs + buf * TILE;
        float s[1][8][4], dp[1][8][4];
        score_products<D>(s[0], dp[0], Qs, Kt, Gs, Vt);  // S = Q K^T, dP = dO V^T
        settle_dq();  // the previous tile's dQ product, issued before these, is done too

        mask_tile<BLK, 1, 8>(s, P.masks, mid, sub * kKeyTile, a.T - k0, q0 - qb * BLK + r0, lane);
        dscores_by_row<8, 1>(s, dp, L, Dq, a.scale_log2);
        pack_probs(da, dp[0]);
        wgmma::fence_regs<D / 2>(&dq[0][0][0]);
        wgmma::fence();
        pv_issue<D>(dq[0], da, Kt);  // dQ += dS K
        wgmma::commit();             // left running into the next tile
        k0 = k1;
        k1 = k2;
    }
    wgmma::wait<0>();
    settle_dq();
    cp_async_wait<0>();
    store_rows<D, 1>(a.dqkv + int64_t(b) * a.T * r.W3 + h * D, r.W3, dq, P.order, q0 + r0, a.T, lane, a.merge, a.scale);
}

template <int D, int BLK, int Bufs> void launch(const BwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    allow_smem(reinterpret_cast<const void*>(dkv_wgmma_kernel<D, BLK, Bufs>), dkv_wgmma_smem<D, Bufs>());
    allow_smem(reinterpret_cast<const void*>(dq_wgmma_kernel<D, BLK, Bufs>), dq_wgmma_smem<D, Bufs>());
    const dim3 grid(plan.nblk * (BLK / kRows), a.NH, B);
    for_each_component(plan, a, [&](const BwdArgs& ak) {
        dkv_wgmma_kernel<D, BLK, Bufs><<<grid, kThreads, dkv_wgmma_smem<D, Bufs>(), s>>>(ak);
        CUDA_LAUNCH_CHECK();
        dq_wgmma_kernel<D, BLK, Bufs><<<grid, kThreads, dq_wgmma_smem<D, Bufs>(), s>>>(ak);
        CUDA_LAUNCH_CHECK();
    });
}

}  // namespace

void backward_wgmma(const BwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    if (a.C / a.NH == 64 && plan.block == 64) return launch<64, 64, kBufs>(a, plan, B, s);
    // Head size 128 with two buffers: two CTAs fit an SM (shared memory; 232 registers in dK/dV) where
    // three buffers would leave one.
    if (a.C / a.NH == 128 && plan.block == 64) return launch<128, 64, 2>(a, plan, B, s);
    if (a.C / a.NH == 128 && plan.block == 128) return launch<128, 128, 2>(a, plan, B, s);
    fail("backward_wgmma: no kernel for head size " + std::to_string(a.C / a.NH) + ", block " +
         std::to_string(plan.block));
}

}  // namespace st::gpu
