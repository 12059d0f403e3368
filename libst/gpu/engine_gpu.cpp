// The GPU engine (engine_gpu.h): set-up, the step, the optimizer, data parallelism, and the passes
// that keep every layer's activations for the backward. --recompute's passes: engine_gpu_recompute.cpp.
#include "gpu/engine_gpu.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "error.h"
#include "gpu/device.h"
#include "kernels/check.h"
#include "rng.h"

namespace st {

using gpu::bf16;
using gpu::Buf;

GpuEngine::GpuEngine(Model<float>& m, std::vector<float>& om, std::vector<float>& ov, const GpuOptions& o)
    : m_(m),
      om_(om),
      ov_(ov),
      cfg_(m.cfg),
      name_(gpu::select_device(o.device)),
      npos_(m.pos_index().size()),
      P_(m.num_params) {
    gpu::memory_use().peak = gpu::memory_use().now;  // peak_gib: this engine's peak, not an earlier one's
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

GpuEngine::~GpuEngine() {
    cudaFreeHost(host_scalars_);
    if (comm_s_) cudaStreamDestroy(comm_s_), cudaEventDestroy(ready_);
    if (copy_s_) {
        cudaStreamDestroy(copy_s_);
        for (cudaEvent_t e : {issued_, saved_[0], saved_[1], loaded_[0], loaded_[1]}) cudaEventDestroy(e);
    }
    cudaStreamDestroy(s_);
}

double GpuEngine::peak_gib() const {
    size_t plans = 0;
    for (const auto& p : plans_) plans += p.bytes;
    return double(gpu::memory_use().peak + gpu::Gemm::workspace_bytes() + plans) / double(1 << 30);
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

// Lays out one pass's activations for B windows of T as a list of (pointer, bytes), 256-byte aligned,
// and returns the arena's size. The kept path holds every layer's activations for all N tokens; the
// recompute path (chunk > 0) each layer's input in bf16, what attention needs for all N, and the rest
// for chunks of `chunk` tokens.
size_t GpuEngine::carve(Arena* a, std::vector<std::pair<void**, size_t>>* plan, int B, int T, int64_t chunk,
                        bool train) const {
    const int64_t N = int64_t(B) * T, C = cfg_.d_model, F = cfg_.ff_dim(), V = cfg_.vocab, L = cfg_.n_layer,
                  NH = cfg_.n_head;
    const bool rec = chunk > 0;
    const int64_t K = rec ? std::min(chunk, N) : N;  // tokens of the token-local buffers
    a->chunk = K;
    size_t bytes = 0;
    plan->clear();
    auto take = [&](auto** ptr, int64_t count) {
        plan->push_back({reinterpret_cast<void**>(ptr), size_t(count) * sizeof(**ptr)});
        bytes += (size_t(count) * sizeof(**ptr) + 255) / 256 * 256;
    };
    a->acts.assign(size_t(train && !rec ? L : 1), Acts{});
    for (auto& x : a->acts) {
        take(&x.ln1, K * C);
        take(&x.qkv, N * 3 * C);
        take(&x.att, N * C);
        take(&x.ln2, K * C);
        take(&x.fch, K * F);
        take(&x.ln1_mean, K);
        take(&x.ln1_rstd, K);
        take(&x.lse, N * NH);
        take(&x.x1, K * C);
        take(&x.ln2_mean, K);
        take(&x.ln2_rstd, K);
    }
    // Layer inputs: every one is kept when training (the backward, or its recomputation, starts from
    // them), all but two of them in host memory with --offload; evaluation needs two. The kept path
    // holds the last layer's output too.
    a->resid.assign(rec ? 0 : size_t(train ? L + 1 : 2), nullptr);
    for (auto& r : a->resid) take(&r, N * C);
    a->ckpt.assign(rec ? size_t(train ? L - offloaded_layers(true) : std::min<int64_t>(L, 2)) : 0, nullptr);
    for (auto& r : a->ckpt) take(&r, N * C);
    if (rec) {
        take(&a->xc, K * C);
        take(&a->outc, K * C);
    }
    take(&a->lnf, K * C);
    take(&a->lnf_mean, K);
    take(&a->lnf_rstd, K);
    take(&a->logits, K * V);
    take(&a->losses, N * passes_);  // every pass's, summed once at the end
    take(&a->branch, K * C);
    take(&a->fcg, K * F);
    if (train) {
        take(&a->dresid, N * C);
        take(&a->dbranch, K * C);
        take(&a->datt, K * C);
        take(&a->dln, K * C);
        take(&a->dqkv, N * 3 * C);
        take(&a->dfc, K * F);
        take(&a->dsum, N * NH);
        take(reinterpret_cast<char**>(&a->ln_scratch), int64_t(gpu::layernorm_backward_scratch(K, int(C))));
        take(reinterpret_cast<char**>(&a->red_scratch),
             int64_t(gpu::reduce_scratch(std::max<int64_t>(P_, N * passes_))));
        // The embedding backward's scratch grows with the rows of its tables and the terms it sums.
        gpu::InverseIndex tokens{256, N, nullptr, nullptr};
        size_t emb = gpu::embedding_backward_scratch(tokens, 1, int(C));
        for (size_t k = 0; k < npos_; k++)
            emb = std::max(
                emb, gpu::embedding_backward_scratch({int(m_.offsets.wpe_rows[k]), T, nullptr, nullptr}, B, int(C)));
        take(reinterpret_cast<char**>(&a->emb_scratch), int64_t(emb));
    } else {
        take(reinterpret_cast<char**>(&a->red_scratch), int64_t(gpu::reduce_scratch(N * passes_)));
    }
    return bytes;
}

// --recompute's chunk: the one asked for, else the largest power of two up to 32,768 tokens (past
// which the products gain little) whose buffers take at most a sixteenth of what the whole sequence
// needs, down to 4,096 (below, the launches cost more than the products), and fit beside what the
// card has free.
int64_t GpuEngine::choose_chunk(int B, int T, bool train) const {
    if (!m_.recompute) return 0;
    if (chunk_ > 0) return chunk_;
    size_t free = 0, total = 0;
    CUDA_CHECK(cudaMemGetInfo(&free, &total));
    free += arena_.bytes();  // the arena in hand goes before the new one comes
    Arena a;
    std::vector<std::pair<void**, size_t>> plan;
    const size_t whole = carve(&a, &plan, B, T, 1, train);  // the sequence's buffers, chunks of one token
    int64_t k = 32768;
    while (k > 4096 && carve(&a, &plan, B, T, k, train) - whole > whole / 16) k /= 2;
    while (k > 256 && carve(&a, &plan, B, T, k, train) > free) k /= 2;
    return k;
}

// Activations for B windows of T, in one arena (carve).
void GpuEngine::ensure(int B, int T) {
    if (T < 1 || T > cfg_.n_ctx)
        fail("sequence length " + std::to_string(T) + " is outside 1.." + std::to_string(cfg_.n_ctx));
    if (B == B_ && T == T_ && passes_ <= arena_passes_) return;
    if (T != T_) {
        plans_.clear();
        for (int l = 0; l < std::min(cfg_.n_layer, layout_period(attn_)); l++)
            plans_.emplace_back(layout_build(attn_, T, cfg_.n_head, l));
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
    tok_ = Buf<uint8_t>();  // the old batch and arena go before the new ones come
    tgt_ = Buf<uint8_t>();
    tok_inv_ = Buf<int32_t>();
    arena_ = Buf<char>();
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
    std::vector<std::pair<void**, size_t>> plan;
    const size_t bytes = carve(&a_, &plan, B, T, choose_chunk(B, T, training_), training_);
    arena_ = Buf<char>(bytes);
    char* p = arena_.p;
    for (auto& [at, size] : plan) {
        *at = p;
        p += (size + 255) / 256 * 256;
    }
    host_ckpt_ = gpu::HostBuf<bf16>();
    if (const int64_t k = offloaded_layers(training_)) {
        if (!copy_s_) {
            CUDA_CHECK(cudaStreamCreateWithFlags(&copy_s_, cudaStreamNonBlocking));
            for (cudaEvent_t* e : {&issued_, &saved_[0], &saved_[1], &loaded_[0], &loaded_[1]})
                CUDA_CHECK(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
        }
        host_ckpt_ = gpu::HostBuf<bf16>(size_t(k * N * cfg_.d_model), "--offload (the layer inputs)");
    }
}

MemoryPlan GpuEngine::memory_plan(int B, int T, bool layouts) {
    const int M = micro_ > 0 ? std::min(B, micro_) : B;  // a pass's examples (passes() checks they divide B)
    MemoryPlan mp;
    const int64_t held = shard_ ? part_ : P_, gbuf = shard_ ? part_ * nccl_->world() : P_;
    mp.weights = int64_t(w_.bytes() + w16_.bytes()) + gbuf * 4;
    mp.optimizer = 2 * held * 4;
    Arena a;
    std::vector<std::pair<void**, size_t>> plan;
    mp.chunk = choose_chunk(M, T, true);
    const int64_t N = int64_t(M) * T;
    // The arena, the batch and its index, the position tables' rows for each t and their inverse.
    mp.activations =
        int64_t(carve(&a, &plan, M, T, mp.chunk, true)) + 2 * N + (N + 257) * 4 + int64_t(pos_index_.bytes());
    for (size_t k = 0; k < npos_; k++) mp.activations += (m_.offsets.wpe_rows[k] + 1 + T) * 4;
    for (int l = 0; layouts && l < std::min(cfg_.n_layer, layout_period(attn_)); l++)
        mp.attention += int64_t(gpu::AttnPlan::bytes_for(layout_build(attn_, T, cfg_.n_head, l)));
    mp.workspace = int64_t(gpu::Gemm::workspace_bytes());
    mp.host = offloaded_layers(true) * N * cfg_.d_model * int64_t(sizeof(bf16));
    size_t free = 0, total = 0;
    CUDA_CHECK(cudaMemGetInfo(&free, &total));
    size_t plans = 0;
    for (const auto& p : plans_) plans += p.bytes;
    mp.available = int64_t(free + gpu::memory_use().now + gpu::Gemm::workspace_bytes() + plans);
    return mp;
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

gpu::PosTables GpuEngine::pos_tables() const {
    gpu::PosTables pos;
    pos.n = int(npos_);
    for (size_t k = 0; k < npos_; k++) {
        pos.table[k] = w_.p + m_.offsets.wpe[k];
        pos.index[k] = pos_index_.p + k * size_t(cfg_.n_ctx);
    }
    return pos;
}

// ---- The token-local parts of a layer and the head (both paths) ----

void GpuEngine::forward_to_qkv(int l, const Acts& a, const float* x, int64_t n) {
    const int C = cfg_.d_model;
    const auto w = at(w_.p, m_.offsets.layers[size_t(l)]);    // fp32 master: the LayerNorms read it
    const auto h = at(w16_.p, m_.offsets.layers[size_t(l)]);  // its bf16 mirror: the products read it
    gpu::layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, w.ln1_w, w.ln1_b, n, C, s_);
    gemm_.forward(a.qkv, a.ln1, h.qkv_w, h.qkv_b, n, C, 3 * C, nullptr, s_);
}

void GpuEngine::forward_from_attention(int l, const Acts& a, const float* x, float* out, int64_t first, int64_t n,
                                       bool train) {
    const int C = cfg_.d_model, F = cfg_.ff_dim();
    const auto w = at(w_.p, m_.offsets.layers[size_t(l)]);
    const auto h = at(w16_.p, m_.offsets.layers[size_t(l)]);
    const float p = train ? dropout_ : 0.0f;
    const int64_t drop0 = drop_first() + first * C;  // the number one process gives this call's element 0
    gemm_.forward(a_.branch, a.att, h.proj_w, h.proj_b, n, C, C, nullptr, s_);
    gpu::residual_forward(a.x1, x, a_.branch, p, hash64(dropout_seed_, uint64_t(l), 0), n * C, drop0, s_);
    gpu::layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.x1, w.ln2_w, w.ln2_b, n, C, s_);
    gemm_.forward(a_.fcg, a.ln2, h.fc_w, h.fc_b, n, C, F, a.fch, s_);  // fcg = gelu(fch); fch kept for the backward
    if (!out) return;
    gemm_.forward(a_.branch, a_.fcg, h.fp_w, h.fp_b, n, F, C, nullptr, s_);
    gpu::residual_forward(out, a.x1, a_.branch, p, hash64(dropout_seed_, uint64_t(l), 1), n * C, drop0, s_);
}

void GpuEngine::backward_to_attention(int l, const Acts& a, float* dresid, bf16* datt, int64_t first, int64_t n) {
    const int C = cfg_.d_model, F = cfg_.ff_dim();
    const auto w = at(w_.p, m_.offsets.layers[size_t(l)]);
    const auto h = at(w16_.p, m_.offsets.layers[size_t(l)]);
    const auto g = at(g_.p, m_.offsets.layers[size_t(l)]);
    const float p = dropout_;
    const int64_t drop0 = drop_first() + first * C;
    // MLP branch: out = x1 + dropout(proj(gelu(fc(ln2(x1)))))
    gpu::residual_backward_branch(a_.dbranch, dresid, p, hash64(dropout_seed_, uint64_t(l), 1), n * C, drop0, s_);
    gpu::gelu_forward(a_.fcg, a.fch, n * F, s_);  // the GELU output, recomputed rather than kept per layer
    gemm_.backward_weight(g.fp_w, g.fp_b, a_.dbranch, a_.fcg, n, F, C, s_);
    // Through the GELU, with fc's bias gradient:
    gemm_.backward_input(a_.dfc, a_.dbranch, h.fp_w, n, F, C, a.fch, g.fc_b, s_);
    gemm_.backward_weight(g.fc_w, nullptr, a_.dfc, a.ln2, n, C, F, s_);
    gemm_.backward_input(a_.dln, a_.dfc, h.fc_w, n, C, F, nullptr, nullptr, s_);
    gpu::layernorm_backward(dresid, g.ln2_w, g.ln2_b, a_.dln, a.x1, w.ln2_w, a.ln2_mean, a.ln2_rstd, n, C,
                            a_.ln_scratch, s_);
    // Attention branch: x1 = x + dropout(proj(attend(qkv(ln1(x)))))
    gpu::residual_backward_branch(a_.dbranch, dresid, p, hash64(dropout_seed_, uint64_t(l), 0), n * C, drop0, s_);
    gemm_.backward_weight(g.proj_w, g.proj_b, a_.dbranch, a.att, n, C, C, s_);
    gemm_.backward_input(datt, a_.dbranch, h.proj_w, n, C, C, nullptr, nullptr, s_);
}

void GpuEngine::backward_from_qkv(int l, const Acts& a, const float* x, float* dresid, const bf16* dqkv, int64_t n) {
    const int C = cfg_.d_model;
    const auto w = at(w_.p, m_.offsets.layers[size_t(l)]);
    const auto h = at(w16_.p, m_.offsets.layers[size_t(l)]);
    const auto g = at(g_.p, m_.offsets.layers[size_t(l)]);
    gemm_.backward_weight(g.qkv_w, g.qkv_b, dqkv, a.ln1, n, C, 3 * C, s_);
    gemm_.backward_input(a_.dln, dqkv, h.qkv_w, n, C, 3 * C, nullptr, nullptr, s_);
    gpu::layernorm_backward(dresid, g.ln1_w, g.ln1_b, a_.dln, x, w.ln1_w, a.ln1_mean, a.ln1_rstd, n, C, a_.ln_scratch,
                            s_);
}

void GpuEngine::head_forward(const float* x, int64_t first, int64_t n, bool train) {
    const int C = cfg_.d_model, V = cfg_.vocab;
    const ParamOffsets& o = m_.offsets;
    gpu::layernorm_forward(a_.lnf, a_.lnf_mean, a_.lnf_rstd, x, w_.p + o.lnf_w, w_.p + o.lnf_b, n, C, s_);
    gemm_.forward(a_.logits, a_.lnf, w16_.p + o.head, nullptr, n, C, V, nullptr, s_);
    // The gradient of the mean over the whole batch: on a data-parallel rank, share_ of it is here, in
    // passes_ parts.
    const double N = double(B_) * T_;
    float* losses = a_.losses + int64_t(pass_) * B_ * T_ + first;
    gpu::crossentropy(losses, train ? a_.logits : nullptr, a_.logits, tgt_.p + first, float(share_ / (N * passes_)), n,
                      V, s_);
}

void GpuEngine::head_backward(const float* x, float* dresid, int64_t n) {
    const int C = cfg_.d_model, V = cfg_.vocab;
    const ParamOffsets& o = m_.offsets;
    // a_.logits holds dL/dlogits (crossentropy wrote it in place).
    gemm_.backward_weight(g_.p + o.head, nullptr, a_.logits, a_.lnf, n, C, V, s_);
    gemm_.backward_input(a_.dln, a_.logits, w16_.p + o.head, n, C, V, nullptr, nullptr, s_);
    CUDA_CHECK(cudaMemsetAsync(dresid, 0, size_t(n) * C * 4, s_));
    gpu::layernorm_backward(dresid, g_.p + o.lnf_w, g_.p + o.lnf_b, a_.dln, x, w_.p + o.lnf_w, a_.lnf_mean, a_.lnf_rstd,
                            n, C, a_.ln_scratch, s_);
}

// ---- The kept path: every layer's activations for all N tokens ----

void GpuEngine::forward_kept(bool train) {
    const int64_t N = int64_t(B_) * T_;
    const int C = cfg_.d_model, L = cfg_.n_layer;
    gpu::embedding_forward(a_.resid[0], tok_.p, w_.p + m_.offsets.wte, pos_tables(), 0, N, T_, C, s_);
    const bool keep = train;  // evaluation runs through two residual buffers and one set of activations
    for (int l = 0; l < L; l++) {
        const Acts& a = a_.acts[keep ? size_t(l) : 0];
        const float* x = keep ? a_.resid[size_t(l)] : a_.resid[size_t(l % 2)];
        float* out = keep ? a_.resid[size_t(l + 1)] : a_.resid[size_t((l + 1) % 2)];
        forward_to_qkv(l, a, x, N);
        profile_.phase("attention-fwd", s_,
                       [&] { gpu::attention_forward(a.att, a.lse, a.qkv, layer_plan(l), B_, T_, C, cfg_.n_head, s_); });
        forward_from_attention(l, a, x, out, 0, N, train);
    }
    head_forward(keep ? a_.resid[size_t(L)] : a_.resid[size_t(L % 2)], 0, N, train);
}

void GpuEngine::backward_kept() {
    const int64_t N = int64_t(B_) * T_;
    const int C = cfg_.d_model, L = cfg_.n_layer;
    head_backward(a_.resid[size_t(L)], a_.dresid, N);
    bucket_done(m_.offsets.lnf_w, P_);  // the final LayerNorm and the head
    for (int l = L - 1; l >= 0; l--) {
        const Acts& a = a_.acts[size_t(l)];
        backward_to_attention(l, a, a_.dresid, a_.datt, 0, N);
        profile_.phase("attention-bwd", s_, [&] {
            gpu::attention_backward(a_.dqkv, a_.datt, a.qkv, a.att, a.lse, a_.dsum, layer_plan(l), B_, T_, C,
                                    cfg_.n_head, s_);
        });
        backward_from_qkv(l, a, a_.resid[size_t(l)], a_.dresid, a_.dqkv, N);
        bucket_done(m_.offsets.layer_begin(l), m_.offsets.layer_end(l));
    }
}

void GpuEngine::forward(bool train) {
    if (a_.ckpt.empty())
        forward_kept(train);
    else
        forward_recompute(train);
    gpu::sum_f64(scalars_.p, a_.losses, int64_t(B_) * T_ * (pass_ + 1), a_.red_scratch, s_);  // the passes so far
}

void GpuEngine::backward() {
    if (a_.ckpt.empty())
        backward_kept();
    else
        backward_recompute();
    const ParamOffsets& o = m_.offsets;
    for (size_t k = 0; k <= npos_; k++) {  // the token table, then each position table (emb_inv_'s order)
        const int64_t table = k ? o.wpe[k - 1] : o.wte;
        gpu::embedding_backward(g_.p + table, a_.dresid, emb_inv_[k], k ? B_ : 1, T_, cfg_.d_model, a_.emb_scratch, s_);
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
    gpu::sum_squares_f64(scalars_.p + 1, g_.p + own_.begin, own_.size(), a_.red_scratch, s_);
    if (shard_) nccl_->allreduce_sum_device(scalars_.p + 1, 1, s_);  // the parts' squared norms, added
}

// ST_NORMS=K, a diagnostic of a run that grows unstable: every K steps, each parameter's gradient and
// weight norms (before the update) as one JSON line on stderr, {"step": t, "norms": {name: [grad,
// weight], ...}}. One process, or a data-parallel rank that holds the whole gradient (not sharded).
void GpuEngine::report_norms(int64_t t) {
    static const int64_t every = [] {
        const char* e = std::getenv("ST_NORMS");
        return e ? std::max<int64_t>(0, std::atoll(e)) : 0;
    }();
    if (every <= 0 || t % every || shard_) return;
    const size_t n = m_.params.size();
    if (norms_.n < 2 * n) norms_ = Buf<double>(2 * n);
    for (size_t i = 0; i < n; i++) {
        const auto& p = m_.params[i];
        gpu::sum_squares_f64(norms_.p + 2 * i, g_.p + p.offset, p.numel, a_.red_scratch, s_);
        gpu::sum_squares_f64(norms_.p + 2 * i + 1, w_.p + p.offset, p.numel, a_.red_scratch, s_);
    }
    std::vector<double> h(2 * n);
    CUDA_CHECK(cudaMemcpyAsync(h.data(), norms_.p, h.size() * sizeof(double), cudaMemcpyDeviceToHost, s_));
    CUDA_CHECK(cudaStreamSynchronize(s_));
    std::string line = "{\"step\":" + std::to_string(t) + ",\"norms\":{";
    char num[64];
    for (size_t i = 0; i < n; i++) {
        std::snprintf(num, sizeof num, "[%.6g,%.6g]", std::sqrt(h[2 * i]), std::sqrt(h[2 * i + 1]));
        line += (i ? ",\"" : "\"") + m_.params[i].name + "\":" + num;
    }
    std::fprintf(stderr, "%s}}\n", line.c_str());
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
    report_norms(o.t);
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

std::unique_ptr<Engine> make_gpu_engine(Model<float>& m, std::vector<float>& opt_m, std::vector<float>& opt_v,
                                        const GpuOptions& o) {
    return std::make_unique<GpuEngine>(m, opt_m, opt_v, o);
}

}  // namespace st
