// Incremental decoding kernels (decode.h). Attention over a head's cached keys is split across
// several CTAs per (sequence, head), flash-decoding style: with one query per head there are too few
// heads to fill the GPU otherwise. Each CTA keeps a running max, sum and output over its share of the
// keys; the last one to finish merges the shares in a fixed order. The attention and the products
// (decode_linear.cu) start early and wait for their inputs (launch.h).
#include <algorithm>
#include <cfloat>

#include "kernels/check.h"
#include "kernels/decode.h"
#include "kernels/decode_common.cuh"
#include "kernels/launch.h"

namespace st::gpu {

namespace {

// A split takes about kKeysPerSplit of the keys a query reads (one 32-key group per warp), and there
// are at most kMaxSplits: enough CTAs to keep the memory busy at batch 1, a merge of a few dozen
// shares. The grid has room for the most keys the cache can hold; the splits beyond what position t
// needs return at once.
constexpr int kWarps = 8;
constexpr int kKeysPerSplit = 256;
constexpr int kMaxSplits = 64;

__global__ void embed_kernel(float* x, const uint8_t* tok, const float* wte, PosTables pos, const int* tp, int B,
                             int C) {
    const int b = blockIdx.x, t = *tp;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        x[int64_t(b) * C + c] = decode::embedding(wte, pos, tok[b], t, C, c);
}

// Merges the `splits` shares (max, sum, unnormalised output) of head h of sequence b, in split order.
// The shares were written by other CTAs: read through L2 (__ldcg), never from this SM's L1, which
// may hold the lines of an earlier step.
template <int D> __device__ void combine(bf16* o, const float* part, int NH, int h, int b, int splits) {
    __shared__ float f[kMaxSplits];
    __shared__ float total;
    const float* p = part + (int64_t(b) * NH + h) * splits * (D + 2);
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        float m0 = lane < splits ? __ldcg(p + lane * (D + 2)) : -INFINITY;
        float m1 = lane + 32 < splits ? __ldcg(p + (lane + 32) * (D + 2)) : -INFINITY;
        float M = fmaxf(m0, m1);
        for (int o = 16; o > 0; o /= 2) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
        const float f0 = m0 == -INFINITY ? 0.f : exp2f(m0 - M), f1 = m1 == -INFINITY ? 0.f : exp2f(m1 - M);
        if (lane < splits) f[lane] = f0;
        if (lane + 32 < splits) f[lane + 32] = f1;
        float L = (lane < splits ? f0 * __ldcg(p + lane * (D + 2) + 1) : 0.f) +
                  (lane + 32 < splits ? f1 * __ldcg(p + (lane + 32) * (D + 2) + 1) : 0.f);
        for (int o = 16; o > 0; o /= 2) L += __shfl_xor_sync(0xffffffffu, L, o);
        if (lane == 0) total = L;
    }
    __syncthreads();
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float A = 0;
#pragma unroll 8
        for (int s = 0; s < splits; s++) A += f[s] * __ldcg(p + s * (D + 2) + 2 + d);
        o[int64_t(b) * NH * D + h * D + d] = __float2bfloat16(total > 0 ? A / total : 0.f);
    }
}

