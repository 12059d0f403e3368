// Block-sparse flash attention, forward, on Hopper's wgmma: the same walk as attention_fwd_mma.cu (one
// CTA per query block, key tiles of 64 three deep through cp.async, online softmax in registers), but
// each warpgroup of 4 warps multiplies its 64 query rows with wgmma, reading Q, K and V straight from
// swizzled shared memory (P V takes P from registers): no per-warp fragment loads, and the tensor
// cores run at Hopper's rate.
// Head size 64 with blocks of 64, and 128 (64-column panels) with both blocks (attention_kernel.h).
#include <cfloat>
#include <string>

#include "kernels/attention_fwd_common.cuh"
#include "kernels/attention_wgmma_tile.cuh"
#include "kernels/check.h"

namespace st::gpu {

namespace {

using namespace mma;

template <int BLK> constexpr int wgmma_threads() { return BLK / 64 * 128; }  // a warpgroup per 64 query rows

// A CTA takes the whole query block (its warpgroups share the key and value tiles): with a warpgroup
// a CTA and each loading its own, the forward was slower.
template <int D, int BLK>
__global__ void __launch_bounds__(wgmma_threads<BLK>(), D == 64 ? 512 / wgmma_threads<BLK>() : 1)
    fwd_wgmma_kernel(FwdArgs a) {
    constexpr int NT = wgmma_threads<BLK>(), SUB = BLK / kKeyTile, TILE = D / 64 * kPanel;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char* smem = swizzle_base(smem_raw);
    unsigned char* Ks = smem;               // kBufs x TILE
    unsigned char* Vs = Ks + kBufs * TILE;  // kBufs x TILE
    unsigned char* Qs = Vs + kBufs * TILE;  // SUB x TILE: the block's queries, a tile per warpgroup
    const int h = blockIdx.y, b = blockIdx.z;
    const AttnPartDev P = a.parts[h];
    if (!P.row_ptr) return;
    const int qb = P.q_sched[blockIdx.x], q0 = qb * BLK;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t W3 = 3 * int64_t(a.C);
    const bf16* base = a.qkv + int64_t(b) * a.T * W3 + h * D;
    const int e0 = P.row_ptr[qb], ntiles = (P.row_ptr[qb + 1] - e0) * SUB;

    for (int w = 0; w < SUB; w++) load_tile_sw128<D, NT>(Qs + w * TILE, base, W3, P.order, q0 + w * kKeyTile, a.T);
    cp_async_commit();
    // A tile's first key; read a tile ahead of its load, so that the load does not wait for it.
    auto first = [&](int it) { return it < ntiles ? P.col[e0 + it / SUB] * BLK + (it % SUB) * kKeyTile : 0; };
    auto load_kv = [&](int k0, int buf) {
        load_tile_sw128<D, NT>(Ks + buf * TILE, base + a.C, W3, P.order, k0, a.T);
        load_tile_sw128<D, NT>(Vs + buf * TILE, base + 2 * a.C, W3, P.order, k0, a.T);
    };
    int k0 = first(0), k1 = first(1);  // this tile's first key, the next one's
    if (ntiles > 0) load_kv(k0, 0);
    cp_async_commit();

    float m[1][2] = {{-INFINITY, -INFINITY}}, l[1][2] = {};
    float acc[1][D / 8][4] = {};
    uint32_t pa[4][4] = {};  // P V's A operand, kept until its wait
    auto settle_pv = [&] {   // P V's accumulators and operand, pinned in their registers up to the wait
        wgmma::fence_regs<D / 2>(&acc[0][0][0]);
        wgmma::fence_frags<16>(&pa[0][0]);
    };
    settle_pv();               // the zeros set before the walk (see dkv_wgmma_kernel)
    const int r0 = warp * 16;  // the warp's 16 rows of its warpgroup's 64
    for (int it = 0, buf = 0; it < ntiles; it++, buf = next_buf(buf)) {
        tile_ready(it + 1 < ntiles, buf, [&](int next) { load_kv(k1, next); });
        // The walk's indices, read before the product is issued so that they arrive while it runs (a
        // load after a wgmma wait cannot move above it).
        const int sub = it % SUB, mid = P.mask[e0 + it / SUB], k2 = first(it + 2);
        const unsigned char* Kt = Ks + buf * TILE;
        const unsigned char* Vt = Vs + buf * TILE;
        float s[1][8][4];
        qk_product<D>(s[0], Qs + threadIdx.x / 128 * TILE, Kt);
        settle_pv();  // the previous tile's P V, issued before S, is done too
        mask_tile<BLK, 1, 8>(s, P.masks, mid, sub * kKeyTile, a.T - k0, r0, lane);
        online_softmax<D, 1>(s, m, l, acc, a.scale_log2);
        pack_probs(pa, s[0]);
        wgmma::fence_regs<D / 2>(&acc[0][0][0]);
        wgmma::fence();
        pv_issue<D>(acc[0], pa, Vt);
        wgmma::commit();  // left running into the next tile
        k0 = k1;
        k1 = k2;
    }
    wgmma::wait<0>();
    settle_pv();
    cp_async_wait<0>();

    write_output<D, 1>(a, P, blockIdx.y, blockIdx.z, q0 + r0, m, l, acc, lane);
}

template <int D, int BLK> void launch(const FwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    constexpr int smem = 1024 + (2 * kBufs + BLK / 64) * (D / 64) * kPanel;
    allow_smem(reinterpret_cast<const void*>(fwd_wgmma_kernel<D, BLK>), smem);
    for_each_component(plan, a, [&](const FwdArgs& ak) {
        fwd_wgmma_kernel<D, BLK><<<dim3(plan.nblk, a.NH, B), wgmma_threads<BLK>(), smem, s>>>(ak);
        CUDA_LAUNCH_CHECK();
    });
}

}  // namespace

// With Q as register fragments, ptxas once gave their registers to P at head size 64
// (tests/gpu/test_wgmma_gpu.cu found it); Q is read from shared memory like K.
void forward_wgmma(const FwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    const int D = a.C / a.NH;
    if (D == 64 && plan.block == 64) return launch<64, 64>(a, plan, B, s);
    if (D == 128 && plan.block == 64) return launch<128, 64>(a, plan, B, s);
    if (D == 128 && plan.block == 128) return launch<128, 128>(a, plan, B, s);
    fail("forward_wgmma: no kernel for head size " + std::to_string(D) + ", block " + std::to_string(plan.block));
}

}  // namespace st::gpu
