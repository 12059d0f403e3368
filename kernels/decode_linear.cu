// The matrix products of a decoding step (decode.h, decode_linear): a few rows of activations times a
// weight, so each weight row is read once per kRows rows and the product is a dot per output per row,
// not a tensor-core tile. cuBLASLt takes 4-6 us for each of these at batch 1 and a step has 49 of
// them; the step is bound by latency, so the LayerNorm before a product and the bias, GELU and
// residual addition after it happen in the same kernel. The rows are staged in shared memory once per
// CTA: a version that read them from global memory in every warp (4 outputs a CTA) measured 30 us
// against 18 us for the widest product at 16 rows, the same at 1 row.
#include "kernels/check.h"
#include "kernels/decode.h"
#include "kernels/decode_common.cuh"
#include "kernels/launch.h"

namespace st::gpu {

namespace {

constexpr int kRows = 16;  // activation rows a CTA takes (grid.y covers the rest)
constexpr int kWarps = 8;
constexpr int kOutPerWarp = 2;
constexpr int kOutPerCta = kWarps * kOutPerWarp;
constexpr int kPrefetch = 4;  // 16-byte weight loads a lane issues per output row before the wait: IC up to 1024

// x: kRows rows of IC bf16 in shared memory: the input as it is, or LayerNorm(x_f32) with w, b.
template <bool LN> __device__ void load_rows(bf16* xs, const DecodeLinear& a, int n0, int rows) {
    const int warp = threadIdx.x / 32, IC = a.IC;
    if constexpr (!LN) {
        for (int i = threadIdx.x; i < rows * IC / 8; i += blockDim.x)
            reinterpret_cast<uint4*>(xs)[i] = reinterpret_cast<const uint4*>(a.in + int64_t(n0) * IC)[i];
    } else {
        for (int r = warp; r < rows; r += kWarps)  // one warp a row
            decode::layernorm_row(xs + r * IC, a.in_f32 + int64_t(n0 + r) * IC, a.ln_w, a.ln_b, IC);
    }
}

// CTA (blockIdx.x, blockIdx.y): outputs [16 x, 16 x + 16) of rows [16 y, 16 y + 16). A lane reads 8
// weights (16 bytes) at a time, so a warp reads 512 bytes of a weight row per load. The first
// kPrefetch loads of each weight row are issued before the wait for the input (launch.h): the weights
// do not depend on the kernel before.
template <bool LN, DecodeEpilogue E> __global__ void __launch_bounds__(kWarps * 32) linear_kernel(DecodeLinear a) {
    extern __shared__ __align__(16) unsigned char smem[];
    bf16* xs = reinterpret_cast<bf16*>(smem);  // (kRows, IC)
    const int n0 = blockIdx.y * kRows, rows = min(kRows, a.N - n0), IC = a.IC;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int o0 = blockIdx.x * kOutPerCta + warp * kOutPerWarp;
    auto weights = [&](int j, int i) {
        return o0 + j < a.OC && i < IC ? *reinterpret_cast<const uint4*>(a.weight + int64_t(o0 + j) * IC + i)
                                       : make_uint4(0, 0, 0, 0);
    };
    uint4 pre[kPrefetch][kOutPerWarp];
#pragma unroll
    for (int k = 0; k < kPrefetch; k++)
#pragma unroll
        for (int j = 0; j < kOutPerWarp; j++) pre[k][j] = weights(j, lane * 8 + k * 256);
    grid_dependency_wait();
    load_rows<LN>(xs, a, n0, rows);
    __syncthreads();
    float acc[kOutPerWarp][kRows] = {};
    auto step = [&](int i, const uint4* raw) {  // columns [i, i + 8) of every output and row
        float w[kOutPerWarp][8];
#pragma unroll
        for (int j = 0; j < kOutPerWarp; j++) {
            const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&raw[j]);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float2 f = __bfloat1622float2(p[e]);
                w[j][2 * e] = f.x;
                w[j][2 * e + 1] = f.y;
            }
        }
#pragma unroll
        for (int r = 0; r < kRows; r++) {
            if (r >= rows) break;
            const uint4 x = *reinterpret_cast<const uint4*>(xs + r * IC + i);
            const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float2 f = __bfloat1622float2(p[e]);
#pragma unroll
                for (int j = 0; j < kOutPerWarp; j++) acc[j][r] += w[j][2 * e] * f.x + w[j][2 * e + 1] * f.y;
            }
        }
    };
