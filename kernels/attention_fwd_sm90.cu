// Block-sparse flash attention, forward, on Hopper's wgmma: the same walk as attention_fwd.cu (one
// CTA per query block, key tiles of 64 two deep through cp.async, online softmax in registers), but
// each warpgroup of 4 warps multiplies its 64 query rows with wgmma, reading K and V straight from
// swizzled shared memory: no per-warp fragment loads for B, and the tensor cores run at Hopper's rate.
// Head sizes 64 and 128 (64-column panels); the mma.sync kernel serves 32.
#include <cfloat>

#include "attention_fwd_common.cuh"
#include "check.h"
#include "attention_sm90_tile.cuh"

namespace st::gpu {

namespace {

using namespace mma;

template <int BLK>
constexpr int sm90_threads() { return BLK / 64 * 128; }   // a warpgroup per 64 query rows

template <int D, int BLK>
__global__ void __launch_bounds__(sm90_threads<BLK>()) fwd_sm90_kernel(FwdArgs a) {
    constexpr int NT = sm90_threads<BLK>(), LD = D + kPad, SUB = BLK / kKeyTile, TILE = D / 64 * kPanel;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    // The swizzle is a function of address bits: the tiles start on a 1024-byte boundary.
    unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    unsigned char* Ks = smem;                            // 2 x TILE
    unsigned char* Vs = Ks + 2 * TILE;                   // 2 x TILE
    bf16* Qs = reinterpret_cast<bf16*>(Vs + 2 * TILE);   // BLK x LD (padded, read into registers every tile)
    const int h = blockIdx.y, b = blockIdx.z;
    const AttnPartDev P = a.parts[h];
    if (!P.row_ptr) return;
    const int qb = P.q_sched[blockIdx.x];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t W3 = 3 * int64_t(a.C);
    const bf16* base = a.qkv + int64_t(b) * a.T * W3 + h * D;
    const int e0 = P.row_ptr[qb], ntiles = (P.row_ptr[qb + 1] - e0) * SUB;

    load_rows<D, NT>(Qs, base, W3, P.order, qb * BLK, BLK, a.T);
    cp_async_commit();
    auto load_kv = [&](int it, int buf) {
        const int k0 = P.col[e0 + it / SUB] * BLK + (it % SUB) * kKeyTile;
        load_tile_sw128<D, NT>(Ks + buf * TILE, base + a.C, W3, P.order, k0, a.T);
        load_tile_sw128<D, NT>(Vs + buf * TILE, base + 2 * a.C, W3, P.order, k0, a.T);
    };
    if (ntiles > 0) load_kv(0, 0);
    cp_async_commit();

    float m[1][2] = {{-INFINITY, -INFINITY}}, l[1][2] = {};
    float acc[1][D / 8][4] = {};
    uint32_t qf[1][D / 16][4];
    const int r0 = warp * 16;   // the warp's 16 rows of its warpgroup's 64
    for (int it = 0; it < ntiles; it++) {
        if (it + 1 < ntiles) load_kv(it + 1, (it + 1) & 1);
        cp_async_commit();
        cp_async_wait<1>();
        wgmma::fence_proxy();   // cp.async wrote through the generic proxy; wgmma reads through the async one
        __syncthreads();
        // Q's fragments again every tile: kept from the first, ptxas (CUDA 13.0) gave their registers
        // at D = 64 to the P fragments of pv_product, so the second tile's S = Q K^T read P as Q (seen
        // in the SASS of tests/gpu/test_wgmma_gpu.cu's two-round probe, 2026-11-28).
        load_a_frags<D, 1>(qf, Qs + r0 * LD, LD, lane);
        const unsigned char* Kt = Ks + (it & 1) * TILE;
        const unsigned char* Vt = Vs + (it & 1) * TILE;
        float s[1][8][4];
        qk_product<D>(s[0], qf[0], Kt);
        const int e = e0 + it / SUB, sub = it % SUB;
        mask_tile<BLK, 1, 8>(s, P.masks, P.mask[e], sub * kKeyTile, a.T - (P.col[e] * BLK + sub * kKeyTile), r0, lane);
        online_softmax<D, 1>(s, m, l, acc, a.scale_log2);
        pv_product<D>(acc[0], s[0], Vt);
        __syncthreads();   // the next iteration's prefetch overwrites this buffer
    }
    cp_async_wait<0>();

    write_output<D, 1>(a, P, qb * BLK + r0, m, l, acc, lane);
}

template <int D, int BLK>
void launch(const FwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    constexpr int smem = 1024 + 4 * (D / 64) * kPanel + BLK * (D + kPad) * int(sizeof(bf16));
    allow_smem(reinterpret_cast<const void*>(fwd_sm90_kernel<D, BLK>), smem);
    for (int k = 0; k < plan.slots; k++) {
        FwdArgs ak = a;
        ak.parts = plan.slot(k);
        ak.merge = k > 0;
        fwd_sm90_kernel<D, BLK><<<dim3(plan.nblk, a.NH, B), sm90_threads<BLK>(), smem, s>>>(ak);
        CUDA_LAUNCH_CHECK();
    }
}

}  // namespace

// Head size 64 failed the [gpu] attention tests on an H200 once a row had more than one key tile
// (relative error 0.4 to 0.7, 2026-11-28): the Q fragments' registers reused, above. With Q reloaded
// every tile it is expected to pass but has not yet run on a GPU, so only 128 comes here; 64 stays on
// mma.sync. The path is off by default (attention_wgmma).
bool attention_forward_sm90(const FwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    const int D = a.C / a.NH;
#define ST_FWD(d, blk) \
    if (D == d && plan.block == blk) return launch<d, blk>(a, plan, B, s), true;
    ST_FWD(128, 64) ST_FWD(128, 128)
#undef ST_FWD
    return false;
}

}  // namespace st::gpu
