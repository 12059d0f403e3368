// Batched incremental decoding on the GPU. One step (embed, every layer, the head) is captured once
// as a CUDA graph and replayed for every position: the position counter lives on the device, so the
// graph never changes. Which kernels make the step: see step_kind.
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "error.h"
#include "gpu/buffer.h"
#include "gpu/device.h"
#include "kernels/check.h"
#include "kernels/decode.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "sample.h"

namespace st {

using gpu::bf16;
using gpu::Buf;

namespace {

constexpr int kFusedRows = 4;  // measured on an H200: the fused products lose to cuBLASLt beyond (docs/PERF.md)

// How a step runs. Up to kFusedRows sequences, five kernels a layer (decode_linear's four products
// with the LayerNorm and residual inside, decode_attention); beyond, the tensor cores of cuBLASLt win, with
// the residual additions fused into the LayerNorms. ST_DECODE=one: up to kDecodeStepRows sequences,
// one launch on a cluster of CTAs that walks the layers itself (decode_step), where the card has
// clusters. It gives the same logits, but is not yet faster than the five kernels a layer (it streams
// the weights through 16 SMs: kernels/dev/NOTES.md), so it is not the default.
enum class StepKind { one_launch, fused, gemm };
StepKind step_kind(int batch, int one_launch_ctas) {
    if (one_launch_ctas > 0) return StepKind::one_launch;
    return batch <= kFusedRows ? StepKind::fused : StepKind::gemm;
}

class GpuSampler final : public Sampler {
   public:
    GpuSampler(const Model<float>& m, int batch, int device);
    ~GpuSampler() override {
        if (exec_) cudaGraphExecDestroy(exec_);
        if (graph_) cudaGraphDestroy(graph_);
        cudaFreeHost(host_tok_);
        cudaFreeHost(host_logits_);
        cudaStreamDestroy(s_);
    }
    const float* push(const uint8_t* bytes) override;

   private:
    void enqueue_step();  // one position for every sequence, on s_
    void plan_one_launch();
    void enqueue_layers_fused();
    void enqueue_layers_gemm();
    // Layer l's tensors: fp32 (the LayerNorms, the fused products' biases) and the bf16 mirror.
    LayerTensors<const float*> f32(int l) const { return at<const float>(w_.p, m_.offsets.layers[size_t(l)]); }
    LayerTensors<const bf16*> b16(int l) const { return at<const bf16>(w16_.p, m_.offsets.layers[size_t(l)]); }
    const float* run_step();
    gpu::PosTables pos_tables() const;

