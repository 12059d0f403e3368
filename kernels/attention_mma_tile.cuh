// Tile steps shared by the attention kernels: gathering rows of one head into shared memory (in a
// component's order), 16-row products against tiles held in shared memory, and masking.
// Shared-memory rows are padded by 8 elements (16 bytes), which keeps ldmatrix free of bank conflicts.
#pragma once
#include <cstdint>

#include "kernels/mma.cuh"

namespace st::gpu {

using bf16 = __nv_bfloat16;

constexpr int kPad = 8;       // elements of padding per shared-memory row
constexpr int kKeyTile = 64;  // keys per tile: a layout block of 128 is two tiles
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float fast_exp2(float x) {  // ex2.approx: 2 ulp, exp2(-inf) = 0
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// Rows t0 .. t0 + rows - 1 (component order) of one head's D columns into dst (ld D + kPad). Row t
// of the sequence lives at src + order[t] * stride; rows at or past T are zero-filled.
template <int D, int NT> __device__ __forceinline__ void load_rows(bf16* dst, const bf16* src, int64_t stride,
                                                                   const int32_t* order, int t0, int rows, int T) {
    constexpr int CH = D / 8, LD = D + kPad;
    for (int i = threadIdx.x; i < rows * CH; i += NT) {
        const int r = i / CH, c = i % CH, t = t0 + r;
        const bool ok = t < T;
        const int64_t row = ok ? (order ? order[t] : t) : 0;
        mma::cp_async16(dst + r * LD + c * 8, src + row * stride + c * 8, ok);
    }
}

// A warp owns MT row tiles of 16 (MT = 2 halves the shared-memory reads per product: every B fragment
// loaded feeds two products). Accumulators are [MT][columns / 8][4].

// A fragments of MT*16 rows x D from shared memory.
template <int D, int MT>
__device__ __forceinline__ void load_a_frags(uint32_t (&f)[MT][D / 16][4], const bf16* rows, int ld, int lane) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
            mma::ldmatrix_x4(f[mt][kk],
                             rows + (mt * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * ld + kk * 16 + (lane / 16) * 8);
}

// One k-step of 16 of the products below: s += a (MT row tiles x 16) . columns kk*16.. of Brows^T.
template <int NTILE, int MT> __device__ __forceinline__ void product_k16(float (&s)[MT][NTILE][4],
                                                                         const uint32_t (&a)[MT][4], const bf16* brows,
                                                                         int ld, int kk, int lane) {
#pragma unroll
    for (int np = 0; np < NTILE / 2; np++) {
        uint32_t f[4];
        mma::ldmatrix_x4(f, brows + (np * 16 + (lane % 8) + (lane / 16) * 8) * ld + kk * 16 + ((lane / 8) % 2) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            mma::mma16816(s[mt][2 * np], a[mt], f[0], f[1]);
            mma::mma16816(s[mt][2 * np + 1], a[mt], f[2], f[3]);
        }
    }
}

// s (MT*16 x 8*NTILE) += A (MT*16 x D, fragments) . Brows^T, Brows being 8*NTILE rows of D in shared memory.
template <int D, int NTILE, int MT> __device__ __forceinline__ void tile_product(float (&s)[MT][NTILE][4],
                                                                                 const uint32_t (&a)[MT][D / 16][4],
                                                                                 const bf16* brows, int ld, int lane) {
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        uint32_t ak[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int i = 0; i < 4; i++) ak[mt][i] = a[mt][kk][i];
        product_k16<NTILE, MT>(s, ak, brows, ld, kk, lane);
    }
}

// The same with A read from shared memory step by step (fewer registers held).
template <int D, int NTILE, int MT>
__device__ __forceinline__ void tile_product_s(float (&s)[MT][NTILE][4], const bf16* arows, int lda, const bf16* brows,
                                               int ld, int lane) {
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        uint32_t ak[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
            mma::ldmatrix_x4(ak[mt],
                             arows + (mt * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * lda + kk * 16 + (lane / 16) * 8);
        product_k16<NTILE, MT>(s, ak, brows, ld, kk, lane);
    }
}

// acc (MT*16 x D) += A (MT*16 x 16, fragments) . rows (16 rows of D in shared memory): the P.V-shaped
// product, B fragments through transposing loads.
template <int D, int MT> __device__ __forceinline__ void accumulate_pv(float (&acc)[MT][D / 8][4],
                                                                       const uint32_t (&a)[MT][4], const bf16* rows,
                                                                       int ld, int lane) {
#pragma unroll
    for (int dp = 0; dp < D / 16; dp++) {
        uint32_t f[4];
        mma::ldmatrix_x4_trans(f, rows + ((lane % 8) + ((lane / 8) % 2) * 8) * ld + dp * 16 + (lane / 16) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            mma::mma16816(acc[mt][2 * dp], a[mt], f[0], f[1]);
            mma::mma16816(acc[mt][2 * dp + 1], a[mt], f[2], f[3]);
        }
    }
}

// The A fragments of columns 16j .. 16j+15 of MT 16-row accumulator tiles, rounded to bf16.
template <int NTILE, int MT>
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[MT][4], const float (&s)[MT][NTILE][4], int j) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        a[mt][0] = mma::pack_bf16(s[mt][2 * j][0], s[mt][2 * j][1]);
        a[mt][1] = mma::pack_bf16(s[mt][2 * j][2], s[mt][2 * j][3]);
        a[mt][2] = mma::pack_bf16(s[mt][2 * j + 1][0], s[mt][2 * j + 1][1]);
        a[mt][3] = mma::pack_bf16(s[mt][2 * j + 1][2], s[mt][2 * j + 1][3]);
    }
}

// Sets to -inf the scores of one accumulator row (half 0: row g, 1: row g + 8) whose bit in word is
// clear (bit c: column c of the tile) or whose column is at or past limit (the sequence end).
template <int NTILE>
__device__ __forceinline__ void mask_row(float (&s)[NTILE][4], int half, uint64_t word, int limit, int c4) {
#pragma unroll
    for (int j = 0; j < NTILE; j++)
#pragma unroll
        for (int q = 0; q < 2; q++) {
            const int col = j * 8 + c4 * 2 + q;
            if (!((word >> col) & 1) || col >= limit) s[j][half * 2 + q] = -INFINITY;
        }
}

// The mask bits of block row `row` from column col0 on (bit c of the word: column col0 + c); all set
// when the entry has no mask.
__device__ __forceinline__ uint64_t mask_word(const uint64_t* mk, int row, int block, int col0) {
    if (!mk) return ~uint64_t(0);
    const int bit = row * block + col0;
    return mk[bit >> 6] >> (bit & 63);
}

// Masks a tile of 8*NTILE columns starting at column col0 of its block, for a warp's MT row tiles
// from block row r0: where the entry has a mask (mid >= 0, masks: the component's block*block bit
// sets, or their transposes) or the tile reaches past the sequence (limit: columns left before it).
template <int BLK, int MT, int NTILE> __device__ __forceinline__ void mask_tile(float (&s)[MT][NTILE][4],
                                                                                const uint64_t* masks, int mid,
                                                                                int col0, int limit, int r0, int lane) {
    if (mid < 0 && limit >= 8 * NTILE) return;
    const uint64_t* mk = mid >= 0 ? masks + int64_t(mid) * (BLK * BLK / 64) : nullptr;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int half = 0; half < 2; half++)
            mask_row<NTILE>(s[mt], half, mask_word(mk, r0 + mt * 16 + lane / 4 + half * 8, BLK, col0), limit, lane % 4);
}

}  // namespace st::gpu
