// The GPU engine: the model's forward, backward and AdamW step on one card. Master weights, gradients
// and Adam moments are fp32 in single buffers laid out as the host model's; a bf16 mirror of the
// weights feeds the matrix products. Activations are bf16 except the fp32 residual stream. Every
// kernel is deterministic, so a step gives the same bits on every run.
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>

#include "engine.h"
#include "error.h"
#include "gpu/buffer.h"
#include "gpu/device.h"
#include "gpu/profile.h"
#include "kernels/attention.h"
#include "kernels/check.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "parallel/nccl.h"
#include "parallel/shard.h"
#include "rng.h"

namespace st {

using gpu::bf16;
using gpu::Buf;

namespace {

class GpuEngine final : public Engine {
   public:
    GpuEngine(Model<float>& m, std::vector<float>& om, std::vector<float>& ov, const GpuOptions& o);
    ~GpuEngine() override {
        cudaFreeHost(host_scalars_);
        if (comm_s_) cudaStreamDestroy(comm_s_), cudaEventDestroy(ready_);
        cudaStreamDestroy(s_);
    }
    std::string name() const override { return name_; }
    double peak_gib() const override {
        return double(gpu::memory_use().peak + gpu::Gemm::workspace_bytes()) / double(1 << 30);
    }
    StepStats train_step(const uint8_t* inp, const uint8_t* tgt, int B, int T, uint64_t dropout_seed,
                         const AdamWStep& opt) override;
    double loss(const uint8_t* inp, const uint8_t* tgt, int B, int T) override;
    double gradient(const uint8_t* inp, const uint8_t* tgt, int B, int T, std::vector<float>* grad) override;
    void sync_to_host() override;
    void set_data_parallel(const DataParallel& dp) override;
    double optimizer_gib() const override { return double(mom_.n + vel_.n) * 4 / double(1 << 30); }

   private:
    // Data-parallel training: NCCL sums each bucket of gradients (the last layers' first) on comm_s_
    // while the backward goes on with the layers below. With a sharded optimizer (ZeRO-1) one
    // reduce-scatter after the backward leaves each rank the sum of its part, which it updates with
    // its part of the moments, and an all-gather hands the new weights round.
    NcclComm* nccl_ = nullptr;
    double share_ = 1;           // this rank's part of each batch
    int64_t first_ = 0;          // this rank's first example in the global batch: numbers the dropout masks
    int pass_ = 0, passes_ = 1;  // a step's forward and backward passes over its micro-batches
    int arena_passes_ = 0;       // the passes whose losses the arena holds
    bool shard_ = false;
    Range own_{0, 0};   // sharded: the part of the padded parameter buffer this rank updates
    int64_t part_ = 0;  // its size (every rank's is the same)
    cudaStream_t comm_s_ = nullptr;
    cudaEvent_t ready_ = nullptr;
    bool reduce_in_backward_ = false;  // this backward's buckets go to NCCL as they finish
    void bucket_done(int64_t begin, int64_t end);
    struct Acts {  // one layer's saved activations
        bf16 *ln1, *qkv, *att, *ln2, *fch;
        float *ln1_mean, *ln1_rstd, *lse, *x1, *ln2_mean, *ln2_rstd;
    };
    void ensure(int B, int T);
    void ensure_training();
    void upload_batch(const uint8_t* inp, const uint8_t* tgt, bool train);
    void forward(bool train);
    void layer_forward(int l, Acts& a, const float* x, float* out, bool train);
    void layer_backward(int l, Acts& a, const float* x);
    void backward();
    void reduce_gradients();
    std::vector<float> gather_moment(const Buf<float>& part);

    Model<float>& m_;
    std::vector<float>&om_, &ov_;
    const Config& cfg_;
    AttnSpec attn_;     // cfg_.attn with the GPU's block size
    std::string name_;  // first of the members that touch the device: select_device runs before the rest
    cudaStream_t s_ = nullptr;
    gpu::Gemm gemm_;
    gpu::Profile profile_;  // ST_PROFILE=1: forward, backward and attention, ms a step, printed at the end
    size_t npos_;
    int64_t P_;
    Buf<float> w_, g_, mom_, vel_;
    Buf<bf16> w16_;
    Buf<gpu::Segment> segs_;
    Buf<double> scalars_;             // [0] loss sum, [1] sum of squared gradients
    double* host_scalars_ = nullptr;  // pinned

