// What the decoding kernels share (decode.cu and decode_linear.cu, the per-op step;
// decode_cluster.cu, the one-launch step): the embedding, a row's LayerNorm, the GELU, 8-wide bf16
// dot products, and one query's attention over a head's cached keys. For attention a warp walks
// groups of 32 keys keeping a running max, sum and output; then the warps of a CTA merge into one
// share (max, sum, unnormalised output), which the kernels merge over CTAs in a fixed order.
#pragma once
#include <cuda_bf16.h>

#include <cfloat>

#include "kernels/decode.h"

namespace st::gpu::decode {

constexpr float kLog2e = 1.4426950408889634f;

__device__ inline float gelu_tanh(float x) {  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as the CPU
    const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.f + tanhf(u));
}

__device__ inline void fma8(float* acc, const uint4& w, float scale) {
    const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&w);
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const float2 f = __bfloat1622float2(p[e]);
        acc[2 * e] += scale * f.x;
        acc[2 * e + 1] += scale * f.y;
    }
}

// Element c of the embedding of byte tok at position t: its row of wte plus each position table's row.
__device__ inline float embedding(const float* wte, const PosTables& pos, int tok, int t, int C, int c) {
    float v = wte[int64_t(tok) * C + c];
    for (int k = 0; k < pos.n; k++) v += pos.table[k][int64_t(pos.index[k][t]) * C + c];
    return v;
}

// dst[0 .. C) = LayerNorm(x[0 .. C)) with w, b, by one warp: two passes over the row, then the write.
__device__ inline void layernorm_row(bf16* dst, const float* x, const float* w, const float* b, int C) {
    const int lane = threadIdx.x % 32;
    float sum = 0;
    for (int i = lane; i < C; i += 32) sum += x[i];
    for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float mean = sum / float(C);
    float sq = 0;
    for (int i = lane; i < C; i += 32) sq += (x[i] - mean) * (x[i] - mean);
    for (int o = 16; o > 0; o /= 2) sq += __shfl_xor_sync(0xffffffffu, sq, o);
    const float rstd = rsqrtf(sq / float(C) + 1e-5f);
    for (int i = lane; i < C; i += 32) dst[i] = __float2bfloat16((x[i] - mean) * rstd * w[i] + b[i]);
}

__device__ inline float dot8(const uint4& w, const float* x) {
    const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&w);
    float dot = 0;
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const float2 f = __bfloat1622float2(p[e]);
        dot += f.x * x[2 * e] + f.y * x[2 * e + 1];
    }
    return dot;
}

// A warp's walk over keys [k0, k1) of one head, groups of 32 keys from k0 + 32 * warp, every `warps`
// groups. A row of D bf16 is R = D / 8 lanes of 16 bytes, so the warp reads G = 32 / R rows at once,
// coalesced, and a group of 32 keys is R reads: lane (g, c) holds, for each read i, the partial dot
// of key i * G + g over columns [8c, 8c + 8), and then (after adding up the R lanes of the row) its
// score, its probability and its 8 columns of the value sum. q: the lane's 8 query columns, scaled by
// log2(e) / sqrt(D). row(value, key, slot) loads the lane's 16 bytes of a key's (or value's) row.
// On return m, l are the warp's max and sum, acc its output columns (added over the G row groups).
template <int D, class Row>
__device__ void attend_keys(const DecodeHead& hd, const DecodeKeys& ks, int t, const float* q, int k0, int k1,
                            int warp, int warps, Row row, float& m, float& l, float* acc) {
    constexpr int R = D / 8, G = 32 / R;
    const int lane = threadIdx.x % 32, g = lane / R;
    m = -INFINITY, l = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0;
    for (int g0 = k0 + warp * 32; g0 < k1; g0 += warps * 32) {
        int slot[R];
        float s[R];
        uint4 kv[R];
#pragma unroll
        for (int i = 0; i < R; i++) {
            const int key = g0 + i * G + g;
            slot[i] = key < k1 ? ks.slot(hd, t, key) : -1;
            kv[i] = slot[i] >= 0 ? row(false, key, slot[i]) : make_uint4(0, 0, 0, 0);
        }
        float gmax = -INFINITY;
#pragma unroll
        for (int i = 0; i < R; i++) {
            float dot = dot8(kv[i], q);
#pragma unroll
            for (int w = 1; w < R; w *= 2) dot += __shfl_xor_sync(0xffffffffu, dot, w);
            s[i] = slot[i] >= 0 ? dot : -INFINITY;
            gmax = fmaxf(gmax, s[i]);
        }
#pragma unroll
        for (int w = R; w < 32; w *= 2) gmax = fmaxf(gmax, __shfl_xor_sync(0xffffffffu, gmax, w));
        const float m_new = fmaxf(m, gmax);  // finite: the group has at least one key
        const float alpha = exp2f(m - m_new);
        float ps = 0;
#pragma unroll
        for (int i = 0; i < R; i++) {
            s[i] = slot[i] >= 0 ? exp2f(s[i] - m_new) : 0.f;  // now the probability
            ps += s[i];
        }
#pragma unroll
        for (int w = R; w < 32; w *= 2) ps += __shfl_xor_sync(0xffffffffu, ps, w);  // over the rows' groups
        l = l * alpha + ps;
        m = m_new;
#pragma unroll
        for (int i = 0; i < 8; i++) acc[i] *= alpha;
#pragma unroll
        for (int i = 0; i < R; i++)
            if (slot[i] >= 0) fma8(acc, row(true, g0 + i * G + g, slot[i]), s[i]);
    }
#pragma unroll
    for (int i = 0; i < 8; i++)  // the G lanes with the same columns
#pragma unroll
        for (int w = R; w < 32; w *= 2) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], w);
}

// The lane's 8 query columns of head h from a bf16 row, scaled for exp2.
template <int D> __device__ inline void load_query(float* q, const bf16* row) {
    const uint4 w = *reinterpret_cast<const uint4*>(row + (threadIdx.x % 32) % (D / 8) * 8);
    const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&w);
    const float scale = kLog2e / sqrtf(float(D));
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const float2 f = __bfloat1622float2(p[e]);
        q[2 * e] = f.x * scale;
        q[2 * e + 1] = f.y * scale;
    }
}

// The CTA's warps' (m, l, acc) into one share: out[0] max, out[1] sum, out[2 ..] the output,
// merged over the warps in order. ws: kWarps * (D + 2) floats of shared memory. Every thread of the
// CTA calls it; out may be in shared or global memory (written by the threads of the first D).
template <int D, int kWarps> __device__ void merge_warps(float* out, float* ws, float m, float l, const float* acc) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float* mine = ws + warp * (D + 2);
    if (lane == 0) mine[0] = m, mine[1] = l;
    if (lane < D / 8)
#pragma unroll
        for (int i = 0; i < 8; i++) mine[2 + lane * 8 + i] = acc[i];
    __syncthreads();
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float M = -INFINITY;
        for (int w = 0; w < kWarps; w++) M = fmaxf(M, ws[w * (D + 2)]);
        float L = 0, A = 0;
        for (int w = 0; w < kWarps; w++) {
            const float mw = ws[w * (D + 2)], f = mw == -INFINITY ? 0.f : exp2f(mw - M);
            L += ws[w * (D + 2) + 1] * f;
            A += ws[w * (D + 2) + 2 + d] * f;
        }
        out[2 + d] = A;
        if (d == 0) out[0] = M, out[1] = L;
    }
    __syncthreads();  // ws is free again
}

}  // namespace st::gpu::decode
