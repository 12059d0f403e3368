// The Sparse Transformer (Child et al. 2019, section 5): one contiguous parameter buffer, forward and
// backward layer by layer, optional recomputation. T is float (training) or double (the
// finite-difference reference).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "config.h"
#include "layout.h"

namespace st {

struct ParamInfo {
    std::string name;  // safetensors name, e.g. "h.3.attn.qkv.weight"
    std::vector<int64_t> shape;
    int64_t offset = 0, numel = 0;
    bool decay = false;  // weight decay applies (the linear layers' matrices)
};

// One layer's tensors, in param_layout's order. X = int64_t: offsets into the parameter buffer;
// X = T*: pointers into a buffer laid out as it (weights, gradients, a bf16 mirror).
template <class X> struct LayerTensors {
    X ln1_w, ln1_b;    // h.L.ln1.weight, .bias       (C)
    X qkv_w, qkv_b;    // h.L.attn.qkv.weight, .bias  (3C, C), (3C)
    X proj_w, proj_b;  // h.L.attn.proj.weight, .bias (C, C), (C)
    X ln2_w, ln2_b;    // h.L.ln2.weight, .bias       (C)
    X fc_w, fc_b;      // h.L.mlp.fc.weight, .bias    (F, C), (F)
    X fp_w, fp_b;      // h.L.mlp.proj.weight, .bias  (C, F), (C)
};
static_assert(sizeof(LayerTensors<int64_t>) == 12 * sizeof(int64_t), "param_layout has 12 tensors a layer");

// A layer's tensors in base, any buffer laid out as the parameters: at(g.data(), offsets.layers[l]).fc_w.
template <class P> LayerTensors<P*> at(P* base, const LayerTensors<int64_t>& o) {
    return {base + o.ln1_w, base + o.ln1_b, base + o.qkv_w, base + o.qkv_b, base + o.proj_w, base + o.proj_b,
            base + o.ln2_w, base + o.ln2_b, base + o.fc_w,  base + o.fc_b,  base + o.fp_w,   base + o.fp_b};
}

// Where each tensor starts in the parameter buffer, by name; param_layout fills it as it names the
// tensors, so the two cannot disagree.
struct ParamOffsets {
    int64_t wte = 0;                // (vocab, C)
    std::vector<int64_t> wpe;       // the position tables, PosKind's order: wpe | wpe.row, wpe.col[, wpe.chan]
    std::vector<int64_t> wpe_rows;  // each table's rows
    std::vector<LayerTensors<int64_t>> layers;
    int64_t lnf_w = 0, lnf_b = 0;  // ln_f.weight, .bias (C)
    int64_t head = 0;              // head.weight (vocab, C)

