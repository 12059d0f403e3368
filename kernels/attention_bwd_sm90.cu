// Block-sparse flash attention, backward, on Hopper's wgmma: the two kernels of attention_bwd.cu
// (dK/dV by key block over the transposed CSR, dQ by query block over the CSR: no atomics, the same
// bits every run), but each warpgroup of 4 warps takes 64 rows of the block and multiplies with wgmma,
// reading the streamed tiles (Q and dO, or K and V) straight from swizzled shared memory. A tile
// serves both of its uses from one layout: as the K-major B of a score product (S^T = K Q^T) and as
// the N-major B of an accumulation (dK += dS^T Q), as K and V do in attention_fwd_sm90.cu.
// The block's own rows (K and V, or Q and dO) stay in padded rows; their A fragments are loaded again
// for every product, since ptxas gave the registers of fragments kept across tiles to other values
// (kernels/dev/NOTES.md). Head size 64, blocks of 64 and 128; the mma.sync kernels serve the rest.
#include <cfloat>

#include "attention_bwd_common.cuh"
#include "attention_sm90_tile.cuh"
#include "check.h"

namespace st::gpu {

namespace {

using namespace mma;

template <int BLK>
constexpr int sm90_bwd_threads() { return BLK / 64 * 128; }   // a warpgroup per 64 rows of the block

template <int D, int BLK>
constexpr int dkv_sm90_smem() {   // alignment slack, Q and dO tiles two deep, K and V rows, lse and D
    return 1024 + 4 * (D / 64) * kPanel + 2 * BLK * (D + kPad) * 2 + 4 * kKeyTile * 4;
}
template <int D, int BLK>
constexpr int dq_sm90_smem() {   // alignment slack, K and V tiles two deep, Q and dO rows
    return 1024 + 4 * (D / 64) * kPanel + 2 * BLK * (D + kPad) * 2;
}

template <int D, int BLK>
__global__ void __launch_bounds__(sm90_bwd_threads<BLK>()) dkv_sm90_kernel(BwdArgs a) {
    constexpr int NT = sm90_bwd_threads<BLK>(), LD = D + kPad, SUB = BLK / kKeyTile, TILE = D / 64 * kPanel;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    // The swizzle is a function of address bits: the tiles start on a 1024-byte boundary.
    unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    unsigned char* Qs = smem;                              // 2 x TILE
    unsigned char* Gs = Qs + 2 * TILE;                     // 2 x TILE (dO)
    bf16* Ks = reinterpret_cast<bf16*>(Gs + 2 * TILE);     // BLK x LD
    bf16* Vs = Ks + BLK * LD;                              // BLK x LD
    float* Ls = reinterpret_cast<float*>(Vs + BLK * LD);   // 2 x kKeyTile: lse
    float* Ds = Ls + 2 * kKeyTile;                         // 2 x kKeyTile: dsum
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
        const int q0 = P.row_of[x0 + it / SUB] * BLK + (it % SUB) * kKeyTile;
        load_tile_sw128<D, NT>(Qs + buf * TILE, r.qkv, r.W3, P.order, q0, a.T);
        load_tile_sw128<D, NT>(Gs + buf * TILE, r.dout, a.C, P.order, q0, a.T);
        load_lse_dsum<D, NT>(Ls + buf * kKeyTile, Ds + buf * kKeyTile, r, P.order, q0, kKeyTile, a.T);
    };
    if (ntiles > 0) load_q(0, 0);
    cp_async_commit();

