// The CPU ops of the model, llm.c style: outputs first, then saved state, then inputs, weights and
// sizes; each backward sits beside its forward and accumulates (+=) into its gradients.
// T is float or double: the ops are written once and instantiated for both (float64 is the
// reference that finite differences check). Every reduction runs in a fixed order, so results are
// bitwise reproducible whatever the thread count.
#pragma once
#include <cstdint>

namespace st {

// Values below which a forward op stays on one thread: a parallel region costs a few microseconds,
// about what this much work takes, and decoding one position runs hundreds of ops of one row.
constexpr int64_t kParallelMinValues = 1 << 14;

// LayerNorm over the last axis. out, inp (N, C); mean, rstd (N); weight, bias (C).
template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias, int64_t N, int C);
template <class T> void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                                           const T* mean, const T* rstd, int64_t N, int C);

// out (N, OC) = inp (N, IC) weight^T + bias; weight (OC, IC) as in nn.Linear; bias may be null.
template <class T> void linear_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t N, int IC, int OC);
// dinp may be null (nothing flows back into the embeddings' inputs); dbias may be null.
template <class T> void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                                        int64_t N, int IC, int OC);

// GELU, tanh approximation (GPT-2; PyTorch's approximate="tanh"). out may alias inp.
template <class T> void gelu_forward(T* out, const T* inp, int64_t n);
// dinp = dout * gelu'(inp), written rather than accumulated so that it can run in place (dinp == dout).
template <class T> void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n);

// Token embedding plus a sum of position tables. out (N, C) for N = B * T tokens; row i of the
// output is wte[tok[i]] + sum_k pos[k][pos_index[k][i % T]]. pos and pos_index have npos entries.
template <class T> void embedding_forward(T* out, const uint8_t* tok, const T* wte, const T* const* pos,
                                          const int32_t* const* pos_index, int npos, int64_t N, int T_, int C);
template <class T> void embedding_backward(T* dwte, T* const* dpos, const T* dout, const uint8_t* tok,
                                           const int32_t* const* pos_index, int npos, int64_t N, int T_, int C);

// Cross-entropy of softmax(logits) against targets. logits (N, V); losses (N) in nats.
template <class T> void crossentropy_forward(T* losses, const T* logits, const uint8_t* targets, int64_t N, int V);
// dlogits = (softmax(logits) - onehot(target)) * scale; dlogits may alias logits.
template <class T>
void crossentropy_backward(T* dlogits, const T* logits, const uint8_t* targets, T scale, int64_t N, int V);

// out = x + dropout(y) with drop probability p; the keep mask is a hash of (seed, index), so the
// backward and recomputation regenerate it instead of storing it. p == 0 is a plain residual add.
template <class T>
void residual_forward(T* out, const T* x, const T* y, float p, uint64_t seed, int64_t n, int64_t i0 = 0);
// dy = dout * keep / (1 - p) (written, not accumulated); dx is dout itself and needs no op.
template <class T>
void residual_backward_branch(T* dy, const T* dout, float p, uint64_t seed, int64_t n, int64_t i0 = 0);

// AdamW with PyTorch's semantics (decoupled decay before the update, bias-corrected moments).
// t is the 1-based step number.
template <class T> void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, float lr, float beta1, float beta2,
                                     float eps, float weight_decay, int64_t t);

// Sum of squares, in double, in a fixed order.
template <class T> double sum_squares(const T* x, int64_t n);
template <class T> void scale_inplace(T* x, T s, int64_t n);

}  // namespace st
