// Block-sparse flash attention, forward (FlashAttention-2 style on mma.sync): one CTA per query block
// of one head, each warp 16 or 32 query rows; key tiles of 64 stream through shared memory
// two deep (cp.async) while the previous tile is multiplied. Scores never leave registers: the
// online softmax rescales the output accumulators and P feeds the P.V product as an A fragment.
// Components after the first merge into the output by log-sum-exp (the CPU's order).
#include <cfloat>
#include <string>

#include "kernels/attention_fwd_common.cuh"
#include "kernels/check.h"

namespace st::gpu {

namespace {

using namespace mma;

// Row tiles of 16 per warp: two for blocks of 128 (fewer shared-memory reads per product), one where
// the registers would not hold two (head size 128) or the block is too small to share.
template <int D, int BLK> constexpr int fwd_mt() { return BLK == 128 && D <= 64 ? 2 : 1; }
template <int D, int BLK> constexpr int fwd_threads() { return BLK / (16 * fwd_mt<D, BLK>()) * 32; }

template <int D, int BLK> __global__ void __launch_bounds__(fwd_threads<D, BLK>()) fwd_kernel(FwdArgs a) {
    constexpr int MT = fwd_mt<D, BLK>(), NT = fwd_threads<D, BLK>(), LD = D + kPad, SUB = BLK / kKeyTile;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16* Qs = reinterpret_cast<bf16*>(smem);  // BLK x LD
    bf16* Ks = Qs + BLK * LD;                  // 2 x kKeyTile x LD
    bf16* Vs = Ks + 2 * kKeyTile * LD;         // 2 x kKeyTile x LD
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
        load_rows<D, NT>(Ks + buf * kKeyTile * LD, base + a.C, W3, P.order, k0, kKeyTile, a.T);
        load_rows<D, NT>(Vs + buf * kKeyTile * LD, base + 2 * a.C, W3, P.order, k0, kKeyTile, a.T);
    };
    if (ntiles > 0) load_kv(0, 0);
    cp_async_commit();

    float m[MT][2], l[MT][2] = {};
    float acc[MT][D / 8][4] = {};
#pragma unroll
    for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = -INFINITY;
    uint32_t qf[MT][D / 16][4];
    const int r0 = warp * 16 * MT;  // this warp's first row in the block
    for (int it = 0; it < ntiles; it++) {
        if (it + 1 < ntiles) load_kv(it + 1, (it + 1) & 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        if (it == 0) load_a_frags<D, MT>(qf, Qs + r0 * LD, LD, lane);
        const bf16* Kt = Ks + (it & 1) * kKeyTile * LD;
        const bf16* Vt = Vs + (it & 1) * kKeyTile * LD;
        float s[MT][8][4] = {};
        tile_product<D, 8, MT>(s, qf, Kt, LD, lane);  // s = Q K^T for MT*16 rows x 64 keys

        const int e = e0 + it / SUB, sub = it % SUB;
        mask_tile<BLK, MT, 8>(s, P.masks, P.mask[e], sub * kKeyTile, a.T - (P.col[e] * BLK + sub * kKeyTile), r0, lane);
        online_softmax<D, MT>(s, m, l, acc, a.scale_log2);
        // acc += P V: P from the score registers, V^T fragments by transposing loads.
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint32_t pa[MT][4];
            acc_to_a<8, MT>(pa, s, j);
            accumulate_pv<D, MT>(acc, pa, Vt + j * 16 * LD, LD, lane);
        }
        __syncthreads();  // the next iteration's prefetch overwrites this buffer
    }
    cp_async_wait<0>();

    write_output<D, MT>(a, P, blockIdx.y, blockIdx.z, qb * BLK + r0, m, l, acc, lane);
}

template <int D, int BLK> void launch_fwd(const FwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    constexpr int smem = (BLK + 4 * kKeyTile) * (D + kPad) * int(sizeof(bf16));
    allow_smem(reinterpret_cast<const void*>(fwd_kernel<D, BLK>), smem);
    for_each_component(plan, a, [&](const FwdArgs& ak) {
        fwd_kernel<D, BLK><<<dim3(plan.nblk, a.NH, B), fwd_threads<D, BLK>(), smem, s>>>(ak);
        CUDA_LAUNCH_CHECK();
    });
}

}  // namespace

void forward_mma(const FwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    const int D = a.C / a.NH;
    if (D == 32 && plan.block == 64) return launch_fwd<32, 64>(a, plan, B, s);
    if (D == 64 && plan.block == 64) return launch_fwd<64, 64>(a, plan, B, s);
    if (D == 128 && plan.block == 64) return launch_fwd<128, 64>(a, plan, B, s);
    if (D == 32 && plan.block == 128) return launch_fwd<32, 128>(a, plan, B, s);
    if (D == 64 && plan.block == 128) return launch_fwd<64, 128>(a, plan, B, s);
    if (D == 128 && plan.block == 128) return launch_fwd<128, 128>(a, plan, B, s);
    fail("forward_mma: no kernel for head size " + std::to_string(D) + ", block " + std::to_string(plan.block));
}

}  // namespace st::gpu
