// CPU block-sparse causal attention over a LayerLayout (layout.h): forward and backward, flash style
// (online softmax; the backward recomputes probabilities from q, k and the saved log-sum-exp), so
// memory is O(T) per head, never T x T. The reference the GPU kernels are checked against.
#pragma once
#include <cstdint>
#include <limits>

#include "layout.h"

namespace st {

// The positions whose outputs the caller wants: with context parallelism, this process's part of
// the sequence (qkv then holds its rows and the keys and values they read). A block of queries
// without one of them is skipped, in the forward and the backward alike. In the backward, the rows
// of a walked block outside [lo, hi) must have dout 0 and scores no larger than their log-sum-exp
// (queries 0 and a log-sum-exp 0 will do): they then add exactly nothing.
struct QueryRows {
    int64_t lo = 0, hi = std::numeric_limits<int64_t>::max();
};

// qkv (B, T, 3C): q = columns [0,C), k = [C,2C), v = [2C,3C); head h owns columns h*Dh..(h+1)*Dh-1 of
// each, Dh = C/NH. out (B, T, C) in the same head-interleaved columns; lse (B, NH, T) = log-sum-exp of
// the scaled scores of each query (-inf, with output 0, where a query's set is empty).
// Scale 1/sqrt(Dh); softmax over exactly the allowed set of each query. lay must be built for T and NH.
template <class F> void attention_forward(F* out, F* lse, const F* qkv, const LayerLayout& lay, int B, int T, int C,
                                          int NH, QueryRows rows = {});

// Accumulates (+=) into dqkv (B, T, 3C) the gradient of sum(dout * out). Deterministic: the same bits
// on every run and any thread count.
template <class F> void attention_backward(F* dqkv, const F* dout, const F* qkv, const F* out, const F* lse,
                                           const LayerLayout& lay, int B, int T, int C, int NH, QueryRows rows = {});

}  // namespace st