    int B_ = 0, T_ = 0;
    uint64_t dropout_seed_ = 0;
    float dropout_ = 0;  // this step's drop probability: the model's when training, 0 for gradient()
    bool training_ = false;
    std::vector<gpu::AttnPlan> plans_;  // by layer parity
    Buf<uint8_t> tok_, tgt_;
    Buf<int32_t> pos_index_, pos_inv_ptr_, pos_inv_items_, tok_inv_;  // tok_inv_: ptr (257) then items (N)
    Buf<char> arena_;
    std::vector<Acts> acts_;
    std::vector<float*> resid_;
    bf16 *lnf_ = nullptr, *logits_ = nullptr, *branch_ = nullptr, *fcg_ = nullptr, *datt_ = nullptr, *dqkv_ = nullptr,
         *dln_ = nullptr, *dfc_ = nullptr, *dbranch_ = nullptr;
    float *lnf_mean_ = nullptr, *lnf_rstd_ = nullptr, *losses_ = nullptr, *dresid_ = nullptr, *dsum_ = nullptr;
    void *ln_scratch_ = nullptr, *red_scratch_ = nullptr, *emb_scratch_ = nullptr;
    std::vector<gpu::InverseIndex> emb_inv_;  // the token table's, then each position table's
    std::vector<int32_t> tok_inv_host_;
};

GpuEngine::GpuEngine(Model<float>& m, std::vector<float>& om, std::vector<float>& ov, const GpuOptions& o)
    : m_(m),
      om_(om),
      ov_(ov),
      cfg_(m.cfg),
      name_(gpu::select_device(o.device)),
      npos_(m.pos_index().size()),
      P_(m.num_params) {
    own_ = {0, P_};
    // The block size is the kernels' tiling, not part of the model (every block size gives the same
    // element sets), so the GPU runs a model trained with blocks of 32 on its own 64s.
    attn_ = cfg_.attn;
    if (attn_.block != 64 && attn_.block != 128) attn_.block = 64;
    std::string why = gpu::attention_gpu_check(attn_.block, cfg_.d_model, cfg_.n_head);
    if (!why.empty()) fail(why);
    if (cfg_.d_model % 8 || cfg_.vocab % 8)
        fail("the GPU engine needs d_model and the vocabulary to be multiples of 8");
    CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
    w_ = Buf<float>(size_t(P_));
    w16_ = Buf<bf16>(size_t(P_));
    scalars_ = Buf<double>(2);
    CUDA_CHECK(cudaMallocHost(&host_scalars_, 2 * sizeof(double)));
    CUDA_CHECK(cudaMemcpy(w_.p, m.w.data(), size_t(P_) * 4, cudaMemcpyHostToDevice));
    gpu::f32_to_bf16(w16_.p, w_.p, P_, s_);
    // Each position table's row for t < n_ctx (ensure() builds the inverse, for the backward, per length).
    std::vector<int32_t> idx;
    for (const auto& v : m.pos_index()) idx.insert(idx.end(), v.begin(), v.end());
    pos_index_ = Buf<int32_t>(idx.size());
    CUDA_CHECK(cudaMemcpy(pos_index_.p, idx.data(), idx.size() * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaStreamSynchronize(s_));
}

void GpuEngine::ensure_training() {
    if (training_) return;
    // The moments of the parameters [own_.begin, own_.end): all of them, or this rank's part. The
    // gradient buffer is padded to whole parts for the reduce-scatter.
    g_ = Buf<float>(shard_ ? size_t(part_) * size_t(nccl_->world()) : size_t(P_));
    const int64_t held = shard_ ? part_ : P_, used = std::max<int64_t>(0, std::min(own_.end, P_) - own_.begin);
    mom_ = Buf<float>(size_t(held));
    vel_ = Buf<float>(size_t(held));
    om_.resize(size_t(P_));
    ov_.resize(size_t(P_));
    CUDA_CHECK(cudaMemset(mom_.p, 0, size_t(held) * 4));
    CUDA_CHECK(cudaMemset(vel_.p, 0, size_t(held) * 4));
    CUDA_CHECK(cudaMemcpy(mom_.p, om_.data() + own_.begin, size_t(used) * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(vel_.p, ov_.data() + own_.begin, size_t(used) * 4, cudaMemcpyHostToDevice));
    std::vector<gpu::Segment> segs;  // relative to own_.begin, clipped to the part
    for (const auto& p : m_.params) {
        const int64_t lo = std::max(p.offset, own_.begin), hi = std::min(p.offset + p.numel, own_.end);
        if (lo < hi) segs.push_back({lo - own_.begin, hi - lo, p.decay ? 1 : 0});
    }
    if (segs.empty()) segs.push_back({0, 0, 0});  // a part that is all padding
    segs_ = Buf<gpu::Segment>(segs.size());
    CUDA_CHECK(cudaMemcpy(segs_.p, segs.data(), segs.size() * sizeof(gpu::Segment), cudaMemcpyHostToDevice));
    training_ = true;
    B_ = 0;  // the activation arena grows the backward's buffers at the next ensure
}

// Activations for B windows of T: one arena, carved as Model<T>::ensure_buffers carves its own.
void GpuEngine::ensure(int B, int T) {
    if (T < 1 || T > cfg_.n_ctx)
        fail("sequence length " + std::to_string(T) + " is outside 1.." + std::to_string(cfg_.n_ctx));
    if (B == B_ && T == T_ && passes_ <= arena_passes_) return;
    if (T != T_) {
        plans_.clear();
        for (int l = 0; l < std::min(cfg_.n_layer, 2); l++) plans_.emplace_back(layout_build(attn_, T, cfg_.n_head, l));
        // Inverse position index for this T: for table k, the positions t < T of each row.
        std::vector<int32_t> ptr, items;
        for (size_t k = 0; k < npos_; k++) {
            const std::vector<int32_t>& v = m_.pos_index()[k];
            const int rows = int(m_.offsets.wpe_rows[k]);
            std::vector<int32_t> p(size_t(rows) + 1, 0);
            for (int t = 0; t < T; t++) p[size_t(v[size_t(t)]) + 1]++;
            for (int r = 0; r < rows; r++) p[size_t(r) + 1] += p[size_t(r)];
            std::vector<int32_t> it(static_cast<size_t>(T)), fill(p.begin(), p.end() - 1);
            for (int t = 0; t < T; t++) it[size_t(fill[size_t(v[size_t(t)])]++)] = t;
            ptr.insert(ptr.end(), p.begin(), p.end());
            items.insert(items.end(), it.begin(), it.end());
        }
        pos_inv_ptr_ = Buf<int32_t>(ptr.size());
        pos_inv_items_ = Buf<int32_t>(items.size());
        CUDA_CHECK(cudaMemcpy(pos_inv_ptr_.p, ptr.data(), ptr.size() * 4, cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(pos_inv_items_.p, items.data(), items.size() * 4, cudaMemcpyHostToDevice));
    }
    B_ = B;
    T_ = T;
    arena_passes_ = passes_;
    const int64_t N = int64_t(B) * T;
    tok_ = Buf<uint8_t>(size_t(N));
    tgt_ = Buf<uint8_t>(size_t(N));
    tok_inv_ = Buf<int32_t>(size_t(N) + 257);
    emb_inv_.assign(1, gpu::InverseIndex{256, N, tok_inv_.p, tok_inv_.p + 257});
    const int32_t* ptr = pos_inv_ptr_.p;  // table k: rows + 1 offsets into its T items
    for (size_t k = 0; k < npos_; k++) {
        const int rows = int(m_.offsets.wpe_rows[k]);
        emb_inv_.push_back({rows, T, ptr, pos_inv_items_.p + k * size_t(T)});
        ptr += rows + 1;
    }
    const int64_t C = cfg_.d_model, F = cfg_.ff_dim(), V = cfg_.vocab, L = cfg_.n_layer, NH = cfg_.n_head;
    const bool rec = m_.recompute && training_;
    const int64_t nacts = training_ ? (rec ? 1 : L) : 1;
    arena_ = Buf<char>();  // free the old arena before taking the new one
    size_t bytes = 0;
    std::vector<std::pair<void**, size_t>> plan;
    auto take = [&](auto** ptr, int64_t count) {
        plan.push_back({reinterpret_cast<void**>(ptr), size_t(count) * sizeof(**ptr)});
        bytes += (size_t(count) * sizeof(**ptr) + 255) / 256 * 256;
    };
    acts_.assign(size_t(nacts), Acts{});
    for (auto& a : acts_) {
        take(&a.ln1, N * C);
        take(&a.qkv, N * 3 * C);
        take(&a.att, N * C);
        take(&a.ln2, N * C);
        take(&a.fch, N * F);
        take(&a.ln1_mean, N);
        take(&a.ln1_rstd, N);
        take(&a.lse, N * NH);
        take(&a.x1, N * C);
        take(&a.ln2_mean, N);
        take(&a.ln2_rstd, N);
    }
    // Residual streams: every layer's input is kept when training (recomputation restarts from them);
    // evaluation needs two.
    resid_.assign(size_t(training_ ? L + 1 : 2), nullptr);
    for (auto& r : resid_) take(&r, N * C);
    take(&lnf_, N * C);
    take(&lnf_mean_, N);
    take(&lnf_rstd_, N);
    take(&logits_, N * V);
    take(&losses_, N * passes_);  // every pass's, summed once at the end
    take(&branch_, N * C);
    take(&fcg_, N * F);
    if (training_) {
        take(&dresid_, N * C);
        take(&dbranch_, N * C);
        take(&datt_, N * C);
        take(&dln_, N * C);
        take(&dqkv_, N * 3 * C);
        take(&dfc_, N * F);
        take(&dsum_, N * NH);
        take(reinterpret_cast<char**>(&ln_scratch_), int64_t(gpu::layernorm_backward_scratch(N, int(C))));
        take(reinterpret_cast<char**>(&red_scratch_), int64_t(gpu::reduce_scratch(std::max<int64_t>(P_, N * passes_))));
        size_t emb = 0;
        for (size_t k = 0; k <= npos_; k++)
            emb = std::max(emb, gpu::embedding_backward_scratch(emb_inv_[k], k ? B : 1, int(C)));
        take(reinterpret_cast<char**>(&emb_scratch_), int64_t(emb));
    } else {
        take(reinterpret_cast<char**>(&red_scratch_), int64_t(gpu::reduce_scratch(N)));
    }
    arena_ = Buf<char>(bytes);
    char* p = arena_.p;
    for (auto& [ptr, size] : plan) {
        *ptr = p;
        p += (size + 255) / 256 * 256;
    }
}

void GpuEngine::upload_batch(const uint8_t* inp, const uint8_t* tgt, bool train) {
    const int64_t N = int64_t(B_) * T_;
    CUDA_CHECK(cudaMemcpyAsync(tok_.p, inp, size_t(N), cudaMemcpyHostToDevice, s_));
    CUDA_CHECK(cudaMemcpyAsync(tgt_.p, tgt, size_t(N), cudaMemcpyHostToDevice, s_));
    if (!train) return;
    // The token embedding's backward reads, for each byte value, the tokens that hold it: a counting sort.
    tok_inv_host_.assign(size_t(N) + 257, 0);
    int32_t* ptr = tok_inv_host_.data();
    for (int64_t i = 0; i < N; i++) ptr[inp[i] + 1]++;
    for (int v = 0; v < 256; v++) ptr[v + 1] += ptr[v];
    int32_t fill[256];
    std::memcpy(fill, ptr, sizeof fill);
    for (int64_t i = 0; i < N; i++) ptr[257 + fill[inp[i]]++] = int32_t(i);
    CUDA_CHECK(cudaMemcpyAsync(tok_inv_.p, ptr, tok_inv_host_.size() * 4, cudaMemcpyHostToDevice, s_));
}

void GpuEngine::layer_forward(int l, Acts& a, const float* x, float* out, bool train) {
    const int64_t N = int64_t(B_) * T_;
    const int C = cfg_.d_model, F = cfg_.ff_dim();
    const auto w = at(w_.p, m_.offsets.layers[size_t(l)]);    // fp32 master: the LayerNorms read it
    const auto h = at(w16_.p, m_.offsets.layers[size_t(l)]);  // its bf16 mirror: the products read it
    const float p = train ? dropout_ : 0.0f;
    const int64_t drop0 = (first_ + int64_t(pass_) * B_) * T_ * C;  // the number one process gives element 0
    gpu::layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, w.ln1_w, w.ln1_b, N, C, s_);
    gemm_.forward(a.qkv, a.ln1, h.qkv_w, h.qkv_b, N, C, 3 * C, nullptr, s_);
    profile_.phase("attention-fwd", s_, [&] {
        gpu::attention_forward(a.att, a.lse, a.qkv, plans_[size_t(l % 2)], B_, T_, C, cfg_.n_head, s_);
    });
    gemm_.forward(branch_, a.att, h.proj_w, h.proj_b, N, C, C, nullptr, s_);
    gpu::residual_forward(a.x1, x, branch_, p, hash64(dropout_seed_, uint64_t(l), 0), N * C, drop0, s_);
    gpu::layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.x1, w.ln2_w, w.ln2_b, N, C, s_);
    gemm_.forward(fcg_, a.ln2, h.fc_w, h.fc_b, N, C, F, a.fch, s_);  // fcg_ = gelu(fch); fch kept for the backward
    gemm_.forward(branch_, fcg_, h.fp_w, h.fp_b, N, F, C, nullptr, s_);
    gpu::residual_forward(out, a.x1, branch_, p, hash64(dropout_seed_, uint64_t(l), 1), N * C, drop0, s_);
}

// dresid_ holds dL/d(layer output) on entry and dL/d(layer input) on return.
void GpuEngine::layer_backward(int l, Acts& a, const float* x) {
    const int64_t N = int64_t(B_) * T_;
    const int C = cfg_.d_model, F = cfg_.ff_dim();
    const auto w = at(w_.p, m_.offsets.layers[size_t(l)]);
    const auto h = at(w16_.p, m_.offsets.layers[size_t(l)]);
    const auto g = at(g_.p, m_.offsets.layers[size_t(l)]);
    const float p = dropout_;
    const int64_t drop0 = (first_ + int64_t(pass_) * B_) * T_ * C;
    // MLP branch: out = x1 + dropout(proj(gelu(fc(ln2(x1)))))
    gpu::residual_backward_branch(dbranch_, dresid_, p, hash64(dropout_seed_, uint64_t(l), 1), N * C, drop0, s_);
    gpu::gelu_forward(fcg_, a.fch, N * F, s_);  // the GELU output, recomputed rather than kept per layer
    gemm_.backward_weight(g.fp_w, g.fp_b, dbranch_, fcg_, N, F, C, s_);
    gemm_.backward_input(dfc_, dbranch_, h.fp_w, N, F, C, a.fch, g.fc_b,
                         s_);  // through the GELU, with fc's bias gradient
    gemm_.backward_weight(g.fc_w, nullptr, dfc_, a.ln2, N, C, F, s_);
    gemm_.backward_input(dln_, dfc_, h.fc_w, N, C, F, nullptr, nullptr, s_);
    gpu::layernorm_backward(dresid_, g.ln2_w, g.ln2_b, dln_, a.x1, w.ln2_w, a.ln2_mean, a.ln2_rstd, N, C, ln_scratch_,
                            s_);
    // Attention branch: x1 = x + dropout(proj(attend(qkv(ln1(x)))))
    gpu::residual_backward_branch(dbranch_, dresid_, p, hash64(dropout_seed_, uint64_t(l), 0), N * C, drop0, s_);
    gemm_.backward_weight(g.proj_w, g.proj_b, dbranch_, a.att, N, C, C, s_);
    gemm_.backward_input(datt_, dbranch_, h.proj_w, N, C, C, nullptr, nullptr, s_);
    profile_.phase("attention-bwd", s_, [&] {
        gpu::attention_backward(dqkv_, datt_, a.qkv, a.att, a.lse, dsum_, plans_[size_t(l % 2)], B_, T_, C, cfg_.n_head,
                                s_);
    });
    gemm_.backward_weight(g.qkv_w, g.qkv_b, dqkv_, a.ln1, N, C, 3 * C, s_);
    gemm_.backward_input(dln_, dqkv_, h.qkv_w, N, C, 3 * C, nullptr, nullptr, s_);
    gpu::layernorm_backward(dresid_, g.ln1_w, g.ln1_b, dln_, x, w.ln1_w, a.ln1_mean, a.ln1_rstd, N, C, ln_scratch_, s_);
}

void GpuEngine::forward(bool train) {
    const int64_t N = int64_t(B_) * T_;
    const int C = cfg_.d_model, V = cfg_.vocab, L = cfg_.n_layer;
    gpu::PosTables pos;
    pos.n = int(npos_);
    for (size_t k = 0; k < npos_; k++) {
        pos.table[k] = w_.p + m_.offsets.wpe[k];
        pos.index[k] = pos_index_.p + k * size_t(cfg_.n_ctx);
    }
    gpu::embedding_forward(resid_[0], tok_.p, w_.p + m_.offsets.wte, pos, N, T_, C, s_);
    const bool keep = train;  // evaluation runs through two residual buffers and one set of activations
    for (int l = 0; l < L; l++) {
        Acts& a = acts_[keep && !m_.recompute ? size_t(l) : 0];
        const float* x = keep ? resid_[size_t(l)] : resid_[size_t(l % 2)];
        float* out = keep ? resid_[size_t(l + 1)] : resid_[size_t((l + 1) % 2)];
        layer_forward(l, a, x, out, train);
    }
    const float* last = keep ? resid_[size_t(L)] : resid_[size_t(L % 2)];
    const ParamOffsets& o = m_.offsets;
    gpu::layernorm_forward(lnf_, lnf_mean_, lnf_rstd_, last, w_.p + o.lnf_w, w_.p + o.lnf_b, N, C, s_);
    gemm_.forward(logits_, lnf_, w16_.p + o.head, nullptr, N, C, V, nullptr, s_);
    // The gradient of the mean over the whole batch: on a data-parallel rank, share_ of it is here, in
    // passes_ parts. The loss sum covers the passes so far.
    float* losses = losses_ + int64_t(pass_) * N;
    gpu::crossentropy(losses, train ? logits_ : nullptr, logits_, tgt_.p, float(share_ / (double(N) * passes_)), N, V,
                      s_);
    gpu::sum_f64(scalars_.p, losses_, N * (pass_ + 1), red_scratch_, s_);
}

void GpuEngine::backward() {
    const int64_t N = int64_t(B_) * T_;
    const int C = cfg_.d_model, V = cfg_.vocab, L = cfg_.n_layer;
    const ParamOffsets& o = m_.offsets;
    // logits_ holds dL/dlogits (crossentropy wrote it in place).
    gemm_.backward_weight(g_.p + o.head, nullptr, logits_, lnf_, N, C, V, s_);
    gemm_.backward_input(dln_, logits_, w16_.p + o.head, N, C, V, nullptr, nullptr, s_);
    CUDA_CHECK(cudaMemsetAsync(dresid_, 0, size_t(N) * C * 4, s_));
    gpu::layernorm_backward(dresid_, g_.p + o.lnf_w, g_.p + o.lnf_b, dln_, resid_[size_t(L)], w_.p + o.lnf_w, lnf_mean_,
                            lnf_rstd_, N, C, ln_scratch_, s_);
    bucket_done(o.lnf_w, P_);  // the final LayerNorm and the head
    for (int l = L - 1; l >= 0; l--) {
        Acts& a = acts_[m_.recompute ? 0 : size_t(l)];
        if (m_.recompute) layer_forward(l, a, resid_[size_t(l)], resid_[size_t(l + 1)], true);  // the same bits again
        layer_backward(l, a, resid_[size_t(l)]);
        bucket_done(o.layer_begin(l), o.layer_end(l));
    }
    for (size_t k = 0; k <= npos_; k++) {  // the token table, then each position table (emb_inv_'s order)
        const int64_t table = k ? o.wpe[k - 1] : o.wte;
        gpu::embedding_backward(g_.p + table, dresid_, emb_inv_[k], k ? B_ : 1, T_, C, emb_scratch_, s_);
    }
    bucket_done(0, o.layer_begin(0));  // the embeddings
}

// Gradients [begin, end) are final: NCCL sums them on comm_s_ while the backward goes on.
void GpuEngine::bucket_done(int64_t begin, int64_t end) {
    if (!reduce_in_backward_) return;
    CUDA_CHECK(cudaEventRecord(ready_, s_));
    CUDA_CHECK(cudaStreamWaitEvent(comm_s_, ready_, 0));
    nccl_->allreduce_sum_device(g_.p + begin, size_t(end - begin), comm_s_);
}

// After the backward: every rank holds the sum over the ranks of the (share-weighted) gradients of
// the parameters it updates, the loss sum in scalars_[0] and the squared norm of the whole gradient
// in scalars_[1].
void GpuEngine::reduce_gradients() {
    if (nccl_ && !shard_) {  // the buckets went during the backward; the loss sum joins them
        nccl_->allreduce_sum_device(scalars_.p, 1, comm_s_);
        CUDA_CHECK(cudaEventRecord(ready_, comm_s_));
        CUDA_CHECK(cudaStreamWaitEvent(s_, ready_, 0));
    } else if (nccl_) {
        nccl_->reduce_scatter_sum_device(g_.p, size_t(part_), s_);
        nccl_->allreduce_sum_device(scalars_.p, 1, s_);
    }
    gpu::sum_squares_f64(scalars_.p + 1, g_.p + own_.begin, own_.size(), red_scratch_, s_);
    if (shard_) nccl_->allreduce_sum_device(scalars_.p + 1, 1, s_);  // the parts' squared norms, added
}

StepStats GpuEngine::train_step(const uint8_t* inp, const uint8_t* tgt, int B, int T, uint64_t dropout_seed,
                                const AdamWStep& o) {
    ensure_training();
    passes_ = passes(B);
    const int M = B / passes_;  // the micro-batch: the arena holds its activations
    ensure(M, T);
    dropout_seed_ = dropout_seed;
    dropout_ = cfg_.dropout;
    CUDA_CHECK(cudaMemsetAsync(g_.p, 0, g_.n * 4, s_));
    for (pass_ = 0; pass_ < passes_; pass_++) {  // the gradients of the passes add up in g_
        const size_t at = size_t(pass_) * size_t(M) * size_t(T);
        upload_batch(inp + at, tgt + at, true);
        profile_.phase("forward", s_, [&] { forward(true); });
        reduce_in_backward_ = nccl_ && !shard_ && pass_ + 1 == passes_;  // the last pass's buckets are final
        profile_.phase("backward", s_, [&] { backward(); });
    }
    pass_ = 0;
    reduce_in_backward_ = false;
    reduce_gradients();
    CUDA_CHECK(cudaMemcpyAsync(host_scalars_, scalars_.p, 2 * sizeof(double), cudaMemcpyDeviceToHost, s_));
    CUDA_CHECK(cudaStreamSynchronize(s_));
    profile_.end_step();
    const double tokens = double(int64_t(B) * T) / share_;  // the whole batch's
    StepStats st{host_scalars_[0] / tokens, std::sqrt(host_scalars_[1])};
    if (!std::isfinite(st.loss) || !std::isfinite(st.grad_norm)) return st;  // no update; the caller reports it
    const int64_t b = own_.begin;
    gpu::adamw(w_.p + b, w16_.p + b, g_.p + b, mom_.p, vel_.p, segs_.p, int(segs_.n), own_.size(), o.lr, o.beta1,
               o.beta2, o.eps, o.weight_decay, o.t, scalars_.p + 1, o.clip, s_);
    if (shard_) {  // every rank's new part to every rank, then the bf16 mirror of the whole
        nccl_->all_gather_device(w_.p, size_t(part_), s_);
        gpu::f32_to_bf16(w16_.p, w_.p, P_, s_);
    }
    return st;
}

double GpuEngine::loss(const uint8_t* inp, const uint8_t* tgt, int B, int T) {
    passes_ = 1;
    ensure(B, T);
    upload_batch(inp, tgt, false);
    forward(false);
    CUDA_CHECK(cudaMemcpyAsync(host_scalars_, scalars_.p, sizeof(double), cudaMemcpyDeviceToHost, s_));
    CUDA_CHECK(cudaStreamSynchronize(s_));
    return host_scalars_[0] / double(int64_t(B) * T);
}

double GpuEngine::gradient(const uint8_t* inp, const uint8_t* tgt, int B, int T, std::vector<float>* grad) {
    ensure_training();
    passes_ = 1;
    ensure(B, T);
    upload_batch(inp, tgt, true);
    CUDA_CHECK(cudaMemsetAsync(g_.p, 0, g_.n * 4, s_));
    dropout_ = 0;
    forward(true);
    backward();
    grad->resize(size_t(P_));
    CUDA_CHECK(cudaMemcpyAsync(host_scalars_, scalars_.p, sizeof(double), cudaMemcpyDeviceToHost, s_));
    CUDA_CHECK(cudaMemcpyAsync(grad->data(), g_.p, size_t(P_) * 4, cudaMemcpyDeviceToHost, s_));
    CUDA_CHECK(cudaStreamSynchronize(s_));
    return host_scalars_[0] / double(int64_t(B) * T);
}

void GpuEngine::sync_to_host() {
    CUDA_CHECK(cudaStreamSynchronize(s_));
    CUDA_CHECK(cudaMemcpy(m_.w.data(), w_.p, size_t(P_) * 4, cudaMemcpyDeviceToHost));
    if (!training_) return;
    if (!shard_) {
        CUDA_CHECK(cudaMemcpy(om_.data(), mom_.p, size_t(P_) * 4, cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(ov_.data(), vel_.p, size_t(P_) * 4, cudaMemcpyDeviceToHost));
        return;
    }
    om_ = gather_moment(mom_);
    ov_ = gather_moment(vel_);
}

// A sharded moment, every rank's part, in the host model's layout (a collective: every rank calls it).
std::vector<float> GpuEngine::gather_moment(const Buf<float>& part) {
    Buf<float> whole(size_t(part_) * size_t(nccl_->world()));
    CUDA_CHECK(cudaMemcpyAsync(whole.p + own_.begin, part.p, size_t(part_) * 4, cudaMemcpyDeviceToDevice, s_));
    nccl_->all_gather_device(whole.p, size_t(part_), s_);
    std::vector<float> host(static_cast<size_t>(P_));
    CUDA_CHECK(cudaMemcpyAsync(host.data(), whole.p, size_t(P_) * 4, cudaMemcpyDeviceToHost, s_));
    CUDA_CHECK(cudaStreamSynchronize(s_));
    return host;
}

void GpuEngine::set_data_parallel(const DataParallel& dp) {
    nccl_ = dynamic_cast<NcclComm*>(dp.comm);
    if (!nccl_) fail(name_ + ": data-parallel training on GPUs goes through NCCL");
    if (training_) fail(name_ + ": set_data_parallel comes before the first step");
    share_ = dp.share;
    first_ = dp.first;
    CUDA_CHECK(cudaStreamCreateWithFlags(&comm_s_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    shard_ = dp.shard_optimizer;
    if (!shard_) return;
    const int world = nccl_->world(), rank = nccl_->rank();
    part_ = shard_size(P_, world);
    own_ = {int64_t(rank) * part_, int64_t(rank + 1) * part_};  // in the padded buffer (padding has no segment)
    Buf<float> w(size_t(part_) * size_t(world));                // the weights padded to whole parts for the all-gather
    CUDA_CHECK(cudaMemset(w.p, 0, w.n * 4));
    CUDA_CHECK(cudaMemcpy(w.p, w_.p, size_t(P_) * 4, cudaMemcpyDeviceToDevice));
    w_ = std::move(w);
}

}  // namespace

std::unique_ptr<Engine> make_gpu_engine(Model<float>& m, std::vector<float>& opt_m, std::vector<float>& opt_v,
                                        const GpuOptions& o) {
    return std::make_unique<GpuEngine>(m, opt_m, opt_v, o);
}

}  // namespace st
