// The wgmma steps of the Hopper attention kernels (attention_fwd_wgmma.cu, attention_bwd_wgmma.cu),
// apart so that tests/gpu/test_wgmma_gpu.cu can check each against the CPU on one tile: a 64-row tile
// in the 128-byte swizzle, S = Q K^T for a warpgroup's 64 rows (both operands from shared memory), and
// acc += P V (P from registers).
#pragma once
#include "kernels/attention_mma_tile.cuh"
#include "kernels/wgmma.cuh"

namespace st::gpu {

constexpr int kPanel = kKeyTile * 128;  // bytes of one 64-column panel of a 64-row tile

// Streamed tiles three deep: tile it + 1 loads while the last product of tile it - 1, left running
// into tile it (it is waited for with tile it's scores), still reads its own: a little faster than
// waiting for each product at once.
constexpr int kBufs = 3;

template <int Bufs = kBufs> __device__ __forceinline__ int next_buf(int buf) { return buf + 1 == Bufs ? 0 : buf + 1; }

// The dynamic shared memory from its first 1024-byte boundary: the swizzle is a function of address
// bits, so the tiles must start on one (the kernels ask for 1024 bytes of slack).
__device__ __forceinline__ unsigned char* swizzle_base(unsigned char* raw) {
    return raw + ((1024 - (mma::smem_addr(raw) & 1023)) & 1023);
}

// The top of a walk's tile, buffer buf: once every warp is done with the buffer about to be refilled,
// the next tile's loads go out (load(next_buf(buf)), where more), and this tile's, issued a tile ago,
// are waited for and made visible to wgmma.
template <int Bufs = kBufs, typename Load> __device__ __forceinline__ void tile_ready(bool more, int buf, Load load) {
    __syncthreads();
    if (more) load(next_buf<Bufs>(buf));
    mma::cp_async_commit();
    mma::cp_async_wait<1>();
    wgmma::fence_proxy();  // cp.async wrote through the generic proxy; wgmma reads through the async one
    __syncthreads();
}

// Rows t0 .. t0 + 63 of one head's D columns into a swizzled tile (D / 64 panels); zeros past T.
// A thread takes 16-byte chunk c = tid % CH of rows tid / CH + k * RS: RS is a multiple of 8, so the
// chunk's panel, column and swizzle phase (row % 8) are the same for all of its rows and only the
// source row moves (the loop is a handful of instructions a chunk; it runs every tile).
template <int D, int NT> __device__ __forceinline__ void load_tile_sw128(unsigned char* dst, const bf16* src,
                                                                         int64_t stride, const int32_t* order, int t0,
                                                                         int T) {
    constexpr int CH = D / 8, RS = NT / CH;
    static_assert(NT % CH == 0 && RS % 8 == 0 && kKeyTile % RS == 0, "load_tile_sw128: thread count");
    const int c = threadIdx.x % CH, r = threadIdx.x / CH;
    dst += (c / 8) * kPanel + wgmma::sw128_offset(r, (c % 8) * 8);
    src += c * 8;
    if (!order) {  // a separate loop: a gather's load, even predicated off, would hold up the address
#pragma unroll
        for (int k = 0; k < kKeyTile / RS; k++) {
            const int t = t0 + r + k * RS;
            mma::cp_async16(dst + k * RS * 128, src + int64_t(t < T ? t : 0) * stride, t < T);
        }
        return;
    }
#pragma unroll
    for (int k = 0; k < kKeyTile / RS; k++) {
        const int t = t0 + r + k * RS;
        const bool ok = t < T;
        mma::cp_async16(dst + k * RS * 128, src + int64_t(ok ? order[t] : 0) * stride, ok);
    }
}

// s (the warp's 16 rows of the warpgroup's 64 x 64 keys) = A B^T, issued: A (64 rows, e.g. Q) and B
// (64 rows, e.g. K) both swizzled tiles read K-major, 16 columns of d (32 bytes of a row) per step.
// The caller commits and waits (products of one tile that do not depend on each other share one
// commit group).
template <int D>
__device__ __forceinline__ void qk_issue(float (&s)[8][4], const unsigned char* At, const unsigned char* Bt) {
    // One descriptor each, stepped by adding addresses / 16 to the low field (tiles lie below 256 KB).
    const uint64_t da = wgmma::desc_sw128(At, 1024, 16), db = wgmma::desc_sw128(Bt, 1024, 16);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        const int step = ((kk / 4) * kPanel + (kk % 4) * 32) / 16;
        wgmma::m64n64k16_ss<0>(&s[0][0], da + step, db + step, kk > 0);
    }
}

// The A fragments of P V from the probabilities in s (the warp's 16 rows x KN * 8 keys), rounded to bf16.
template <int KN> __device__ __forceinline__ void pack_probs(uint32_t (&pa)[KN / 2][4], const float (&s)[KN][4]) {
#pragma unroll
    for (int j = 0; j < KN / 2; j++) {
        pa[j][0] = mma::pack_bf16(s[2 * j][0], s[2 * j][1]);
        pa[j][1] = mma::pack_bf16(s[2 * j][2], s[2 * j][3]);
        pa[j][2] = mma::pack_bf16(s[2 * j + 1][0], s[2 * j + 1][1]);
        pa[j][3] = mma::pack_bf16(s[2 * j + 1][2], s[2 * j + 1][3]);
    }
}

// acc (the warp's 16 rows x D) += P V over J * 16 keys, issued: N-major B (rows are keys), 16 keys
// (2048 bytes) per step. pa stays unchanged until the caller's wait: the products read their A
// registers while they run.
template <int D, int J>
__device__ __forceinline__ void pv_issue(float (&acc)[D / 8][4], const uint32_t (&pa)[J][4], const unsigned char* Vt) {
    static_assert(J == 4 || D == 64, "pv_issue: keys past 64 are laid out for one panel only");
    const uint64_t d0 = wgmma::desc_sw128(Vt, 1024, kPanel);
#pragma unroll
    for (int j = 0; j < J; j++)
#pragma unroll
        for (int p = 0; p < D / 64; p++)
            wgmma::m64n64k16<1>(&acc[p * 8][0], pa[j], d0 + (p * kPanel + j * 2048) / 16, 1);
}

// The two above, each alone in its commit group and waited for.
template <int D>
__device__ __forceinline__ void qk_product(float (&s)[8][4], const unsigned char* Qt, const unsigned char* Kt) {
    wgmma::fence_regs<32>(&s[0][0]);
    wgmma::fence();
    qk_issue<D>(s, Qt, Kt);
    wgmma::commit();
    wgmma::wait<0>();
    wgmma::fence_regs<32>(&s[0][0]);
}

template <int D>
__device__ __forceinline__ void pv_product(float (&acc)[D / 8][4], const float (&s)[8][4], const unsigned char* Vt) {
    uint32_t pa[4][4];
    pack_probs(pa, s);
    wgmma::fence_regs<D / 2>(&acc[0][0]);
    wgmma::fence();
    pv_issue<D>(acc, pa, Vt);
    wgmma::commit();
    wgmma::wait<0>();
    wgmma::fence_regs<D / 2>(&acc[0][0]);
}

}  // namespace st::gpu
