// The attention entry points: the kernel rule of attention_kernel.h, the checks every kernel needs,
// and one switch per pass from the chosen kernel to its family's launcher.
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

#include "kernels/attention.h"
#include "kernels/attention_bwd_common.cuh"
#include "kernels/attention_fwd_common.cuh"
#include "kernels/check.h"

namespace st::gpu {

const char* attention_kernel_name(AttnKernel k) {
    switch (k) {
        case AttnKernel::mma:
            return "mma";
        case AttnKernel::wgmma:
            return "wgmma";
        case AttnKernel::ws:
            return "ws";
    }
    return "?";
}

// Every row of the table takes one family for both passes; the pass stays in the rule's signature
// for the shapes where a family has only one of them.
AttnKernel attention_kernel(AttnPass /*pass*/, int head_size, int block, bool hopper) {
    if (!hopper) return AttnKernel::mma;
    if (head_size == 64) return block == 128 ? AttnKernel::ws : AttnKernel::wgmma;
    if (head_size == 128) return AttnKernel::wgmma;
    return AttnKernel::mma;  // head size 32: narrower than a wgmma panel
}

bool attention_kernel_takes(AttnKernel k, AttnPass pass, int head_size, int block) {
    const bool shape = (head_size == 32 || head_size == 64 || head_size == 128) && (block == 64 || block == 128);
    return shape && (k == AttnKernel::mma || attention_kernel(pass, head_size, block, true) == k);
}

namespace {

// D / 8 threads per (token, head), 16 bytes of dO and O each: D = sum over the head's columns of dO * O,
// for the tokens first .. first + N of the batch (dout and out point at the first).
template <int D> __global__ void dsum_kernel(float* dsum, const bf16* dout, const bf16* out, int64_t first, int64_t N,
                                             int T, int C, int NH) {
    constexpr int G = D / 8;  // threads a row: 4, 8 or 16 lanes of one warp
    const int64_t r = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / G;
    const int part = threadIdx.x % G;
    float acc = 0;
    if (r < N * NH) {
        const int64_t off = r / NH * C + r % NH * D + part * 8;
        const uint4 o = *reinterpret_cast<const uint4*>(out + off), d = *reinterpret_cast<const uint4*>(dout + off);
        const __nv_bfloat162* o2 = reinterpret_cast<const __nv_bfloat162*>(&o);
        const __nv_bfloat162* d2 = reinterpret_cast<const __nv_bfloat162*>(&d);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 a = __bfloat1622float2(o2[i]), b = __bfloat1622float2(d2[i]);
            acc += a.x * b.x + a.y * b.y;
        }
    }
#pragma unroll
    for (int k = G / 2; k > 0; k /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, k);
    if (r < N * NH && part == 0) {
        const int64_t n = first + r / NH;
        dsum[(n / T * NH + r % NH) * T + n % T] = acc;
    }
}

}  // namespace

bool attention_hopper() {
    static int hopper = -1;
    if (hopper < 0) {
        // The code the runtime loads for this device: 90 only where the build has sm_90a code.
        cudaFuncAttributes fa;
        hopper = device_attr(cudaDevAttrComputeCapabilityMajor) == 9 &&
                 cudaFuncGetAttributes(&fa, dsum_kernel<64>) == cudaSuccess && fa.binaryVersion == 90;
    }
    return hopper == 1;
}

AttnKernel attention_kernel_here(AttnPass pass, int head_size, int block) {
    // ST_ATTENTION is read once: this runs for every layer of every step.
    static const std::optional<AttnKernel> forced = []() -> std::optional<AttnKernel> {
        const char* env = std::getenv("ST_ATTENTION");
        if (!env || !*env || std::string(env) == "auto") return std::nullopt;
        for (AttnKernel k : {AttnKernel::mma, AttnKernel::wgmma, AttnKernel::ws})
            if (std::string(env) == attention_kernel_name(k)) return k;
        fail("ST_ATTENTION=" + std::string(env) + ": not one of mma, wgmma, ws, auto");
    }();
    return forced ? *forced : attention_kernel(pass, head_size, block, attention_hopper());
}