    const Model<float>& m_;
    const Config& c_;
    std::string name_;  // select_device runs before the members that touch the device
    int B_, t_ = 0, S_ = 0;
    cudaStream_t s_ = nullptr;
    gpu::Gemm gemm_;
    Buf<float> w_;
    Buf<bf16> w16_;
    Buf<int32_t> pos_index_;
    Buf<gpu::DecodeHead> heads_;  // per layer, n_head each
    Buf<gpu::DecodeLayer> layers_;
    gpu::DecodeStep step_;
    StepKind kind_ = StepKind::gemm;
    int step_ctas_ = 0;  // decode_step_plan's
    std::vector<Buf<bf16>> kc_, vc_;
    Buf<int> t_dev_;
    Buf<uint8_t> tok_;
    Buf<float> x_, x1_, logits32_;
    Buf<char> scratch_;
    Buf<bf16> qkv_, att_, fcg_;
    Buf<bf16> ln_, br_, fch_, logits_;  // the cuBLASLt path's
    uint8_t* host_tok_ = nullptr;
    float* host_logits_ = nullptr;
    cudaGraph_t graph_ = nullptr;
    cudaGraphExec_t exec_ = nullptr;
    std::vector<std::vector<uint8_t>> window_;  // each sequence's bytes in the context (for sliding)
};

GpuSampler::GpuSampler(const Model<float>& m, int batch, int device)
    : m_(m), c_(m.cfg), name_(gpu::select_device(device)), B_(batch) {
    const int C = c_.d_model, F = c_.ff_dim(), V = c_.vocab, NH = c_.n_head, D = C / NH, L = c_.n_layer;
    if (D != 32 && D != 64 && D != 128)
        fail("GPU sampling needs a head size of 32, 64 or 128, not " + std::to_string(D));
    if (C % 8 || V % 8) fail("GPU sampling needs d_model and the vocabulary to be multiples of 8");
    CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
    w_ = Buf<float>(size_t(m.num_params));
    w16_ = Buf<bf16>(size_t(m.num_params));
    w_.upload(m.w.data(), s_);
    gpu::f32_to_bf16(w16_.p, w_.p, m.num_params, s_);
    std::vector<int32_t> idx;
    for (const auto& v : m.pos_index()) idx.insert(idx.end(), v.begin(), v.end());
    pos_index_ = Buf<int32_t>(idx.size());
    pos_index_.upload(idx.data(), s_);
    std::vector<gpu::DecodeHead> heads;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < NH; h++) {
            int slots = 0;
            heads.push_back(gpu::decode_head(c_.attn, NH, l, h, c_.n_ctx, &slots));
            S_ = std::max(S_, slots);
        }
    heads_ = Buf<gpu::DecodeHead>(heads.size());
    heads_.upload(heads.data(), s_);
    for (int l = 0; l < L; l++) {
        kc_.emplace_back(size_t(B_) * NH * S_ * D);
        vc_.emplace_back(size_t(B_) * NH * S_ * D);
    }
    t_dev_ = Buf<int>(1);
    tok_ = Buf<uint8_t>(size_t(B_));
    const size_t N = size_t(B_);
    x_ = Buf<float>(N * C);
    x1_ = Buf<float>(N * C);
    qkv_ = Buf<bf16>(N * 3 * C);
    att_ = Buf<bf16>(N * C);
    fcg_ = Buf<bf16>(N * F);
    logits32_ = Buf<float>(N * V);
    plan_one_launch();
    kind_ = step_kind(B_, step_ctas_);
    if (kind_ == StepKind::gemm) {
        ln_ = Buf<bf16>(N * C);
        br_ = Buf<bf16>(N * C);
        fch_ = Buf<bf16>(N * F);
        logits_ = Buf<bf16>(N * V);
    }
    scratch_ = Buf<char>(gpu::decode_scratch(B_, NH, D, S_));
    CUDA_CHECK(cudaMemsetAsync(scratch_.p, 0, scratch_.n, s_));  // the tickets start at zero
    CUDA_CHECK(cudaMallocHost(&host_tok_, N));
    CUDA_CHECK(cudaMallocHost(&host_logits_, N * V * sizeof(float)));
    CUDA_CHECK(cudaMemsetAsync(t_dev_.p, 0, sizeof(int), s_));
    CUDA_CHECK(cudaStreamSynchronize(s_));
    window_.resize(size_t(B_));
}

// The one-launch step's arguments, and whether it runs here (step_ctas_ > 0): asked for, and the
// card and the shape allow it.
void GpuSampler::plan_one_launch() {
    const char* e = std::getenv("ST_DECODE");
    if (!(e && std::string(e) == "one") || B_ > gpu::kDecodeStepRows) return;
    const int L = c_.n_layer;
    std::vector<gpu::DecodeLayer> layers;
    bool aligned = gpu::aligned16(w16_.p + m_.offsets.head);
    for (int l = 0; l < L; l++) {
        const auto w = f32(l);
        const auto h = b16(l);
        for (const bf16* p : {h.qkv_w, h.proj_w, h.fc_w, h.fp_w}) aligned = aligned && gpu::aligned16(p);
        layers.push_back({w.ln1_w, w.ln1_b, w.qkv_b, w.proj_b, w.ln2_w, w.ln2_b, w.fc_b, w.fp_b, h.qkv_w, h.proj_w,
                          h.fc_w, h.fp_w, kc_[size_t(l)].p, vc_[size_t(l)].p});
    }
    if (!aligned) return;
    layers_ = Buf<gpu::DecodeLayer>(layers.size());
    layers_.upload(layers.data(), s_);
    gpu::DecodeStep& a = step_;
    a.layers = layers_.p, a.heads = heads_.p;
    a.lnf_w = w_.p + m_.offsets.lnf_w, a.lnf_b = w_.p + m_.offsets.lnf_b, a.head_w = w16_.p + m_.offsets.head;
    a.wte = w_.p + m_.offsets.wte, a.pos = pos_tables();
    a.tok = tok_.p, a.t = t_dev_.p, a.logits = logits32_.p;
    a.L = L, a.B = B_, a.C = c_.d_model, a.F = c_.ff_dim(), a.V = c_.vocab, a.NH = c_.n_head, a.S = S_;
    step_ctas_ = gpu::decode_step_plan(&a);
}

gpu::PosTables GpuSampler::pos_tables() const {
    gpu::PosTables pos;
    pos.n = int(m_.pos_index().size());
    for (int k = 0; k < pos.n; k++) {
        pos.table[k] = w_.p + m_.offsets.wpe[size_t(k)];
        pos.index[k] = pos_index_.p + size_t(k) * c_.n_ctx;
    }
    return pos;
}

void GpuSampler::enqueue_step() {
    const int C = c_.d_model, V = c_.vocab, N = B_;
    CUDA_CHECK(cudaMemcpyAsync(tok_.p, host_tok_, size_t(N), cudaMemcpyHostToDevice, s_));
    if (kind_ == StepKind::one_launch) {
        gpu::decode_step(step_, step_ctas_, s_);
    } else {
        gpu::decode_embed(x_.p, tok_.p, w_.p + m_.offsets.wte, pos_tables(), t_dev_.p, N, C, s_);
        if (kind_ == StepKind::fused)
            enqueue_layers_fused();
        else
            enqueue_layers_gemm();
    }
    CUDA_CHECK(cudaMemcpyAsync(host_logits_, logits32_.p, size_t(N) * V * sizeof(float), cudaMemcpyDeviceToHost, s_));
    gpu::decode_advance(t_dev_.p, s_);
}

// Every layer and the head, from x_ to logits32_: each LayerNorm inside the product after it, each
// residual addition inside the product before it, the cache update inside the attention: four
// kernels a layer.
void GpuSampler::enqueue_layers_fused() {
    const int C = c_.d_model, F = c_.ff_dim(), V = c_.vocab, NH = c_.n_head, D = C / NH, L = c_.n_layer, N = B_;
    const ParamOffsets& o = m_.offsets;
    auto linear = [&](void* out, const bf16* in, const float* in_f32, const float* ln_w, const float* ln_b,
                      const bf16* weight, const float* bias, const float* resid, int IC, int OC,
                      gpu::DecodeEpilogue e) {
        gpu::DecodeLinear a;
        a.in = in, a.in_f32 = in_f32, a.ln_w = ln_w, a.ln_b = ln_b, a.weight = weight, a.bias = bias, a.resid = resid;
        a.out = out, a.N = N, a.IC = IC, a.OC = OC, a.epilogue = e;
        gpu::decode_linear(a, s_);
    };
    using gpu::DecodeEpilogue;
    for (int l = 0; l < L; l++) {
        const auto w = f32(l);
        const auto h = b16(l);
        linear(qkv_.p, nullptr, x_.p, w.ln1_w, w.ln1_b, h.qkv_w, w.qkv_b, nullptr, C, 3 * C, DecodeEpilogue::bf16);
        gpu::decode_attention(att_.p, scratch_.p, qkv_.p, kc_[size_t(l)].p, vc_[size_t(l)].p, heads_.p + size_t(l) * NH,
                              t_dev_.p, N, NH, D, S_, s_);
        linear(x1_.p, att_.p, nullptr, nullptr, nullptr, h.proj_w, w.proj_b, x_.p, C, C, DecodeEpilogue::residual_f32);
        linear(fcg_.p, nullptr, x1_.p, w.ln2_w, w.ln2_b, h.fc_w, w.fc_b, nullptr, C, F, DecodeEpilogue::gelu_bf16);
        linear(x_.p, fcg_.p, nullptr, nullptr, nullptr, h.fp_w, w.fp_b, x1_.p, F, C, DecodeEpilogue::residual_f32);
    }
    linear(logits32_.p, nullptr, x_.p, w_.p + o.lnf_w, w_.p + o.lnf_b, w16_.p + o.head, nullptr, nullptr, C, V,
           DecodeEpilogue::f32);
}

// The same with cuBLASLt products: each residual addition fused with the LayerNorm after it.
void GpuSampler::enqueue_layers_gemm() {
    const int C = c_.d_model, F = c_.ff_dim(), V = c_.vocab, NH = c_.n_head, D = C / NH, L = c_.n_layer, N = B_;
    const ParamOffsets& o = m_.offsets;
    gpu::decode_add_layernorm(x_.p, ln_.p, x_.p, nullptr, f32(0).ln1_w, f32(0).ln1_b, N, C, s_);
    for (int l = 0; l < L; l++) {
        const auto w = f32(l);
        const auto h = b16(l);
        gemm_.forward(qkv_.p, ln_.p, h.qkv_w, h.qkv_b, N, C, 3 * C, nullptr, s_);
        gpu::decode_attention(att_.p, scratch_.p, qkv_.p, kc_[size_t(l)].p, vc_[size_t(l)].p, heads_.p + size_t(l) * NH,
                              t_dev_.p, N, NH, D, S_, s_);
        gemm_.forward(br_.p, att_.p, h.proj_w, h.proj_b, N, C, C, nullptr, s_);
        gpu::decode_add_layernorm(x1_.p, ln_.p, x_.p, br_.p, w.ln2_w, w.ln2_b, N, C, s_);
        gemm_.forward(fcg_.p, ln_.p, h.fc_w, h.fc_b, N, C, F, fch_.p, s_);
        gemm_.forward(br_.p, fcg_.p, h.fp_w, h.fp_b, N, F, C, nullptr, s_);
        // The residual addition, then the next LayerNorm: the next layer's ln1, or ln_f after the last.
        const bool last = l + 1 == L;
        gpu::decode_add_layernorm(x_.p, ln_.p, x1_.p, br_.p, last ? w_.p + o.lnf_w : f32(l + 1).ln1_w,
                                  last ? w_.p + o.lnf_b : f32(l + 1).ln1_b, N, C, s_);
    }
    gemm_.forward(logits_.p, ln_.p, w16_.p + o.head, nullptr, N, C, V, nullptr, s_);
    gpu::bf16_to_f32(logits32_.p, logits_.p, int64_t(N) * V, s_);
}

const float* GpuSampler::run_step() {
    if (!exec_) {
        enqueue_step();  // the first step runs eagerly: kernel attributes are set outside the capture
        CUDA_CHECK(cudaStreamSynchronize(s_));
        CUDA_CHECK(cudaStreamBeginCapture(s_, cudaStreamCaptureModeThreadLocal));
        enqueue_step();
        CUDA_CHECK(cudaStreamEndCapture(s_, &graph_));
        CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
    } else {
        CUDA_CHECK(cudaGraphLaunch(exec_, s_));
    }
    CUDA_CHECK(cudaStreamSynchronize(s_));
    t_++;
    return host_logits_;
}

const float* GpuSampler::push(const uint8_t* bytes) {
    if (t_ == c_.n_ctx) {
        // Slide as Decoder does: restart at position 0 and replay the kept part of each window.
        const int drop = slide_drop(c_);
        t_ = 0;
        CUDA_CHECK(cudaMemsetAsync(t_dev_.p, 0, sizeof(int), s_));
        std::vector<std::vector<uint8_t>> old;
        old.swap(window_);
        window_.resize(size_t(B_));
        for (size_t k = size_t(drop); k < old[0].size(); k++) {
            for (int b = 0; b < B_; b++) host_tok_[b] = old[size_t(b)][k];
            for (int b = 0; b < B_; b++) window_[size_t(b)].push_back(host_tok_[b]);
            run_step();
        }
    }
    std::memcpy(host_tok_, bytes, size_t(B_));
    for (int b = 0; b < B_; b++) window_[size_t(b)].push_back(bytes[b]);
    return run_step();
}

}  // namespace

std::unique_ptr<Sampler> make_gpu_sampler(const Model<float>& m, int batch, int device) {
    return std::make_unique<GpuSampler>(m, batch, device);
}

}  // namespace st
