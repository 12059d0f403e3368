// Incremental decoding kernels (decode.h). Attention over a head's cached keys is split across
// kSplits CTAs per (sequence, head), flash-decoding style: with one query per head there are too few
// heads to fill the GPU otherwise. Each CTA keeps a running max, sum and output over its share of the
// keys; the last one to finish merges the shares in a fixed order.
#include <cfloat>

#include "check.h"
#include "decode.h"

namespace st::gpu {

namespace {

constexpr int kSplits = 16;
constexpr int kWarps = 4;
constexpr float kLog2e = 1.4426950408889634f;

__global__ void embed_kernel(float* x, const uint8_t* tok, const float* wte, PosTables pos, const int* tp, int B, int C) {
    const int b = blockIdx.x, t = *tp;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float v = wte[int64_t(tok[b]) * C + c];
        for (int k = 0; k < pos.n; k++) v += pos.table[k][int64_t(pos.index[k][t]) * C + c];
        x[int64_t(b) * C + c] = v;
    }
}

__global__ void append_kernel(bf16* kc, bf16* vc, const bf16* qkv, const DecodeHead* heads, const int* tp, int NH, int D,
                              int S) {
    const int h = blockIdx.x, b = blockIdx.y, t = *tp, C = NH * D;
    const DecodeHead hd = heads[h];
    int slots[3];
    const int n = hd.write_slots(t, slots);
    const bf16* k = qkv + int64_t(b) * 3 * C + C + h * D;
    const bf16* v = k + C;
    for (int i = 0; i < n; i++) {
        const int64_t row = ((int64_t(b) * NH + h) * S + slots[i]) * D;
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            kc[row + d] = k[d];
            vc[row + d] = v[d];
        }
    }
}

// Merges a head's kSplits shares (max, sum, unnormalised output) into its output column d.
template <int D>
__device__ void combine(bf16* o, const float* part, int NH, int h, int b, int d) {
    const volatile float* p = part + (int64_t(b) * NH + h) * kSplits * (D + 2);   // written by other CTAs
    float M = -INFINITY;
    for (int s = 0; s < kSplits; s++) M = fmaxf(M, p[s * (D + 2)]);
    float L = 0, A = 0;
    for (int s = 0; s < kSplits; s++) {
        const float m = p[s * (D + 2)];
        if (m == -INFINITY) continue;
        const float f = exp2f(m - M);
        L += p[s * (D + 2) + 1] * f;
        A += p[s * (D + 2) + 2 + d] * f;
    }
    o[int64_t(b) * NH * D + h * D + d] = __float2bfloat16(L > 0 ? A / L : 0.f);
}

// One CTA per (head, sequence, split): kWarps warps take 32 keys at a time, one key per lane for the
// score, then every lane accumulates its D / 32 output columns over the 32 keys.
template <int D>
__global__ void __launch_bounds__(kWarps * 32) attend_kernel(bf16* o, float* part, unsigned* tickets, const bf16* qkv,
                                                             const bf16* kc, const bf16* vc, const DecodeHead* heads,
                                                             const int* tp, int NH, int S) {
    constexpr int DL = D / 32;   // output columns per lane
    const int h = blockIdx.x, b = blockIdx.y, split = blockIdx.z, t = *tp, C = NH * D;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const DecodeHead hd = heads[h];
    const DecodeKeys ks(hd, t);
    const int n = ks.count(), per = (n + kSplits - 1) / kSplits;
    const int k0 = split * per, k1 = min(n, k0 + per);
    __shared__ float q[D];
    __shared__ float wm[kWarps], wl[kWarps], wacc[kWarps][D];
    const bf16* qp = qkv + int64_t(b) * 3 * C + h * D;
    const float scale = kLog2e / sqrtf(float(D));
    for (int d = threadIdx.x; d < D; d += blockDim.x) q[d] = __bfloat162float(qp[d]) * scale;
    __syncthreads();
    const int64_t base = (int64_t(b) * NH + h) * S;
    float m = -INFINITY, l = 0, acc[DL] = {};
    for (int g = k0 + warp * 32; g < k1; g += kWarps * 32) {
        const int k = g + lane;
        const bool ok = k < k1;
        const int slot = ok ? ks.slot(hd, t, k) : 0;
        float s = -INFINITY;
        if (ok) {
            const uint4* kr = reinterpret_cast<const uint4*>(kc + (base + slot) * D);
            float dot = 0;
#pragma unroll
            for (int v = 0; v < D / 8; v++) {
                const uint4 w = kr[v];
                const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&w);
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float2 f = __bfloat1622float2(p[e]);
                    dot += f.x * q[v * 8 + 2 * e] + f.y * q[v * 8 + 2 * e + 1];
                }
            }
            s = dot;
        }
        float gmax = s;