namespace {

// Why kernel k cannot run this pass and shape here ("" when it can).
std::string refusal(AttnKernel k, AttnPass pass, int D, int block) {
    const std::string name = attention_kernel_name(k), what = pass == AttnPass::forward ? "forward" : "backward";
    if (k != AttnKernel::mma && !attention_hopper())
        return "the " + name +
               " attention kernels need a Hopper GPU (compute capability 9.0) and a build with sm_90a code";
    if (!attention_kernel_takes(k, pass, D, block))
        return "the " + name + " attention " + what + " has no kernel for head size " + std::to_string(D) +
               " with blocks of " + std::to_string(block) + " (kernels/attention_kernel.h lists what each takes)";
    return "";
}

void check_call(const AttnPlan& plan, int T, int C, int NH) {
    const std::string why = attention_gpu_check(plan.block, C, NH);
    if (!why.empty()) fail(why);
    if (plan.T != T || plan.n_head != NH) fail("attention: plan built for another length or head count");
}

}  // namespace

void attention_dsum(float* dsum, const bf16* dout, const bf16* out, int64_t first, int64_t n, int T, int C, int NH,
                    cudaStream_t s) {
    const int D = C / NH;
    if (!aligned16(dout) || !aligned16(out) || C % 8)
        fail("attention_dsum: rows must be whole, aligned 16-byte pieces");
    const int64_t threads_needed = n * NH * (D / 8);
    const int threads = 256;
    const unsigned grid = unsigned((threads_needed + threads - 1) / threads);
    if (grid == 0) return;
    if (D == 32) dsum_kernel<32><<<grid, threads, 0, s>>>(dsum, dout, out, first, n, T, C, NH);
    if (D == 64) dsum_kernel<64><<<grid, threads, 0, s>>>(dsum, dout, out, first, n, T, C, NH);
    if (D == 128) dsum_kernel<128><<<grid, threads, 0, s>>>(dsum, dout, out, first, n, T, C, NH);
    CUDA_LAUNCH_CHECK();
}

void attention_forward(AttnKernel k, bf16* out, float* lse, const bf16* qkv, const AttnPlan& plan, int B, int T, int C,
                       int NH, cudaStream_t s) {
    check_call(plan, T, C, NH);
    const int D = C / NH;
    const std::string why = refusal(k, AttnPass::forward, D, plan.block);
    if (!why.empty()) fail(why);
    const FwdArgs a{out, lse, qkv, nullptr, T, C, NH, float(1.4426950408889634 / std::sqrt(double(D))), false};
    switch (k) {
        case AttnKernel::mma:
            return forward_mma(a, plan, B, s);
        case AttnKernel::wgmma:
            return forward_wgmma(a, plan, B, s);
        case AttnKernel::ws:
            return forward_ws(a, plan, B, s);
    }
}

void attention_backward(AttnKernel k, bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse,
                        float* dsum, const AttnPlan& plan, int B, int T, int C, int NH, cudaStream_t s) {
    check_call(plan, T, C, NH);
    const int D = C / NH;
    const std::string why = refusal(k, AttnPass::backward, D, plan.block);
    if (!why.empty()) fail(why);
    if (!aligned16(dqkv) || !aligned16(dout) || !aligned16(qkv))
        fail(
            "attention_backward: the kernels read and write whole 16-byte pieces of rows: pointers must be 16-byte "
            "aligned");
    if (out) attention_dsum(dsum, dout, out, 0, int64_t(B) * T, T, C, NH, s);
    const double sc = 1.0 / std::sqrt(double(D));
    const BwdArgs a{dqkv, dout, qkv, lse, dsum, nullptr, T, C, NH, float(sc), float(sc * 1.4426950408889634), false};
    switch (k) {
        case AttnKernel::mma:
            return backward_mma(a, plan, B, s);
        case AttnKernel::wgmma:
            return backward_wgmma(a, plan, B, s);
        case AttnKernel::ws:
            return backward_ws(a, plan, B, s);
    }
}

void attention_forward(bf16* out, float* lse, const bf16* qkv, const AttnPlan& plan, int B, int T, int C, int NH,
                       cudaStream_t s) {
    const int D = NH > 0 ? C / NH : 0;  // the explicit overload checks the shape
    attention_forward(attention_kernel_here(AttnPass::forward, D, plan.block), out, lse, qkv, plan, B, T, C, NH, s);
}

void attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse, float* dsum,
                        const AttnPlan& plan, int B, int T, int C, int NH, cudaStream_t s) {
    const int D = NH > 0 ? C / NH : 0;  // the explicit overload checks the shape
    attention_backward(attention_kernel_here(AttnPass::backward, D, plan.block), dqkv, dout, qkv, out, lse, dsum, plan,
                       B, T, C, NH, s);
}

}  // namespace st::gpu