    float dk[1][D / 8][4] = {}, dv[1][D / 8][4] = {};
    const int r0 = warp * 16;   // the warp's 16 keys of its warpgroup's 64
    for (int it = 0; it < ntiles; it++) {
        __syncthreads();   // the buffer about to be refilled is no longer read
        if (it + 1 < ntiles) load_q(it + 1, (it + 1) & 1);
        cp_async_commit();
        cp_async_wait<1>();
        wgmma::fence_proxy();   // cp.async wrote through the generic proxy; wgmma reads through the async one
        __syncthreads();
        const int buf = it & 1;
        const unsigned char* Qt = Qs + buf * TILE;
        const unsigned char* Gt = Gs + buf * TILE;
        float s[1][8][4], dp[1][8][4];
        uint32_t f[1][D / 16][4];
        load_a_frags<D, 1>(f, Ks + r0 * LD, LD, lane);
        qk_product<D>(s[0], f[0], Qt);    // S^T: keys x 64 queries
        load_a_frags<D, 1>(f, Vs + r0 * LD, LD, lane);
        qk_product<D>(dp[0], f[0], Gt);   // dP^T = V dO^T

        const int x = x0 + it / SUB, sub = it % SUB;
        const int q0 = P.row_of[x] * BLK + sub * kKeyTile;
        mask_tile<BLK, 1, 8>(s, P.masks_t, P.mask[P.entry_of[x]], sub * kKeyTile, a.T - q0, r0, lane);
        probs_by_column<8, 1>(s, dp, Ls + buf * kKeyTile, Ds + buf * kKeyTile, a.scale_log2, lane);
        pv_product<D>(dv[0], s[0], Gt);    // dV += P^T dO
        pv_product<D>(dk[0], dp[0], Qt);   // dK += dS^T Q
    }
    cp_async_wait<0>();
    bf16* kdst = a.dqkv + int64_t(b) * a.T * r.W3 + a.C + h * D;
    store_rows<D, 1>(kdst, r.W3, dk, P.order, kb * BLK + r0, a.T, lane, a.merge, a.scale);
    store_rows<D, 1>(kdst + a.C, r.W3, dv, P.order, kb * BLK + r0, a.T, lane, a.merge, 1.f);
}

template <int D, int BLK>
__global__ void __launch_bounds__(sm90_bwd_threads<BLK>()) dq_sm90_kernel(BwdArgs a) {
    constexpr int NT = sm90_bwd_threads<BLK>(), LD = D + kPad, SUB = BLK / kKeyTile, TILE = D / 64 * kPanel;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    unsigned char* Ks = smem;                            // 2 x TILE
    unsigned char* Vs = Ks + 2 * TILE;                   // 2 x TILE
    bf16* Qs = reinterpret_cast<bf16*>(Vs + 2 * TILE);   // BLK x LD
    bf16* Gs = Qs + BLK * LD;                            // BLK x LD (dO)
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
        const int k0 = P.col[e0 + it / SUB] * BLK + (it % SUB) * kKeyTile;
        load_tile_sw128<D, NT>(Ks + buf * TILE, r.qkv + a.C, r.W3, P.order, k0, a.T);
        load_tile_sw128<D, NT>(Vs + buf * TILE, r.qkv + 2 * a.C, r.W3, P.order, k0, a.T);
    };
    if (ntiles > 0) load_kv(0, 0);
    cp_async_commit();

    const int r0 = warp * 16;   // the warp's 16 queries of its warpgroup's 64
    float L[1][2], Dq[1][2];
    row_lse_dsum<D, 1>(L, Dq, r, P.order, qb * BLK + r0, a.T, lane);
    float dq[1][D / 8][4] = {};
    for (int it = 0; it < ntiles; it++) {
        __syncthreads();
        if (it + 1 < ntiles) load_kv(it + 1, (it + 1) & 1);
        cp_async_commit();
        cp_async_wait<1>();
        wgmma::fence_proxy();
        __syncthreads();
        const unsigned char* Kt = Ks + (it & 1) * TILE;
        const unsigned char* Vt = Vs + (it & 1) * TILE;
        float s[1][8][4], dp[1][8][4];
        uint32_t f[1][D / 16][4];
        load_a_frags<D, 1>(f, Qs + r0 * LD, LD, lane);
        qk_product<D>(s[0], f[0], Kt);    // S = Q K^T
        load_a_frags<D, 1>(f, Gs + r0 * LD, LD, lane);
        qk_product<D>(dp[0], f[0], Vt);   // dP = dO V^T

        const int e = e0 + it / SUB, sub = it % SUB;
        mask_tile<BLK, 1, 8>(s, P.masks, P.mask[e], sub * kKeyTile, a.T - (P.col[e] * BLK + sub * kKeyTile), r0, lane);
        dscores_by_row<8, 1>(s, dp, L, Dq, a.scale_log2);
        pv_product<D>(dq[0], dp[0], Kt);   // dQ += dS K
    }
    cp_async_wait<0>();
    store_rows<D, 1>(a.dqkv + int64_t(b) * a.T * r.W3 + h * D, r.W3, dq, P.order, qb * BLK + r0, a.T, lane, a.merge, a.scale);
}

template <int D, int BLK>
void launch(const BwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    allow_smem(reinterpret_cast<const void*>(dkv_sm90_kernel<D, BLK>), dkv_sm90_smem<D, BLK>());
    allow_smem(reinterpret_cast<const void*>(dq_sm90_kernel<D, BLK>), dq_sm90_smem<D, BLK>());
    for (int k = 0; k < plan.slots; k++) {
        BwdArgs ak = a;
        ak.parts = plan.slot(k);
        ak.merge = k > 0;
        dkv_sm90_kernel<D, BLK><<<dim3(plan.nblk, a.NH, B), sm90_bwd_threads<BLK>(), dkv_sm90_smem<D, BLK>(), s>>>(ak);
        CUDA_LAUNCH_CHECK();
        dq_sm90_kernel<D, BLK><<<dim3(plan.nblk, a.NH, B), sm90_bwd_threads<BLK>(), dq_sm90_smem<D, BLK>(), s>>>(ak);
        CUDA_LAUNCH_CHECK();
    }
}

}  // namespace

// Written 2026-11-28 from the forward's tested tile steps (tests/gpu/test_wgmma_gpu.cu), not yet run on
// a GPU: the [gpu] attention tests run it under attention_use_wgmma(true). Off by default, as the
// wgmma forward (attention_wgmma).
bool attention_backward_sm90(const BwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    if (a.C / a.NH != 64) return false;
    if (plan.block == 64) return launch<64, 64>(a, plan, B, s), true;
    if (plan.block == 128) return launch<64, 128>(a, plan, B, s), true;
    return false;
}

}  // namespace st::gpu
