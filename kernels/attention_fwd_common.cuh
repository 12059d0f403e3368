// What the three forward kernels (attention_fwd_mma.cu, attention_fwd_wgmma.cu, attention_fwd_ws.cu)
// share: their arguments, the online softmax over a tile of scores, and the normalised, merged write.
#pragma once
#include "kernels/attention.h"
#include "kernels/attention_mma_tile.cuh"

namespace st::gpu {

struct FwdArgs {
    bf16* out;
    float* lse;
    const bf16* qkv;
    const AttnPartDev* parts;
    int T, C, NH;
    float scale_log2;  // 1/sqrt(D) * log2(e): scores live in base 2
    bool merge;        // a later component: combine with what out and lse hold
};

// Each family's forward (attention_kernel.h), for the shapes attention_kernel_takes says it takes.
void forward_mma(const FwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s);    // attention_fwd_mma.cu
void forward_wgmma(const FwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s);  // attention_fwd_wgmma.cu
void forward_ws(const FwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s);     // attention_fwd_ws.cu

// One row tile's scores s (KN column tiles of 8 keys, raw dot products) into probabilities, updating
// its rows' running max m and sum l (base-2 logits: exp2 is one instruction); alpha: the factor by
// which what the rows accumulated so far must be rescaled (rescale_rows). The row's max and sum run
// in four independent chains (R), not one: a chain of 2 KN dependent additions is latency the two
// warps a scheduler cannot hide.
template <int KN> __device__ __forceinline__ void softmax_rows(float (&s)[KN][4], float (&m)[2], float (&l)[2],
                                                               float (&alpha)[2], float scale_log2) {
    constexpr int R = KN % 4 == 0 ? 4 : 1;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        float mx[R];
#pragma unroll
        for (int r = 0; r < R; r++) mx[r] = -INFINITY;
#pragma unroll
        for (int j = 0; j < KN; j++) mx[j % R] = fmaxf(mx[j % R], fmaxf(s[j][half * 2], s[j][half * 2 + 1]));
#pragma unroll
        for (int r = 1; r < R; r++) mx[0] = fmaxf(mx[0], mx[r]);
        const float m_new = fmaxf(m[half], mma::quad_max(mx[0]) * scale_log2);
        const float shift = m_new == -INFINITY ? 0.f : m_new;  // a row with nothing yet stays at zero
        alpha[half] = fast_exp2(m[half] - shift);
        m[half] = m_new;
        float rs[R] = {};
#pragma unroll
        for (int j = 0; j < KN; j++)
#pragma unroll
            for (int q = 0; q < 2; q++) {
                float p = fast_exp2(s[j][half * 2 + q] * scale_log2 - shift);
                s[j][half * 2 + q] = p;
                rs[j % R] += p;
            }
#pragma unroll
        for (int r = 1; r < R; r++) rs[0] += rs[r];
        l[half] = l[half] * alpha[half] + rs[0];
    }
}

// A row tile's output accumulators times its rows' alpha (softmax_rows).
template <int D> __device__ __forceinline__ void rescale_rows(float (&acc)[D / 8][4], const float (&alpha)[2]) {
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[dt][i] *= alpha[i / 2];
}

// One tile of scores s (MT row tiles x 64 keys) into probabilities, the rows' outputs rescaled at once.
template <int D, int MT> __device__ __forceinline__ void online_softmax(float (&s)[MT][8][4], float (&m)[MT][2],
                                                                        float (&l)[MT][2], float (&acc)[MT][D / 8][4],
                                                                        float scale_log2) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float alpha[2];
        softmax_rows<8>(s[mt], m[mt], l[mt], alpha, scale_log2);
        rescale_rows<D>(acc[mt], alpha);
    }
}

// Normalises a warp's rows (head h of batch row b, component rows t_first ..) and writes them with
// their log-sum-exp; a later component merges with the earlier ones by log-sum-exp.
template <int D, int MT> __device__ __forceinline__ void write_output(const FwdArgs& a, const AttnPartDev& P, int h,
                                                                      int b, int t_first, const float (&m)[MT][2],
                                                                      const float (&l)[MT][2],
                                                                      const float (&acc)[MT][D / 8][4], int lane) {
    const int g = lane / 4, c4 = lane % 4;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float lc[2], wp[2], wc[2];
        int64_t pos[2];
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const float lsum = mma::quad_sum(l[mt][half]);
            const int t = t_first + mt * 16 + g + half * 8;
            pos[half] = t < a.T ? (P.order ? P.order[t] : t) : -1;
            lc[half] = lsum > 0 ? (m[mt][half] + __log2f(lsum)) * kLn2 : -INFINITY;
            const float lp = (a.merge && pos[half] >= 0) ? a.lse[(int64_t(b) * a.NH + h) * a.T + pos[half]] : -INFINITY;
            wp[half] = 0;
            wc[half] = lsum > 0 ? 1.f / lsum : 0.f;
            if (lp != -INFINITY && lc[half] != -INFINITY) {
                const float mx = fmaxf(lp, lc[half]);
                const float ln = mx + logf(expf(lp - mx) + expf(lc[half] - mx));
                wp[half] = expf(lp - ln);
                wc[half] *= expf(lc[half] - ln);
                lc[half] = ln;
            } else if (lc[half] == -INFINITY && a.merge) {
                pos[half] = -1;  // this component adds nothing to the row: keep what is there
            }
        }
        __syncwarp();  // every lane has read the old log-sum-exp before lane 0 of its quad rewrites it
#pragma unroll
        for (int half = 0; half < 2; half++) {
            if (pos[half] < 0) continue;
            bf16* orow = a.out + (int64_t(b) * a.T + pos[half]) * a.C + h * D;
#pragma unroll
            for (int dt = 0; dt < D / 8; dt++) {
                const int col = dt * 8 + c4 * 2;
                float o0 = acc[mt][dt][half * 2] * wc[half], o1 = acc[mt][dt][half * 2 + 1] * wc[half];
                if (wp[half] != 0) {
                    const float2 prev = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(orow + col));
                    o0 += wp[half] * prev.x;
                    o1 += wp[half] * prev.y;
                }
                *reinterpret_cast<__nv_bfloat162*>(orow + col) = __floats2bfloat162_rn(o0, o1);
            }
            if (c4 == 0) a.lse[(int64_t(b) * a.NH + h) * a.T + pos[half]] = lc[half];
        }
    }
}

}  // namespace st::gpu
