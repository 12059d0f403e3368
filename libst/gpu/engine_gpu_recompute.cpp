// --recompute on the GPU: a pass keeps each layer's input in bf16 and nothing else of a layer; the
// backward redoes the layer from it. Attention reads the whole sequence, so a layer's qkv, attention
// output and log-sum-exp exist for all N tokens, one layer at a time; everything else (LayerNorms,
// products, MLP, head, cross-entropy) runs on chunks of a_.chunk tokens, so that nothing of size
// N x (d_ff or vocabulary) is ever held. Per token this keeps 2C bytes a layer, plus about 18C + 8 x
// heads bytes for the layer at work (qkv and its gradient, the attention output, the fp32 residual
// gradient, the log-sum-exp and the backward's row sums).
//
// The layer inputs are rounded to bf16 in the forward as well, so the backward's recomputation sees
// exactly what the forward saw and the gradient is that of the function computed.
//
// With --offload a training pass keeps the card's share of that to two layer inputs: the others go
// to pinned host memory while the next layer computes, and come back while the layer above them
// does its backward.
#include <cuda_runtime.h>

#include <algorithm>

#include "gpu/engine_gpu.h"
#include "kernels/check.h"

namespace st {

GpuEngine::Acts GpuEngine::chunk_view(int64_t first) const {
    Acts a = a_.acts[0];
    a.qkv += first * 3 * cfg_.d_model;
    a.att += first * cfg_.d_model;
    return a;
}

// Calls f(first, n) for each chunk of the pass's tokens, in order.
template <class F> static void each_chunk(int64_t N, int64_t K, F f) {
    for (int64_t first = 0; first < N; first += K) f(first, std::min(K, N - first));
}

int64_t GpuEngine::offloaded_layers(bool train) const {
    return offload_ && m_.recompute && train ? std::max(cfg_.n_layer - 2, 0) : 0;
}

bf16* GpuEngine::layer_input(int l, bool train) const {
    return a_.ckpt[size_t(train && !offloaded_layers(train) ? l : l % 2)];
}

// Layer l's input between device buffer l % 2 and its place on the host (out: to the host), on copy_s_
// once the stream is done with what comes before: making the input (out), or reading the input of
// layer l + 2 that the buffer held (in). done is recorded when the copy has landed.
void GpuEngine::copy_input(int l, bool out, cudaEvent_t done) {
    const size_t n = size_t(B_) * T_ * cfg_.d_model;
    bf16 *dev = a_.ckpt[size_t(l % 2)], *host = host_ckpt_.p + size_t(l) * n;
    CUDA_CHECK(cudaEventRecord(issued_, s_));
    CUDA_CHECK(cudaStreamWaitEvent(copy_s_, issued_));
    CUDA_CHECK(cudaMemcpyAsync(out ? host : dev, out ? dev : host, n * sizeof(bf16),
                               out ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice, copy_s_));
    CUDA_CHECK(cudaEventRecord(done, copy_s_));
}

// Layer l from its bf16 input x to the attention output: the qkv product chunk by chunk, then
// attention over the whole sequence into acts[0].att and .lse.
void GpuEngine::forward_to_attention_output(int l, const bf16* x) {
    const int C = cfg_.d_model;
    const Acts& a = a_.acts[0];
    each_chunk(int64_t(B_) * T_, a_.chunk, [&](int64_t i, int64_t n) {
        gpu::bf16_to_f32(a_.xc, x + i * C, n * C, s_);
        forward_to_qkv(l, chunk_view(i), a_.xc, n);
    });
    profile_.phase("attention-fwd", s_,
                   [&] { gpu::attention_forward(a.att, a.lse, a.qkv, layer_plan(l), B_, T_, C, cfg_.n_head, s_); });
}

void GpuEngine::forward_recompute(bool train) {
    const int64_t N = int64_t(B_) * T_;
    const int C = cfg_.d_model, L = cfg_.n_layer;
    const gpu::PosTables pos = pos_tables();
    each_chunk(N, a_.chunk, [&](int64_t i, int64_t n) {
        gpu::embedding_forward(a_.xc, tok_.p + i, w_.p + m_.offsets.wte, pos, i, n, T_, C, s_);
        gpu::f32_to_bf16(a_.ckpt[0] + i * C, a_.xc, n * C, s_);
    });
    const int64_t off = offloaded_layers(train);
    for (int l = 0; l < L; l++) {
        const bf16* x = layer_input(l, train);
        if (l < off) copy_input(l, true, saved_[l % 2]);
        forward_to_attention_output(l, x);
        // Layer l + 1's input takes the buffer of layer l - 1's, which must be out first.
        if (l >= 1 && l - 1 < off) CUDA_CHECK(cudaStreamWaitEvent(s_, saved_[(l + 1) % 2]));
        each_chunk(N, a_.chunk, [&](int64_t i, int64_t n) {
            gpu::bf16_to_f32(a_.xc, x + i * C, n * C, s_);
            forward_from_attention(l, chunk_view(i), a_.xc, a_.outc, i, n, train);
            if (l + 1 < L) return gpu::f32_to_bf16(layer_input(l + 1, train) + i * C, a_.outc, n * C, s_);
            // The last layer's output goes straight into the head; when training, the head's backward
            // follows at once, leaving dL/d(last output) in dresid for backward_recompute.
            head_forward(a_.outc, i, n, train);
            if (train) head_backward(a_.outc, a_.dresid + i * C, n);
        });
    }
}

void GpuEngine::backward_recompute() {
    const int64_t N = int64_t(B_) * T_;
    const int C = cfg_.d_model, L = cfg_.n_layer;
    const Acts& a = a_.acts[0];
    bucket_done(m_.offsets.lnf_w, P_);  // the head's gradients were made in the forward
    const int64_t off = offloaded_layers(true);
    for (int l = L - 1; l >= 0; l--) {
        if (l < off) CUDA_CHECK(cudaStreamWaitEvent(s_, loaded_[l % 2]));
        if (l - 1 < off && l >= 1) copy_input(l - 1, false, loaded_[(l - 1) % 2]);  // behind this layer's work
        const bf16* x = layer_input(l, true);
        forward_to_attention_output(l, x);  // the layer again, as the forward ran it
        // Chunk by chunk: the rest of the layer forward, then back to the attention output. Its gradient
        // dO takes O's place once the backward's row sums of dO * O are made, so the two are never
        // held whole at once.
        each_chunk(N, a_.chunk, [&](int64_t i, int64_t n) {
            const Acts v = chunk_view(i);
            gpu::bf16_to_f32(a_.xc, x + i * C, n * C, s_);
            forward_from_attention(l, v, a_.xc, nullptr, i, n, true);
            backward_to_attention(l, v, a_.dresid + i * C, a_.datt, i, n);
            gpu::attention_dsum(a_.dsum, a_.datt, v.att, i, n, T_, C, cfg_.n_head, s_);
            CUDA_CHECK(cudaMemcpyAsync(v.att, a_.datt, size_t(n) * C * sizeof(bf16), cudaMemcpyDeviceToDevice, s_));
        });
        profile_.phase("attention-bwd", s_, [&] {
            gpu::attention_backward(a_.dqkv, a.att, a.qkv, nullptr, a.lse, a_.dsum, layer_plan(l), B_, T_, C,
                                    cfg_.n_head, s_);
        });
        const auto w = at(w_.p, m_.offsets.layers[size_t(l)]);
        each_chunk(N, a_.chunk, [&](int64_t i, int64_t n) {
            const Acts v = chunk_view(i);
            gpu::bf16_to_f32(a_.xc, x + i * C, n * C, s_);
            gpu::layernorm_forward(v.ln1, v.ln1_mean, v.ln1_rstd, a_.xc, w.ln1_w, w.ln1_b, n, C, s_);
            backward_from_qkv(l, v, a_.xc, a_.dresid + i * C, a_.dqkv + i * 3 * C, n);
        });
        bucket_done(m_.offsets.layer_begin(l), m_.offsets.layer_end(l));
    }
}

}  // namespace st