#pragma unroll
        for (int o = 16; o > 0; o /= 2) gmax = fmaxf(gmax, __shfl_xor_sync(0xffffffffu, gmax, o));
        const float m_new = fmaxf(m, gmax);   // finite: the group has at least one key
        const float alpha = exp2f(m - m_new);
        const float p = ok ? exp2f(s - m_new) : 0.f;
        float ps = p;
#pragma unroll
        for (int o = 16; o > 0; o /= 2) ps += __shfl_xor_sync(0xffffffffu, ps, o);
        l = l * alpha + ps;
        m = m_new;
#pragma unroll
        for (int i = 0; i < DL; i++) acc[i] *= alpha;
        const int cnt = min(32, k1 - g);
        for (int kk = 0; kk < cnt; kk++) {
            const float pk = __shfl_sync(0xffffffffu, p, kk);
            const int sk = __shfl_sync(0xffffffffu, slot, kk);
            const bf16* vr = vc + (base + sk) * D;
#pragma unroll
            for (int i = 0; i < DL; i++) acc[i] += pk * __bfloat162float(vr[lane + 32 * i]);
        }
    }
    if (lane == 0) {
        wm[warp] = m;
        wl[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < DL; i++) wacc[warp][lane + 32 * i] = acc[i];
    __syncthreads();
    // This split's share: max, sum and unnormalised output, merged over the warps in order.
    float* out = part + ((int64_t(b) * NH + h) * kSplits + split) * (D + 2);
    if (threadIdx.x < D) {
        float M = -INFINITY;
        for (int w = 0; w < kWarps; w++) M = fmaxf(M, wm[w]);
        float L = 0, A = 0;
        for (int w = 0; w < kWarps; w++) {
            const float f = wm[w] == -INFINITY ? 0.f : exp2f(wm[w] - M);
            L += wl[w] * f;
            A += wacc[w][threadIdx.x] * f;
        }
        out[2 + threadIdx.x] = A;
        if (threadIdx.x == 0) {
            out[0] = M;
            out[1] = L;
        }
    }
    // The last split of a head to finish merges all of them, in split order (the same bits whichever
    // finishes last), and rearms the ticket for the next step.
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&tickets[b * NH + h], 1u) == kSplits - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (threadIdx.x < D) combine<D>(o, part, NH, h, b, threadIdx.x);
    if (threadIdx.x == 0) tickets[b * NH + h] = 0;
}

__global__ void advance_kernel(int* t) { ++*t; }

// x_out = x + y (y may be null), ln = LayerNorm(x_out): one block per row; the residual stream's add
// and the next LayerNorm in one pass.
__global__ void add_layernorm_kernel(float* x_out, bf16* ln, const float* x, const bf16* y, const float* w,
                                     const float* bias, int C) {
    const int b = blockIdx.x;
    const float* xr = x + int64_t(b) * C;
    float* xo = x_out + int64_t(b) * C;
    __shared__ float red[2][32];
    float sum = 0, sq = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float v = xr[c] + (y ? __bfloat162float(y[int64_t(b) * C + c]) : 0.f);
        xo[c] = v;
        sum += v;
    }
    auto block_sum = [&](float v, int slot) {
        for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (threadIdx.x % 32 == 0) red[slot][threadIdx.x / 32] = v;
        __syncthreads();
        float t = 0;
        for (int i = 0; i < int(blockDim.x) / 32; i++) t += red[slot][i];
        return t;
    };
    const float mean = block_sum(sum, 0) / float(C);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {   // each thread rereads what it wrote
        const float d = xo[c] - mean;
        sq += d * d;
    }
    const float rstd = rsqrtf(block_sum(sq, 1) / float(C) + 1e-5f);
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        ln[int64_t(b) * C + c] = __float2bfloat16((xo[c] - mean) * rstd * w[c] + bias[c]);
}

}  // namespace

