// Block-sparse flash attention on the GPU: the same function as libst/cpu/attention.h over the same
// LayerLayout, with bf16 q/k/v/out and fp32 log-sum-exp. Blocks of 64 or 128, head sizes 32, 64 and
// 128; never a T x T matrix; the backward is two kernels (dK/dV by key block over the transposed
// CSR, dQ by query block over the CSR), so it needs no atomics and gives the same bits on every run.
// Which kernel runs: attention_kernel.h.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "kernels/attention_kernel.h"
#include "layout.h"

namespace st::gpu {

using bf16 = __nv_bfloat16;

// One component of one head, on the device (layout.h's AttnComponent plus launch schedules).
struct AttnPartDev {
    const int32_t* order = nullptr;    // null: identity
    const int32_t* row_ptr = nullptr;  // null: this head has no component in this slot
    const int32_t* col = nullptr;
    const int32_t* mask = nullptr;  // per entry: -1 or a mask index
    const int32_t* col_ptr = nullptr;
    const int32_t* row_of = nullptr;
    const int32_t* mask_t = nullptr;    // per entry by key block: -1 or its mask index (mask of entry_of)
    const int32_t* q_sched = nullptr;   // query blocks, longest row first (the tail of a launch is short)
    const int32_t* k_sched = nullptr;   // key blocks, longest column first
    const uint64_t* masks = nullptr;    // block*block bits per mask: bit r*block + c, query r sees key c
    const uint64_t* masks_t = nullptr;  // the same masks transposed: bit c*block + r
};

// A layer's layout uploaded once and reused by every step at that length.
class AttnPlan {
   public:
    AttnPlan() = default;
    explicit AttnPlan(const LayerLayout& lay);
    ~AttnPlan();
    AttnPlan(AttnPlan&&) noexcept;
    AttnPlan& operator=(AttnPlan&&) noexcept;
    AttnPlan(const AttnPlan&) = delete;
    AttnPlan& operator=(const AttnPlan&) = delete;

    int T = 0, block = 0, n_head = 0, nblk = 0, slots = 0;  // slots: the most components of any head
    size_t bytes = 0;                                       // device memory it holds
    static size_t bytes_for(const LayerLayout& lay);        // what a plan of lay would hold
    const AttnPartDev* slot(int k) const { return parts_ + size_t(k) * n_head; }  // device array of n_head

   private:
    void* ints_ = nullptr;  // every index array
    AttnPartDev* parts_ = nullptr;
    void release();
};

// Calls launch(ak) for each component slot of the plan, ak being a (FwdArgs or BwdArgs) with that
// slot's parts and, past the first, merge set: a later component combines with what the earlier wrote.
template <class Args, class Launch> void for_each_component(const AttnPlan& plan, const Args& a, Launch launch) {
    for (int k = 0; k < plan.slots; k++) {
        Args ak = a;
        ak.parts = plan.slot(k);
        ak.merge = k > 0;
        launch(ak);
    }
}

// "" when the GPU kernels can run this shape, else why not (block 32, an odd head size...).
std::string attention_gpu_check(int block, int C, int NH);

// out (B, T, C) bf16 and lse (B, NH, T) fp32 from qkv (B, T, 3C) bf16, as libst/cpu/attention.h, on
// the kernel attention_kernel_here picks (attention_kernel.h).
void attention_forward(bf16* out, float* lse, const bf16* qkv, const AttnPlan& plan, int B, int T, int C, int NH,
                       cudaStream_t s);
// dqkv (B, T, 3C) bf16 is written (not accumulated). dsum: B * NH * T floats, which the backward
// fills from dout and out first; or, where out is null, already holds them (attention_dsum).
void attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse, float* dsum,
                        const AttnPlan& plan, int B, int T, int C, int NH, cudaStream_t s);
// dsum (B, NH, T) for the tokens first .. first + n of the batch: each head's row sum of dout * out,
// what the backward reads (D in FlashAttention-2's backward). dout and out point at the first token:
// the recomputing engine makes it a chunk at a time, then overwrites out with dout.
void attention_dsum(float* dsum, const bf16* dout, const bf16* out, int64_t first, int64_t n, int T, int C, int NH,
                    cudaStream_t s);
// The same on the kernel k names (tests, benchmarks); an error where k has no code for the shape.
void attention_forward(AttnKernel k, bf16* out, float* lse, const bf16* qkv, const AttnPlan& plan, int B, int T, int C,
                       int NH, cudaStream_t s);
void attention_backward(AttnKernel k, bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse,
                        float* dsum, const AttnPlan& plan, int B, int T, int C, int NH, cudaStream_t s);

}  // namespace st::gpu
