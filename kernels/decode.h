// Incremental decoding on the GPU: B sequences advance one position per step, all at the same
// position t, which lives on the device so that one captured CUDA graph serves every step. The KV
// cache of a head keeps only the keys its pattern will read again (DecodeHead), not the whole
// context: for the fixed pattern the current chunk and every chunk's summary, for local a window.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/ops.h"
#include "layout.h"

namespace st::gpu {

// Where one head's keys live in its cache and which of them query t reads (the sets of attn_keys).
struct DecodeHead {
    int full = 0;     // slot j holds key j for every j (dense; strided heads that use the column)
    int ring = 0;     // > 0: slot j % ring holds key j (a window: local, strided A1, fixed A1)
    int window = 0;   // 0: none; 1: [0, t]; 2: [t - l, t]; 3: the chunk of t
    int column = 0;   // strided A2: keys t % l, t % l + l, ... below the window
    int summary = 0;  // fixed A2: keys j with j % l in [lo, lo + c), at slot sum_base + (j / l) * c + j % l - lo
    int l = 1, lo = 0, c = 0, sum_base = 0;
    int a2_own = 0;  // fixed A2 without A1: the summary of t's own chunk too (up to t)

    // The slots that key t is written to (at most 3); returns how many.
    __host__ __device__ int write_slots(int t, int* slots) const {
        int n = 0;
        if (full) slots[n++] = t;
        if (ring) slots[n++] = t % ring;
        const int r = t % l - lo;
        if (summary && r >= 0 && r < c) slots[n++] = sum_base + t / l * c + r;
        return n;
    }
};

// The keys query t reads, as an index k in [0, count()) -> cache slot. Order: the strided column,
// the fixed summaries, then the window: attn_keys' sets and order.
struct DecodeKeys {
    int n_col = 0, n_sum = 0, n_win = 0, win_lo = 0;
    __host__ __device__ DecodeKeys(const DecodeHead& h, int t) {
        const int l = h.l;
        win_lo = t + 1;
        if (h.window == 1) win_lo = 0;
        if (h.window == 2) win_lo = t - l > 0 ? t - l : 0;
        if (h.window == 3) win_lo = t / l * l;
        n_win = t + 1 - win_lo;
        if (h.column && win_lo > t % l) n_col = (win_lo - t % l + l - 1) / l;
        if (h.summary) {
            n_sum = (t / l) * h.c;  // every chunk before t's own
            if (h.a2_own) {
                const int own = t % l + 1 - h.lo;
                n_sum += own < 0 ? 0 : (own < h.c ? own : h.c);
            }
        }
    }
    __host__ __device__ int count() const { return n_col + n_sum + n_win; }
    __host__ __device__ int position(const DecodeHead& h, int t, int k) const {  // the key's sequence position
        if (k < n_col) return t % h.l + k * h.l;
        k -= n_col;
        if (k < n_sum) return k / h.c * h.l + h.lo + k % h.c;
        return win_lo + (k - n_sum);
    }
    __host__ __device__ int slot(const DecodeHead& h, int t, int k) const {
        if (k < n_col) return t % h.l + k * h.l;  // the full cache
        k -= n_col;
        if (k < n_sum) return h.sum_base + k;  // summaries are stored in key order
        const int j = win_lo + (k - n_sum);
        return h.ring ? j % h.ring : j;
    }
};
// The cache layout of a head for a context of n_ctx, and the slots it needs.
DecodeHead decode_head(const AttnSpec& spec, int n_head, int layer, int head, int n_ctx, int* slots);

// x (B, C) fp32 = wte[tok[b]] + the position rows of position *t.
void decode_embed(float* x, const uint8_t* tok, const float* wte, const PosTables& pos, const int* t, int B, int C,
                  cudaStream_t s);
// Stores the keys and values of position *t from qkv (B, 3C) into the caches kc, vc (B, NH, S, D);
// out (B, C) bf16: each head's query at *t attends to its set in the cache. scratch:
// decode_scratch(B, NH, D, S) bytes, zeroed once before the first step.
void decode_attention(bf16* out, void* scratch, const bf16* qkv, bf16* kc, bf16* vc, const DecodeHead* heads,
                      const int* t, int B, int NH, int D, int S, cudaStream_t s);
size_t decode_scratch(int B, int NH, int D, int S);
void decode_advance(int* t, cudaStream_t s);  // ++*t, the last node of a step
// x_out = x + y (y may be null; x_out may be x), ln (B, C) bf16 = LayerNorm(x_out) with weight w, bias b:
// the residual additions of the steps whose products go through cuBLASLt (more than a few sequences).
void decode_add_layernorm(float* x_out, bf16* ln, const float* x, const bf16* y, const float* w, const float* b, int B,
                          int C, cudaStream_t s);

// out (N, OC) = epilogue(x . weight^T + bias) for the few rows of a decoding step (decode_linear.cu),
// where x is `in` (N, IC) bf16, or LayerNorm(in_f32) with ln_w, ln_b when in_f32 is given.
enum class DecodeEpilogue {
    bf16,          // out bf16
    gelu_bf16,     // out bf16 = gelu (tanh form)
    residual_f32,  // out fp32 = resid + product (the residual stream)
    f32,           // out fp32 (the logits)
};
struct DecodeLinear {
    const bf16* in = nullptr;
    const float* in_f32 = nullptr;
    const float *ln_w = nullptr, *ln_b = nullptr;
    const bf16* weight = nullptr;  // (OC, IC)
    const float* bias = nullptr;   // (OC) or null
    const float* resid = nullptr;  // (N, OC), residual_f32 only
    void* out = nullptr;
    int N = 0, IC = 0, OC = 0;
    DecodeEpilogue epilogue = DecodeEpilogue::bf16;
};
void decode_linear(const DecodeLinear& a, cudaStream_t s);

// One decoding step in one launch (decode_cluster.cu): the embedding of tok at position *t, every
// layer (their caches updated as decode_attention does) and the head, into logits (B, V) fp32.
constexpr int kDecodeStepRows = 4;  // the most sequences it takes
struct DecodeLayer {
    const float *ln1_w, *ln1_b, *qkv_b, *proj_b, *ln2_w, *ln2_b, *fc_b, *fp_b;  // fp32
    const bf16 *qkv_w, *proj_w, *fc_w, *fp_w;                                   // bf16, (OC, IC)
    bf16 *kc, *vc;                                                              // (B, NH, S, D)
};
struct DecodeStep {
    const DecodeLayer* layers = nullptr;  // device, L of them
    const DecodeHead* heads = nullptr;    // device, L x NH
    const float *lnf_w = nullptr, *lnf_b = nullptr;
    const bf16* head_w = nullptr;  // (V, C)
    const float* wte = nullptr;
    PosTables pos;
    const uint8_t* tok = nullptr;
    const int* t = nullptr;
    float* logits = nullptr;
    int L = 0, B = 0, C = 0, F = 0, V = 0, NH = 0, S = 0;  // S: cache slots a head
    int slots = 0;                                         // decode_step_plan's: weight chunks in flight
};
// The CTAs of the cluster that runs a step of this shape on this card (16 or 8), with a->slots set;
// 0 where it cannot run (before Hopper, more than kDecodeStepRows sequences, a head size other than
// 32, 64 or 128, or too little shared memory). The weights must be 16-byte aligned.
int decode_step_plan(DecodeStep* a);
void decode_step(const DecodeStep& a, int ctas, cudaStream_t s);

}  // namespace st::gpu