DecodeHead decode_head(const AttnSpec& s, int n_head, int layer, int head, int n_ctx, int* slots) {
    DecodeHead h;
    const int l = s.stride;
    h.l = std::max(1, l);
    switch (s.pattern) {
        case Pattern::dense:
            h.full = 1, h.window = 1;
            break;
        case Pattern::local:
            h.ring = std::min(n_ctx, l + 1), h.window = 2;
            break;
        case Pattern::strided: {
            const Uses u = attn_uses(s, layer, head);
            h.column = u.a2;
            h.window = u.a1 ? 2 : 0;
            if (u.a2) h.full = 1;   // the column reaches back to the start: every key is read again
            else h.ring = std::min(n_ctx, l + 1);
            break;
        }
        case Pattern::fixed: {
            const Uses u = attn_uses(s, layer, head);
            const Summary sm = attn_summary(s, head);
            if (u.a1) h.ring = l, h.window = 3;
            if (u.a2) {
                h.summary = 1;
                h.lo = int(sm.lo);
                h.c = int(sm.hi - sm.lo);
                h.sum_base = h.ring;
                h.a2_own = !u.a1;
            }
            break;
        }
    }
    (void)n_head;
    *slots = h.full ? n_ctx : h.ring + (h.summary ? (n_ctx + l - 1) / l * h.c : 0);
    return h;
}

void decode_embed(float* x, const uint8_t* tok, const float* wte, const PosTables& pos, const int* t, int B, int C,
                  cudaStream_t s) {
    embed_kernel<<<B, 256, 0, s>>>(x, tok, wte, pos, t, B, C);
    CUDA_LAUNCH_CHECK();
}

void decode_append(bf16* kc, bf16* vc, const bf16* qkv, const DecodeHead* heads, const int* t, int B, int NH, int D,
                   int S, cudaStream_t s) {
    append_kernel<<<dim3(NH, B), 64, 0, s>>>(kc, vc, qkv, heads, t, NH, D, S);
    CUDA_LAUNCH_CHECK();
}

// The shares of every (sequence, head), then one ticket counter per (sequence, head).
size_t decode_scratch(int B, int NH, int D) { return size_t(B) * NH * (kSplits * (D + 2) * sizeof(float) + sizeof(unsigned)); }

void decode_attention(bf16* out, void* scratch, const bf16* qkv, const bf16* kc, const bf16* vc, const DecodeHead* heads,
                      const int* t, int B, int NH, int D, int S, cudaStream_t s) {
    float* part = static_cast<float*>(scratch);
    unsigned* tickets = reinterpret_cast<unsigned*>(part + size_t(B) * NH * kSplits * (D + 2));
    const dim3 grid(NH, B, kSplits);
#define ST_DECODE(d)                                                                                       \
    if (D == d) {                                                                                          \
        attend_kernel<d><<<grid, kWarps * 32, 0, s>>>(out, part, tickets, qkv, kc, vc, heads, t, NH, S);   \
        CUDA_LAUNCH_CHECK();                                                                               \
        return;                                                                                            \
    }
    ST_DECODE(32) ST_DECODE(64) ST_DECODE(128)
#undef ST_DECODE
    fail("decoding: head size " + std::to_string(D) + " is not 32, 64 or 128");
}

void decode_add_layernorm(float* x_out, bf16* ln, const float* x, const bf16* y, const float* w, const float* b, int B,
                          int C, cudaStream_t s) {
    add_layernorm_kernel<<<B, 256, 0, s>>>(x_out, ln, x, y, w, b, C);
    CUDA_LAUNCH_CHECK();
}

void decode_advance(int* t, cudaStream_t s) {
    advance_kernel<<<1, 1, 0, s>>>(t);
    CUDA_LAUNCH_CHECK();
}

}  // namespace st::gpu
