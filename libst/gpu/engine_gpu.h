// The GPU engine's class, shared by its two files: engine_gpu.cpp (set-up, the step, the optimizer,
// data parallelism, and the passes that keep every layer's activations) and engine_gpu_recompute.cpp
// (--recompute: the passes that keep only each layer's input and redo the rest chunk by chunk).
//
// Master weights, gradients and Adam moments are fp32 in single buffers laid out as the host model's;
// a bf16 mirror of the weights feeds the matrix products. Activations are bf16 except the fp32
// residual stream. Every kernel is deterministic, so a step gives the same bits on every run.
#pragma once
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "engine.h"
#include "gpu/buffer.h"
#include "gpu/profile.h"
#include "kernels/attention.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "parallel/nccl.h"
#include "parallel/shard.h"

namespace st {

using gpu::bf16;
using gpu::Buf;

class GpuEngine final : public Engine {
   public:
    GpuEngine(Model<float>& m, std::vector<float>& om, std::vector<float>& ov, const GpuOptions& o);
    ~GpuEngine() override;
    std::string name() const override { return name_; }
    double peak_gib() const override;
    StepStats train_step(const uint8_t* inp, const uint8_t* tgt, int B, int T, uint64_t dropout_seed,
                         const AdamWStep& opt) override;
    double loss(const uint8_t* inp, const uint8_t* tgt, int B, int T) override;
    double gradient(const uint8_t* inp, const uint8_t* tgt, int B, int T, std::vector<float>* grad) override;
    void sync_to_host() override;
    void set_data_parallel(const DataParallel& dp) override;
    double optimizer_gib() const override { return double(mom_.n + vel_.n) * 4 / double(1 << 30); }
    MemoryPlan memory_plan(int B, int T, bool layouts) override;

   private:
    // One layer's activations. Kept path: every one for all N tokens of the pass. Recompute path: qkv,
    // att and lse for all N (attention needs the whole sequence), the rest for one chunk of tokens.
    struct Acts {
        bf16 *ln1, *qkv, *att, *ln2, *fch;
        float *ln1_mean, *ln1_rstd, *lse, *x1, *ln2_mean, *ln2_rstd;
    };
    // Where a pass's activations live: carve() lays them out in one arena, for ensure() to allocate
    // and for memory_plan() to count.
    struct Arena {
        std::vector<Acts> acts;     // per layer (kept path), or one
        std::vector<float*> resid;  // kept path: every layer's input and the last output (training), or two
        std::vector<bf16*> ckpt;    // recompute path: every layer's input in bf16 (training), or two
                                    // (evaluation, --offload)
        bf16 *lnf = nullptr, *logits = nullptr, *branch = nullptr, *fcg = nullptr, *datt = nullptr, *dqkv = nullptr,
             *dln = nullptr, *dfc = nullptr, *dbranch = nullptr;
        float *lnf_mean = nullptr, *lnf_rstd = nullptr, *losses = nullptr, *dresid = nullptr, *dsum = nullptr,
              *xc = nullptr, *outc = nullptr;  // xc, outc: a chunk's layer input and output in fp32 (recompute)
        void *ln_scratch = nullptr, *red_scratch = nullptr, *emb_scratch = nullptr;
        int64_t chunk = 0;  // tokens of the token-local work at a time: all N on the kept path
    };
    size_t carve(Arena* a, std::vector<std::pair<void**, size_t>>* plan, int B, int T, int64_t chunk, bool train) const;
    int64_t choose_chunk(int B, int T, bool train) const;

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

    void ensure(int B, int T);
    void ensure_training();
    void upload_batch(const uint8_t* inp, const uint8_t* tgt, bool train);
    void forward(bool train);
    void backward();
    void reduce_gradients();
    void report_norms(int64_t t);
    Buf<double> norms_;  // ST_NORMS: each parameter's squared gradient and weight norms
    std::vector<float> gather_moment(const Buf<float>& part);
    gpu::PosTables pos_tables() const;
    int64_t drop_first() const { return (first_ + int64_t(pass_) * B_) * T_ * cfg_.d_model; }

    // The token-local parts of layer l on n tokens of the pass, the first of them token `first`
    // (which numbers the dropout masks). Every pointer, in a and the arguments, points at that token.
    // LayerNorm 1 and the qkv product:
    void forward_to_qkv(int l, const Acts& a, const float* x, int64_t n);
    // The projection, residual, LayerNorm 2, MLP and residual; out null (the recomputation before a
    // backward) stops after the MLP's first product, all that its backward reads:
    void forward_from_attention(int l, const Acts& a, const float* x, float* out, int64_t first, int64_t n, bool train);
    // From dresid = dL/d(layer output) back through the MLP and the projection: dresid becomes
    // dL/dx1 and datt dL/d(attention output):
    void backward_to_attention(int l, const Acts& a, float* dresid, bf16* datt, int64_t first, int64_t n);
    // From dqkv back through the qkv product and LayerNorm 1 into dresid (added):
    void backward_from_qkv(int l, const Acts& a, const float* x, float* dresid, const bf16* dqkv, int64_t n);
    // The final LayerNorm, head and cross-entropy of n tokens whose last-layer output is x; with
    // train, dlogits replace the logits, and head_backward adds their gradient into dresid.
    void head_forward(const float* x, int64_t first, int64_t n, bool train);
    void head_backward(const float* x, float* dresid, int64_t n);

    // The kept path (engine_gpu.cpp).
    void forward_kept(bool train);
    void backward_kept();
    // The recompute path (engine_gpu_recompute.cpp).
    void forward_recompute(bool train);
    void backward_recompute();
    Acts chunk_view(int64_t first) const;  // acts[0] with qkv and att at token first
    void forward_to_attention_output(int l, const bf16* x);
    // --offload: layer inputs 0 .. L-3 of a training pass go to pinned host memory (host_ckpt_); the
    // card keeps two, taking turns, so the last two layers' never leave it. copy_s_ moves them behind
    // the compute; saved_[k] and loaded_[k] mark the last copy out of and into device buffer k.
    int64_t offloaded_layers(bool train) const;
    // Where layer l's input is: training keeps every one (--offload: two, taking turns), evaluation two.
    bf16* layer_input(int l, bool train) const;
    void copy_input(int l, bool out, cudaEvent_t done);
    gpu::HostBuf<bf16> host_ckpt_;
    cudaStream_t copy_s_ = nullptr;
    cudaEvent_t issued_ = nullptr, saved_[2] = {}, loaded_[2] = {};

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
    std::vector<gpu::AttnPlan> plans_;  // layout_period of them: layer l's is layer_plan(l)
    const gpu::AttnPlan& layer_plan(int l) const { return plans_[size_t(l) % plans_.size()]; }
    Buf<uint8_t> tok_, tgt_;
    Buf<int32_t> pos_index_, pos_inv_ptr_, pos_inv_items_, tok_inv_;  // tok_inv_: ptr (257) then items (N)
    Buf<char> arena_;
    Arena a_;
    std::vector<gpu::InverseIndex> emb_inv_;  // the token table's, then each position table's
    std::vector<int32_t> tok_inv_host_;
};

}  // namespace st
