// The Sparse Transformer (PAPER.md section 2): one contiguous parameter buffer, forward and
// backward layer by layer, optional recomputation. T is float (training) or double (the
// finite-difference reference).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"
#include "layout.h"

namespace st {

struct ParamInfo {
    std::string name;            // safetensors name, e.g. "h.3.attn.qkv.weight"
    std::vector<int64_t> shape;
    int64_t offset = 0, numel = 0;
    bool decay = false;          // weight decay applies (the linear layers' matrices)
};
// Every parameter of a config, in buffer order.
std::vector<ParamInfo> param_layout(const Config&);

template <class T>
struct Model {
    Config cfg;
    std::vector<ParamInfo> params;
    int64_t num_params = 0;
    std::vector<T> w;              // (num_params) parameters
    std::vector<T> g;              // (num_params) gradients, accumulated by backward
    bool recompute = false;        // keep only each layer's input; redo the layer in the backward
    uint64_t dropout_seed = 0;     // set per step: the dropout masks are a function of it
    int64_t dropout_first = 0;     // data-parallel: this process's first example in the global batch (same masks)

    explicit Model(const Config& c);
    void init_weights(uint64_t seed);   // the paper's initialisation
    const T* param(const std::string& name) const;

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

    // Index in params of layer l's k-th tensor (0 ln1.weight .. 11 mlp.proj.bias, param_layout's order).
    size_t layer_param(int l, int k) const { return 1 + pos_index_.size() + size_t(l) * 12 + size_t(k); }

    struct LayerW { const T *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ln2_w, *ln2_b, *fc_w, *fc_b, *fp_w, *fp_b; };
    LayerW layer_weights(const std::vector<T>& buf, int l) const;

   private:
    struct Acts {                  // one layer's saved activations, for N = B * seq tokens
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
    void ensure_buffers(int B, int seq);
    void layer_forward(int l, Acts& a, const T* x, T* out, bool train);
    void layer_backward(int l, Acts& a, const T* x);
    void run_forward(const uint8_t* inp, int B, int seq, bool train);

    int batch_ = 0, seq_ = 0;
    int64_t cap_tokens_ = 0;
    bool cap_recompute_ = false;
    std::vector<T> arena_;
    std::vector<Acts> acts_;        // n_layer of them, or one shared when recomputing
    std::vector<T*> resid_;         // n_layer + 1 residual streams (B, T, C)
    T *lnf_ = nullptr, *lnf_mean_ = nullptr, *lnf_rstd_ = nullptr, *logits_ = nullptr, *losses_ = nullptr, *branch_ = nullptr;
    T *dresid_ = nullptr, *dbranch_ = nullptr, *datt_ = nullptr, *dqkv_ = nullptr, *dln_ = nullptr, *dfc_ = nullptr;
    std::vector<uint8_t> tgt_, inp_;
    std::vector<std::vector<int32_t>> pos_index_;   // per position table: row of the table for each t < n_ctx
    std::vector<LayerLayout> layouts_;
    int layouts_seq_ = -1;
};

extern template struct Model<float>;
extern template struct Model<double>;

}  // namespace st