// One CTA per (head, sequence, split) over its share of the head's keys (attend_keys). Split 0 also
// stores the key and value of position t into the cache; any read of position t in this step takes
// them from qkv instead, so no CTA waits for that store.
template <int D> __global__ void __launch_bounds__(kWarps * 32)
    attend_kernel(bf16* o, float* part, unsigned* tickets, const bf16* qkv, bf16* kc, bf16* vc, const DecodeHead* heads,
                  const int* tp, int NH, int S) {
    const int h = blockIdx.x, b = blockIdx.y, split = blockIdx.z, t = *tp, C = NH * D;
    const int warp = threadIdx.x / 32, col = threadIdx.x % 32 % (D / 8) * 8;
    const DecodeHead hd = heads[h];
    const DecodeKeys ks(hd, t);
    const int n = ks.count();
    const int splits = min(int(gridDim.z), max(1, (n + kKeysPerSplit - 1) / kKeysPerSplit)),
              per = (n + splits - 1) / splits;
    const int k0 = split * per, k1 = min(n, k0 + per);
    const bool last_is_t = n > 0 && ks.position(hd, t, n - 1) == t;  // key t, when read, is the last
    const int64_t base = (int64_t(b) * NH + h) * S;
    const bf16* kq = qkv + int64_t(b) * 3 * C + C + h * D;  // key and value of position t
    const bf16* vq = kq + C;
    grid_dependency_wait();  // qkv comes from the product before
    if (split >= splits) return;

    if (split == 0) {
        int slots[3];
        const int ns = hd.write_slots(t, slots);
        for (int i = 0; i < ns; i++)
            for (int d = threadIdx.x; d < D; d += blockDim.x) {
                kc[(base + slots[i]) * D + d] = kq[d];
                vc[(base + slots[i]) * D + d] = vq[d];
            }
    }
    float q[8];
    decode::load_query<D>(q, qkv + int64_t(b) * 3 * C + h * D);
    auto row = [&](bool value, int key, int slot) {
        const bf16* r = last_is_t && key == n - 1 ? (value ? vq : kq) : (value ? vc : kc) + (base + slot) * D;
        return *reinterpret_cast<const uint4*>(r + col);
    };
    float m, l, acc[8];
    decode::attend_keys<D>(hd, ks, t, q, k0, k1, warp, kWarps, row, m, l, acc);
    // This split's share: max, sum and unnormalised output, merged over the warps in order.
    __shared__ float ws[kWarps * (D + 2)];
    decode::merge_warps<D, kWarps>(part + ((int64_t(b) * NH + h) * splits + split) * (D + 2), ws, m, l, acc);
    // The last split of a head to finish merges all of them, in split order (the same bits whichever
    // finishes last), and rearms the ticket for the next step.
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&tickets[b * NH + h], 1u) == unsigned(splits) - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    combine<D>(o, part, NH, h, b, splits);
    if (threadIdx.x == 0) tickets[b * NH + h] = 0;
}

__global__ void advance_kernel(int* t) { ++*t; }

// One block per row: x_out = x + y, then its LayerNorm in bf16.
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
    for (int c = threadIdx.x; c < C; c += blockDim.x) {  // each thread rereads what it wrote
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
            if (u.a2)
                h.full = 1;  // the column reaches back to the start: every key is read again
            else
                h.ring = std::min(n_ctx, l + 1);
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

static int decode_splits(int S) { return std::clamp((S + kKeysPerSplit - 1) / kKeysPerSplit, 1, kMaxSplits); }

// The shares of every (sequence, head), then one ticket counter per (sequence, head).
size_t decode_scratch(int B, int NH, int D, int S) {
    return size_t(B) * NH * (decode_splits(S) * (D + 2) * sizeof(float) + sizeof(unsigned));
}

void decode_attention(bf16* out, void* scratch, const bf16* qkv, bf16* kc, bf16* vc, const DecodeHead* heads,
                      const int* t, int B, int NH, int D, int S, cudaStream_t s) {
    const int splits = decode_splits(S);
    float* part = static_cast<float*>(scratch);
    unsigned* tickets = reinterpret_cast<unsigned*>(part + size_t(B) * NH * splits * (D + 2));
    const dim3 grid(NH, B, splits);
    switch (D) {
        case 32:
            return launch_dependent(attend_kernel<32>, grid, kWarps * 32, 0, s, out, part, tickets, qkv, kc, vc, heads,
                                    t, NH, S);
        case 64:
            return launch_dependent(attend_kernel<64>, grid, kWarps * 32, 0, s, out, part, tickets, qkv, kc, vc, heads,
                                    t, NH, S);
        case 128:
            return launch_dependent(attend_kernel<128>, grid, kWarps * 32, 0, s, out, part, tickets, qkv, kc, vc, heads,
                                    t, NH, S);
    }
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
