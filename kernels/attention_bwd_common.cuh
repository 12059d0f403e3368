// What the three backward kernels (attention_bwd_mma.cu, attention_bwd_wgmma.cu, attention_bwd_ws.cu)
// share: their arguments, the probabilities and score gradients of a tile, and the rows' write.
#pragma once
#include "kernels/attention.h"
#include "kernels/attention_mma_tile.cuh"

namespace st::gpu {

struct BwdArgs {
    bf16* dqkv;
    const bf16* dout;
    const bf16* qkv;
    const float* lse;
    const float* dsum;
    const AttnPartDev* parts;
    int T, C, NH;
    float scale;       // 1/sqrt(D)
    float scale_log2;  // scale * log2(e)
    bool merge;        // a later component: add to what dqkv holds
};

// Each family's backward (attention_kernel.h), for the shapes attention_kernel_takes says it takes;
// attention_backward has filled dsum.
void backward_mma(const BwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s);    // attention_bwd_mma.cu
void backward_wgmma(const BwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s);  // attention_bwd_wgmma.cu
void backward_ws(const BwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s);     // attention_bwd_ws.cu

// Rows of dqkv for one warp's MT*16 rows x D accumulators: written, or added to (merge).
template <int D, int MT>
__device__ __forceinline__ void store_rows(bf16* dst, int64_t stride, const float (&acc)[MT][D / 8][4],
                                           const int32_t* order, int t_first, int T, int lane, bool merge, float mul) {
    const int g = lane / 4, c4 = lane % 4;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int t = t_first + mt * 16 + g + half * 8;
            if (t >= T) continue;
            bf16* row = dst + int64_t(order ? order[t] : t) * stride;
#pragma unroll
            for (int dt = 0; dt < D / 8; dt++) {
                const int col = dt * 8 + c4 * 2;
                float v0 = acc[mt][dt][half * 2] * mul, v1 = acc[mt][dt][half * 2 + 1] * mul;
                if (merge) {
                    const float2 prev = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(row + col));
                    v0 += prev.x;
                    v1 += prev.y;
                }
                *reinterpret_cast<__nv_bfloat162*>(row + col) = __floats2bfloat162_rn(v0, v1);
            }
        }
}

// One (batch, head) as a backward CTA reads it: q, k and v at qkv, qkv + C and qkv + 2C (rows 3C
// apart), dO (rows C apart), the head's lse and D by sequence position.
template <int D> struct HeadRows {
    const bf16* qkv;
    const bf16* dout;
    const float* lse;
    const float* dsum;
    int64_t W3;
    __device__ HeadRows(const BwdArgs& a, int b, int h)
        : qkv(a.qkv + int64_t(b) * a.T * 3 * int64_t(a.C) + h * D),
          dout(a.dout + int64_t(b) * a.T * a.C + h * D),
          lse(a.lse + (int64_t(b) * a.NH + h) * a.T),
          dsum(a.dsum + (int64_t(b) * a.NH + h) * a.T),
          W3(3 * int64_t(a.C)) {}
};

// lse and D of the n queries from t0 (component order) into shared memory, zeros past T:
// asynchronous like the tiles (plain loads stalled one warp, and the others at the next barrier,
// for a global round trip every tile).
template <int D, int NT, int N> __device__ __forceinline__ void load_lse_dsum(float* Ls, float* Ds,
                                                                              const HeadRows<D>& r,
                                                                              const int32_t* order, int t0, int T) {
#pragma unroll
    for (int k = 0; k < (N + NT - 1) / NT; k++) {
        const int i = threadIdx.x + k * NT, t = t0 + i;
        if (N % NT != 0 && i >= N) break;
        const bool ok = t < T;
        const int64_t pos = !ok ? 0 : order ? order[t] : t;
        mma::cp_async4(Ls + i, r.lse + pos, ok);
        mma::cp_async4(Ds + i, r.dsum + pos, ok);
    }
}

// The exponent offset of a query's probabilities, its lse in log2 units: p = exp2(s * scale_log2 - L).
// A query that sees no key (lse -inf) has only masked scores (-inf): L = +inf makes all of its
// probabilities 0 with no test per score.
__device__ __forceinline__ float prob_offset(float lse) { return lse == -INFINITY ? INFINITY : lse * kLog2e; }

// lse (as prob_offset) and D of a warp's accumulator rows g and g + 8 of MT row tiles from t_first.
template <int D, int MT> __device__ __forceinline__ void row_lse_dsum(float (&L)[MT][2], float (&Dq)[MT][2],
                                                                      const HeadRows<D>& r, const int32_t* order,
                                                                      int t_first, int T, int lane) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int t = t_first + mt * 16 + lane / 4 + half * 8;
            const int64_t pos = t < T ? (order ? order[t] : t) : -1;
            L[mt][half] = pos >= 0 ? prob_offset(r.lse[pos]) : 0.f;
            Dq[mt][half] = pos >= 0 ? r.dsum[pos] : 0.f;
        }
}

// A dK/dV tile (rows keys, columns queries): s = S^T becomes P^T = exp(S^T - lse) and dp = dP^T becomes
// dS^T = P^T (dP^T - D), lse (natural log) and D of each column's query in Ls and Ds (8-byte aligned).
template <int QN, int MT> __device__ __forceinline__ void probs_by_column(float (&s)[MT][QN][4], float (&dp)[MT][QN][4],
                                                                          const float* Ls, const float* Ds,
                                                                          float scale_log2, int lane) {
    const int c4 = lane % 4;
#pragma unroll
    for (int j = 0; j < QN; j++) {
        const float2 lse = *reinterpret_cast<const float2*>(Ls + j * 8 + c4 * 2);
        const float2 dsum = *reinterpret_cast<const float2*>(Ds + j * 8 + c4 * 2);
#pragma unroll
        for (int q = 0; q < 2; q++) {
            const float L = prob_offset(q ? lse.y : lse.x), Dq = q ? dsum.y : dsum.x;
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int half = 0; half < 2; half++) {
                    float& sv = s[mt][j][half * 2 + q];
                    sv = fast_exp2(sv * scale_log2 - L);  // exp2(-inf) = 0: masked scores need no test
                    dp[mt][j][half * 2 + q] = sv * (dp[mt][j][half * 2 + q] - Dq);
                }
        }
    }
}

// A dQ tile (rows queries, columns keys): dp = dP becomes dS = P (dP - D), P = exp(S - lse) from s,
// L (prob_offset) and Dq of the accumulator rows g and g + 8 of each row tile.
template <int KN, int MT>
__device__ __forceinline__ void dscores_by_row(const float (&s)[MT][KN][4], float (&dp)[MT][KN][4],
                                               const float (&L)[MT][2], const float (&Dq)[MT][2], float scale_log2) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < KN; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int half = i / 2;
                const float p = fast_exp2(s[mt][j][i] * scale_log2 - L[mt][half]);
                dp[mt][j][i] = p * (dp[mt][j][i] - Dq[mt][half]);
            }
}

}  // namespace st::gpu
