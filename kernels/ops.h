// The model's GPU ops other than the matrix products and attention (gemm.h, attention.h): the same
// functions as libst/cpu/ops.h, on device pointers, asynchronous on a stream. Activations are bf16;
// the residual stream, statistics, master weights and gradients fp32. Every reduction runs in a fixed
// order (no floating-point atomics), so a step gives the same bits on every run.
// Row ops (layernorm, embedding) take C a multiple of 8 and 16-byte-aligned pointers (rows are read
// 16 bytes at a time); the elementwise ops and reductions take any n and alignment.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace st::gpu {

using bf16 = __nv_bfloat16;

// LayerNorm over rows of C: out (N, C) bf16, mean/rstd (N) fp32 from inp (N, C) fp32; weight, bias
// (C) fp32 (the master weights: they are small).
void layernorm_forward(bf16* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int C, cudaStream_t s);
// dinp += ..., dweight += ..., dbias += ... (all fp32). scratch: layernorm_backward_scratch(N, C) bytes.
void layernorm_backward(float* dinp, float* dweight, float* dbias, const bf16* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int C, void* scratch,
                        cudaStream_t s);
size_t layernorm_backward_scratch(int64_t N, int C);
// out (cols) += the column sums of partial (chunks, cols), in a fixed order: the second pass of a
// deterministic sum over rows whose first pass wrote one row of partial sums per chunk of rows.
void add_chunk_sums(float* out, const float* partial, int64_t chunks, int cols, cudaStream_t s);

// GELU, tanh approximation, bf16 in and out; out may alias inp. The forward product applies it in its
// epilogue (gemm.h) and the backward product its gradient; this is for the backward's recomputation.
void gelu_forward(bf16* out, const bf16* inp, int64_t n, cudaStream_t s);

// out = x + dropout(y), 0 <= p < 1: the keep mask of element i is uniform01(hash64(seed, first + i)) >= p,
// the CPU's (libst/rng.h, libst/cpu/residual.cpp), so both engines drop the same elements. `first`
// numbers element 0: a data-parallel rank starts at its first example's, so any number of ranks
// draws one process's masks.
void residual_forward(float* out, const float* x, const bf16* y, float p, uint64_t seed, int64_t n, int64_t first,
                      cudaStream_t s);
// dy = dout * keep / (1 - p), written.
void residual_backward_branch(bf16* dy, const float* dout, float p, uint64_t seed, int64_t n, int64_t first,
                              cudaStream_t s);

// Up to three position tables added to the token embedding: row index[k][t] of table k for the token
// at position t of its window (t = i % T).
struct PosTables {
    int n = 0;
    const float* table[3] = {};
    const int32_t* index[3] = {};  // device, T entries each
};
// out (N, C) fp32 = wte[tok[i]] + sum_k pos.table[k][pos.index[k][(first + i) % T]]: the tokens
// first .. first + N of the batch (out and tok point at the first of them).
void embedding_forward(float* out, const uint8_t* tok, const float* wte, const PosTables& pos, int64_t first, int64_t N,
                       int T, int C, cudaStream_t s);
// For each row r of a table: the items that read it, items[ptr[r] .. ptr[r+1]-1] ascending. The
// trainer builds it on the host (tokens: a counting sort of the batch; positions: once per T).
struct InverseIndex {
    int rows = 0;
    int64_t nitems = 0;              // ptr[rows], known on the host: it sizes the scratch
    const int32_t* ptr = nullptr;    // device, rows + 1
    const int32_t* items = nullptr;  // device
};
// dtable[r, :] += sum over reps b < reps and items i of row r of dout[b * rep_stride + i, :], in that
// order. Token table: items are token indices in [0, N), reps 1. Position table: items are positions
// t in [0, T), reps B, rep_stride T. A row's terms are summed in fixed chunks, so that one frequent
// byte (a text's spaces) is spread over many blocks. scratch: embedding_backward_scratch(inv, reps, C).
void embedding_backward(float* dtable, const float* dout, const InverseIndex& inv, int reps, int64_t rep_stride, int C,
                        void* scratch, cudaStream_t s);
size_t embedding_backward_scratch(const InverseIndex& inv, int reps, int C);

// Cross-entropy of softmax(logits) against targets, logits (N, V) bf16: losses (N) fp32 in nats and,
// when dlogits is not null, dlogits = (softmax - onehot) * scale in bf16 (dlogits may alias logits).
void crossentropy(float* losses, bf16* dlogits, const bf16* logits, const uint8_t* targets, float scale, int64_t N,
                  int V, cudaStream_t s);

// out[0] = sum of x[0 .. n) in double, in a fixed order. scratch: reduce_scratch(n) bytes.
void sum_f64(double* out, const float* x, int64_t n, void* scratch, cudaStream_t s);
// out[0] = sum of squares of x in double, fixed order (the gradient norm before the square root).
void sum_squares_f64(double* out, const float* x, int64_t n, void* scratch, cudaStream_t s);
size_t reduce_scratch(int64_t n);

// One AdamW step over the parameter buffer (PyTorch semantics, as libst/cpu/adamw.cpp), writing the
// fp32 master weights and their bf16 copy. The gradient is first multiplied by
// min(1, clip / sqrt(*sumsq)) (clip <= 0: by 1), read on the device so the step needs no host sync.
// Segments give each parameter's [offset, offset + numel) and whether weight decay applies, in
// ascending offset order; elements outside every segment are left as they are.
struct Segment {
    int64_t offset, numel;
    int decay;
};
void adamw(float* w, bf16* w16, const float* g, float* m, float* v, const Segment* segs /* device */, int nsegs,
           int64_t nparams, float lr, float beta1, float beta2, float eps, float weight_decay, int64_t t,
           const double* sumsq /* device */, float clip, cudaStream_t s);

void f32_to_bf16(bf16* out, const float* in, int64_t n, cudaStream_t s);
void bf16_to_f32(float* out, const bf16* in, int64_t n, cudaStream_t s);

}  // namespace st::gpu
