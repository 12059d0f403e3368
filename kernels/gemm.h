// Matrix products through cuBLASLt, in nn.Linear's row-major terms: weight (OC, IC), activations
// (N, IC) -> (N, OC). bf16 operands, fp32 accumulation; epilogues fuse the bias and GELU. The
// algorithm for each shape is chosen once and reused, so results are the same bits on every run.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace st::gpu {

using bf16 = __nv_bfloat16;

// IC and OC must be multiples of 8 and every pointer 16-byte aligned (cuBLASLt's tensor-core kernels
// read rows 16 bytes at a time); N is free. A violation is an st::Error.
// One cuBLASLt handle and workspace per device and stream owner (a model, a harness).
class Gemm {
   public:
    Gemm();
    ~Gemm();
    Gemm(const Gemm&) = delete;
    Gemm& operator=(const Gemm&) = delete;
    static size_t workspace_bytes();  // device memory each Gemm holds

    // out = inp . weight^T + bias (bias bf16 (OC) or null). With gelu_aux not null, out = gelu(that)
    // and gelu_aux receives the value before the GELU (what backward_gelu needs).
    void forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int64_t N, int IC, int OC,
                 bf16* gelu_aux, cudaStream_t s);
    // dinp = dout . weight (written). With gelu_aux (the forward's pre-GELU values of dinp's layer),
    // dinp = (dout . weight) * gelu'(gelu_aux) and, when dbias_gelu is not null, dbias_gelu (IC,
    // fp32) += the column sums of that.
    void backward_input(bf16* dinp, const bf16* dout, const bf16* weight, int64_t N, int IC, int OC,
                        const bf16* gelu_aux, float* dbias_gelu, cudaStream_t s);
    // dweight (OC, IC) fp32 += dout^T . inp; dbias (OC) fp32 += column sums of dout (when not null).
    void backward_weight(float* dweight, float* dbias, const bf16* dout, const bf16* inp, int64_t N, int IC, int OC,
                         cudaStream_t s);

   private:
    struct Impl;
    Impl* impl_;
};

}  // namespace st::gpu
