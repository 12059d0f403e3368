// The wgmma steps of the Hopper attention forward (attention_fwd_sm90.cu), apart so that
// tests/gpu/test_wgmma_gpu.cu can check each against the CPU on one tile: a 64-row tile of K or V
// in the 128-byte swizzle, S = Q K^T for a warpgroup's 64 query rows, and acc += P V.
#pragma once
#include "attention_tile.cuh"
#include "wgmma.cuh"

namespace st::gpu {

constexpr int kPanel = kKeyTile * 128;   // bytes of one 64-column panel of a 64-row tile

// Rows t0 .. t0 + 63 of one head's D columns into a swizzled tile (D / 64 panels); zeros past T.
template <int D, int NT>
__device__ __forceinline__ void load_tile_sw128(unsigned char* dst, const bf16* src, int64_t stride, const int32_t* order,
                                                int t0, int T) {
    constexpr int CH = D / 8;
    for (int i = threadIdx.x; i < kKeyTile * CH; i += NT) {
        const int r = i / CH, c = i % CH, t = t0 + r;
        const bool ok = t < T;
        const int64_t row = ok ? (order ? order[t] : t) : 0;
        mma::cp_async16(dst + (c / 8) * kPanel + wgmma::sw128_offset(r, (c % 8) * 8), src + row * stride + c * 8, ok);
    }
}

// s (the warp's 16 rows of the warpgroup's 64 x 64 keys) = Q K^T: K-major B, 16 columns of d
// (32 bytes of a swizzled row) per step.
template <int D>
__device__ __forceinline__ void qk_product(float (&s)[8][4], const uint32_t (&qf)[D / 16][4], const unsigned char* Kt) {
    wgmma::fence_regs<32>(&s[0][0]);
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
        wgmma::m64n64k16<0>(&s[0][0], qf[kk], wgmma::desc_sw128(Kt + (kk / 4) * kPanel + (kk % 4) * 32, 1024, 16), kk > 0);
    wgmma::commit();
    wgmma::wait<0>();
    wgmma::fence_regs<32>(&s[0][0]);
}

// acc (the warp's 16 rows x D) += P V, P the probabilities in s: N-major B (rows are keys), 16 keys
// (2048 bytes) per step. Every A fragment is made before the first product is issued: the products
// read their A registers while they run, so none may be reused for the next step's fragment.
template <int D>
__device__ __forceinline__ void pv_product(float (&acc)[D / 8][4], const float (&s)[8][4], const unsigned char* Vt) {
    uint32_t pa[4][4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        pa[j][0] = mma::pack_bf16(s[2 * j][0], s[2 * j][1]);
        pa[j][1] = mma::pack_bf16(s[2 * j][2], s[2 * j][3]);
        pa[j][2] = mma::pack_bf16(s[2 * j + 1][0], s[2 * j + 1][1]);
        pa[j][3] = mma::pack_bf16(s[2 * j + 1][2], s[2 * j + 1][3]);
    }
    wgmma::fence_regs<D / 2>(&acc[0][0]);
    wgmma::fence();
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int p = 0; p < D / 64; p++)
            wgmma::m64n64k16<1>(&acc[p * 8][0], pa[j], wgmma::desc_sw128(Vt + p * kPanel + j * 2048, 1024, kPanel), 1);
    wgmma::commit();
    wgmma::wait<0>();
    wgmma::fence_regs<D / 2>(&acc[0][0]);
}

}  // namespace st::gpu