    // Layer l's tensors are [layer_begin(l), layer_end(l)): the embeddings lie below layer 0, the
    // final LayerNorm and the head above the last layer (gradient buckets are cut along these).
    int64_t layer_begin(int l) const { return layers[size_t(l)].ln1_w; }
    int64_t layer_end(int l) const { return size_t(l) + 1 < layers.size() ? layer_begin(l + 1) : lnf_w; }
};

// Every parameter of a config, in buffer order; with named, where each named tensor starts.
std::vector<ParamInfo> param_layout(const Config&, ParamOffsets* named = nullptr);

template <class T> struct Model {
    Config cfg;
    std::vector<ParamInfo> params;
    ParamOffsets offsets;  // the same tensors by name
    int64_t num_params = 0;
    std::vector<T> w;           // (num_params) parameters
    std::vector<T> g;           // (num_params) gradients, accumulated by backward
    bool recompute = false;     // keep only each layer's input; redo the layer in the backward
    uint64_t dropout_seed = 0;  // set per step: the dropout masks are a function of it
    int64_t dropout_first = 0;  // data-parallel: this process's first example in the global batch (same masks)
    // Context parallelism: split_world processes share each sequence, this one (split_rank) running
    // its positions, sequence_part's. The keys and values its queries read from the others (the
    // layout's shared_positions) travel packed one segment an owner (Comm's allgather and
    // add_to_owners): split_gather brings every process each owner's rows, split_add adds up their
    // gradients for their owners; each returns how many values this process contributed. forward
    // still takes whole windows, and returns the mean loss of this process's positions; backward
    // leaves the gradient of that mean (the engine weighs and adds them as it does data
    // parallelism's). Without split_gather, the whole sequence runs here.
    int split_rank = 0, split_world = 1;
    std::function<size_t(T*, const std::vector<size_t>&)> split_gather, split_add;
    int64_t split_values = 0;  // how many values this process has contributed to the exchanges, all told

    explicit Model(const Config& c);
    void init_weights(uint64_t seed);  // the paper's initialisation

    // Mean cross-entropy (nats) of tgt given inp, both (B, T) bytes, T <= n_ctx. With train, keeps
    // what backward needs and applies dropout.
    double forward(const uint8_t* inp, const uint8_t* tgt, int B, int seq, bool train);
    // Accumulates d(mean loss)/dw into g for the last training forward.
    void backward();
    // Logits (B, T, vocab) of inp without dropout; the returned pointer lives until the next call.
    const T* logits(const uint8_t* inp, int B, int seq);

    // The attention layout of a layer for sequence length T (built once per T).
    const LayerLayout& layout(int layer, int seq);

    // Per position table: the table's row for each position t < n_ctx.
    const std::vector<std::vector<int32_t>>& pos_index() const { return pos_index_; }

   private:
    struct Acts {     // one layer's saved activations, for N = B * local_ tokens
        T* ln1;       // (N, C)
        T* ln1_mean;  // (N)
        T* ln1_rstd;  // (N)
        T* qkv;       // (N, 3C)
        T* att;       // (N, C) attention output before the projection
        T* lse;       // (B, NH, seq) log-sum-exp of each query's scores
        T* x1;        // (N, C) residual stream after the attention branch
        T* ln2;       // (N, C)
        T* ln2_mean;  // (N)
        T* ln2_rstd;  // (N)
        T* fch;       // (N, F) before GELU
        T* fcg;       // (N, F) after GELU
    };
    bool split() const { return bool(split_gather); }
    void ensure_buffers(int B, int seq, int local);
    // The rows [lo_, lo_ + local_) of each sequence of a (B, groups, seq_, width) buffer, and back
    // (zeros elsewhere).
    T* local_rows(T* dst, const T* full, int64_t width, int64_t groups = 1) const;
    T* full_rows(T* dst, const T* local, int64_t width, int64_t groups = 1) const;
    void residual(T* out, const T* x, const T* y, float p, uint64_t seed) const;
    void residual_branch(T* dy, const T* dout, float p, uint64_t seed) const;
    void layer_forward(int l, Acts& a, const T* x, T* out, bool train, bool rerun = false);
    void layer_backward(int l, Acts& a, const T* x);
    void run_forward(const uint8_t* inp, int B, int seq, bool train);

    int batch_ = 0, seq_ = 0;
    int lo_ = 0, local_ = 0;  // this process's positions of each sequence: [lo_, lo_ + local_)
    int64_t cap_tokens_ = 0, cap_full_ = 0;
    bool cap_recompute_ = false;
    std::vector<T> arena_;
    std::vector<Acts> acts_;  // n_layer of them, or one shared when recomputing
    std::vector<T*> resid_;   // n_layer + 1 residual streams (B, T, C)
    T *lnf_ = nullptr, *lnf_mean_ = nullptr, *lnf_rstd_ = nullptr, *logits_ = nullptr, *losses_ = nullptr,
      *branch_ = nullptr;
    T *dresid_ = nullptr, *dbranch_ = nullptr, *datt_ = nullptr, *dqkv_ = nullptr, *dln_ = nullptr, *dfc_ = nullptr;
    // Split: one layer's attention over every position at a time (the layers keep their own rows).
    T *qkv_full_ = nullptr, *att_full_ = nullptr, *lse_full_ = nullptr, *datt_full_ = nullptr, *dqkv_full_ = nullptr;
    std::vector<uint8_t> tgt_, inp_;
    std::vector<std::vector<int32_t>> pos_index_;  // per position table: row of the table for each t < n_ctx
    std::vector<LayerLayout> layouts_;
    int layouts_seq_ = -1;
    std::vector<std::vector<int32_t>> shared_;  // split: each layout's shared_positions
    // split: each layer's shared rows' keys and values, one segment an owner (B, its rows, 2C); kept
    // from the forward so that the backward (and --recompute's rerun of the layer) needs no exchange
    // to see them again.
    std::vector<std::vector<T>> kv_shared_;
    const std::vector<int32_t>& shared(int layer);
    std::vector<size_t> segments(int layer);  // kv's values of each owner
    void shared_rows(std::vector<T>& kv, T* full, int layer, bool pack);
    void gather_keys(const T* qkv, int layer, bool gathered);
};

extern template struct Model<float>;
extern template struct Model<double>;

}  // namespace st