#pragma unroll
    for (int k = 0; k < kPrefetch; k++)
        if (lane * 8 + k * 256 < IC) step(lane * 8 + k * 256, pre[k]);
    for (int i = lane * 8 + kPrefetch * 256; i < IC; i += 256) {
        uint4 raw[kOutPerWarp];
#pragma unroll
        for (int j = 0; j < kOutPerWarp; j++) raw[j] = weights(j, i);
        step(i, raw);
    }
#pragma unroll
    for (int j = 0; j < kOutPerWarp; j++)
#pragma unroll
        for (int r = 0; r < kRows; r++) {
            if (r >= rows) break;  // the same for the whole warp
#pragma unroll
            for (int o = 16; o > 0; o /= 2) acc[j][r] += __shfl_xor_sync(0xffffffffu, acc[j][r], o);
        }
    if (lane != 0) return;
#pragma unroll
    for (int j = 0; j < kOutPerWarp; j++) {
        const int o = o0 + j;
        if (o >= a.OC) break;
        const float bias = a.bias ? a.bias[o] : 0.f;
#pragma unroll
        for (int r = 0; r < kRows; r++) {
            if (r >= rows) break;
            const int64_t at = int64_t(n0 + r) * a.OC + o;
            const float y = acc[j][r] + bias;
            if constexpr (E == DecodeEpilogue::bf16) static_cast<bf16*>(a.out)[at] = __float2bfloat16(y);
            if constexpr (E == DecodeEpilogue::gelu_bf16)
                static_cast<bf16*>(a.out)[at] = __float2bfloat16(decode::gelu_tanh(y));
            if constexpr (E == DecodeEpilogue::residual_f32) static_cast<float*>(a.out)[at] = a.resid[at] + y;
            if constexpr (E == DecodeEpilogue::f32) static_cast<float*>(a.out)[at] = y;
        }
    }
}

template <bool LN, DecodeEpilogue E> void launch(const DecodeLinear& a, cudaStream_t s) {
    const int smem = kRows * a.IC * int(sizeof(bf16));
    allow_smem(reinterpret_cast<const void*>(&linear_kernel<LN, E>), smem);
    const dim3 grid((a.OC + kOutPerCta - 1) / kOutPerCta, (a.N + kRows - 1) / kRows);
    launch_dependent(linear_kernel<LN, E>, grid, kWarps * 32, smem, s, a);
}

}  // namespace

void decode_linear(const DecodeLinear& a, cudaStream_t s) {
    if (a.IC % 8 || !aligned16(a.weight) || (a.in && !aligned16(a.in)))
        fail("decoding: a product needs IC a multiple of 8 and 16-byte aligned operands");
    const bool ln = a.in_f32 != nullptr;
    switch (a.epilogue) {
        case DecodeEpilogue::bf16:
            return ln ? launch<true, DecodeEpilogue::bf16>(a, s) : launch<false, DecodeEpilogue::bf16>(a, s);
        case DecodeEpilogue::gelu_bf16:
            return ln ? launch<true, DecodeEpilogue::gelu_bf16>(a, s) : launch<false, DecodeEpilogue::gelu_bf16>(a, s);
        case DecodeEpilogue::residual_f32:
            return ln ? launch<true, DecodeEpilogue::residual_f32>(a, s)
                      : launch<false, DecodeEpilogue::residual_f32>(a, s);
        case DecodeEpilogue::f32:
            return ln ? launch<true, DecodeEpilogue::f32>(a, s) : launch<false, DecodeEpilogue::f32>(a, s);
    }
}

}  // namespace st::gpu
