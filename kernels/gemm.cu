// nn.Linear's three products through cuBLASLt (gemm.h), checked by tests/gpu/test_gemm_gpu.cpp.
//
// cuBLASLt is column-major, and a row-major (R, C) matrix is the column-major (C, R) matrix with
// leading dimension C, its transpose. So every product is computed transposed:
//   forward         out^T (OC, N)  = W (OC, IC) . inp^T (IC, N)   W stored as W^T: op A = T
//   backward_input  dinp^T (IC, N) = W^T (IC, OC) . dout^T (OC, N)
//   backward_weight dW^T (IC, OC) += inp^T (IC, N) . dout (N, OC) dout stored as dout^T: op B = T
// The bias (OC) then runs along the rows of D, as cuBLASLt's epilogues broadcast it.
//
// GELU: the forward's GELU_AUX(_BIAS) and backward_input's DGELU epilogues are taken to be the tanh
// approximation of libst/cpu/gelu.cpp. The two forms differ by 5e-4 at most, below bf16 resolution
// for all but the tails, so a dedicated [gpu] test feeds exact pre-activations on [-4, 4] and checks
// that cuBLASLt is nearer the tanh form than the erf one.
//
// Bias gradients are column sums of a bf16 (N, cols) matrix, added to fp32 gradients. cuBLASLt's
// BGRAD epilogues write rather than add (and in bf16 for backward_input), so the sums are made here:
// row chunks into the workspace, then the chunks in order, the same bits on every run.
#include <algorithm>
#include <map>
#include <string>
#include <tuple>

#include "kernels/check.h"
#include "kernels/cublaslt.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"

namespace st::gpu {

namespace {

constexpr size_t kWorkspace = size_t(32) << 20;

enum class Op { forward, backward_input, backward_weight };

// One shape's descriptors and its algorithm, chosen once.
struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // C and D share a layout
    cublasLtMatmulAlgo_t algo{};
};

template <class T> void set_attr(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& v) {
    CUBLAS_CHECK(cublaslt().desc_set(d, attr, &v, sizeof(v)));
}

// ---- Column sums for the bias gradients ----

constexpr int kColsumRows = 64;  // rows per chunk, unless the workspace asks for more

// partial[chunk, c .. c+8) = sum of x[r, c .. c+8) over the chunk's rows, in order.
__global__ void colsum_partial_kernel(float* partial, const bf16* x, int64_t rows, int cols, int64_t chunk_rows) {
    const int c = (blockIdx.y * blockDim.x + threadIdx.x) * 8;
    if (c >= cols) return;
    const int64_t chunk = blockIdx.x, r1 = min(rows, (chunk + 1) * chunk_rows);
    float s[8] = {};
    for (int64_t r = chunk * chunk_rows; r < r1; r++) {
        uint4 u = *reinterpret_cast<const uint4*>(x + r * cols + c);
        const bf16* h = reinterpret_cast<const bf16*>(&u);
        for (int j = 0; j < 8; j++) s[j] += __bfloat162float(h[j]);
    }
    float4* p = reinterpret_cast<float4*>(partial + chunk * cols + c);
    p[0] = make_float4(s[0], s[1], s[2], s[3]);
    p[1] = make_float4(s[4], s[5], s[6], s[7]);
}

// out (cols) += column sums of x (rows, cols), cols a multiple of 8, the partials in scratch.
void colsum_accumulate(float* out, const bf16* x, int64_t rows, int cols, void* scratch, size_t scratch_bytes,
                       cudaStream_t s) {
    const int64_t max_chunks = int64_t(scratch_bytes / (size_t(cols) * sizeof(float)));
    const int64_t chunk_rows = std::max<int64_t>(kColsumRows, (rows + max_chunks - 1) / max_chunks);
    const int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
    const int threads = std::min(256, (cols / 8 + 31) / 32 * 32);
    float* partial = static_cast<float*>(scratch);
    colsum_partial_kernel<<<dim3(unsigned(chunks), unsigned((cols / 8 + threads - 1) / threads)), threads, 0, s>>>(
        partial, x, rows, cols, chunk_rows);
    CUDA_LAUNCH_CHECK();
    add_chunk_sums(out, partial, chunks, cols, s);
}

// Shapes and pointers cuBLASLt's bf16 kernels need: whole 16-byte rows.
void check_args(const char* op, int64_t N, int IC, int OC, std::initializer_list<const void*> ptrs) {
    if (N < 0 || IC <= 0 || OC <= 0 || IC % 8 != 0 || OC % 8 != 0)
        fail(std::string("Gemm::") + op + ": N " + std::to_string(N) + ", IC " + std::to_string(IC) + ", OC " +
             std::to_string(OC) + ": IC and OC must be positive multiples of 8");
    for (const void* p : ptrs)
        if (!aligned16(p)) fail(std::string("Gemm::") + op + ": a pointer is not 16-byte aligned");
}

}  // namespace

struct Gemm::Impl {
    cublasLtHandle_t handle = nullptr;
    void* workspace = nullptr;
    std::map<std::tuple<int, int64_t, int64_t, int64_t, int>, Plan> plans;  // (op, m, n, k, epilogue)

    Impl() {
        CUBLAS_CHECK(cublaslt().create(&handle));
        cudaError_t e = cudaMalloc(&workspace, kWorkspace);
        if (e != cudaSuccess) {
            cublaslt().destroy(handle);
            cuda_fail(e, "cudaMalloc (cuBLASLt workspace)");
        }
    }
    ~Impl() {
        for (auto& [key, p] : plans) {
            cublaslt().layout_destroy(p.a);
            cublaslt().layout_destroy(p.b);
            cublaslt().layout_destroy(p.c);
            cublaslt().desc_destroy(p.desc);
        }
        cudaFree(workspace);
        cublaslt().destroy(handle);
    }

    // The plan for D (m, n) = op(A) (m, k) . op(B) (k, n), column-major, made on first use.
    const Plan& plan(Op op, int64_t m, int64_t n, int64_t k, cublasLtEpilogue_t epilogue) {
        auto key = std::make_tuple(int(op), m, n, k, int(epilogue));
        if (auto it = plans.find(key); it != plans.end()) return it->second;
        Plan p;
        const cublasOperation_t ta = op == Op::forward ? CUBLAS_OP_T : CUBLAS_OP_N;
        const cublasOperation_t tb = op == Op::backward_weight ? CUBLAS_OP_T : CUBLAS_OP_N;
        const cudaDataType_t dtype = op == Op::backward_weight ? CUDA_R_32F : CUDA_R_16BF;
        CUBLAS_CHECK(cublaslt().desc_create(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        set_attr(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, int32_t(ta));
        set_attr(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, int32_t(tb));
        set_attr(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, uint32_t(epilogue));
        // The bias and aux pointers are set on every call; the heuristic reads only their alignment,
        // so it is shown the weakest that gemm.h allows (16 bytes) and the algorithm fits every call.
        const void* align16 = reinterpret_cast<const void*>(uintptr_t(16));
        if (epilogue == CUBLASLT_EPILOGUE_BIAS || epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS) {
            set_attr(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t(CUDA_R_16BF));
            set_attr(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, align16);
        }
        if (epilogue == CUBLASLT_EPILOGUE_GELU_AUX || epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS ||
            epilogue == CUBLASLT_EPILOGUE_DGELU) {
            set_attr(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, int64_t(m));
            set_attr(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, align16);
        }
        CUBLAS_CHECK(cublaslt().layout_create(&p.a, CUDA_R_16BF, ta == CUBLAS_OP_T ? k : m, ta == CUBLAS_OP_T ? m : k,
                                              ta == CUBLAS_OP_T ? k : m));
        CUBLAS_CHECK(cublaslt().layout_create(&p.b, CUDA_R_16BF, tb == CUBLAS_OP_T ? n : k, tb == CUBLAS_OP_T ? k : n,
                                              tb == CUBLAS_OP_T ? n : k));
        CUBLAS_CHECK(cublaslt().layout_create(&p.c, dtype, m, n, m));

        cublasLtMatmulPreference_t pref;
        CUBLAS_CHECK(cublaslt().pref_create(&pref));
        const uint64_t ws = kWorkspace;
        // Split-K only where the pieces are reduced in a separate pass in a fixed order; the in-place
        // scheme serialises its pieces through counters, whose order is not promised.
        const uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE |
                                 CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;
        const uint32_t align = 16;
        CUBLAS_CHECK(cublaslt().pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
        CUBLAS_CHECK(cublaslt().pref_set(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes, sizeof(schemes)));
        for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
            CUBLAS_CHECK(cublaslt().pref_set(pref, attr, &align, sizeof(align)));
        cublasLtMatmulHeuristicResult_t result{};
        int found = 0;
        cublasStatus_t st = cublaslt().heuristic(handle, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
        cublaslt().pref_destroy(pref);
        if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
            cublaslt().layout_destroy(p.a);
            cublaslt().layout_destroy(p.b);
            cublaslt().layout_destroy(p.c);
            cublaslt().desc_destroy(p.desc);
            fail("cuBLASLt has no algorithm for a product of (" + std::to_string(m) + " x " + std::to_string(k) +
                 ") . (" + std::to_string(k) + " x " + std::to_string(n) + "), epilogue " +
                 std::to_string(int(epilogue)) + ": " + cublaslt().status_string(st));
        }
        p.algo = result.algo;
        return plans.emplace(key, p).first->second;
    }

    // D = alpha op(A) op(B) + beta C with C = D.
    void run(const Plan& p, const void* A, const void* B, float beta, void* D, const void* bias, const void* aux,
             cudaStream_t s) {
        if (bias) set_attr(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
        if (aux) set_attr(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
        const float alpha = 1.0f;
        CUBLAS_CHECK(cublaslt().matmul(handle, p.desc, &alpha, A, p.a, B, p.b, &beta, D, p.c, D, p.c, &p.algo,
                                       workspace, kWorkspace, s));
    }
};

Gemm::Gemm() : impl_(new Impl) {}
Gemm::~Gemm() { delete impl_; }

void Gemm::forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int64_t N, int IC, int OC,
                   bf16* gelu_aux, cudaStream_t s) {
    check_args("forward", N, IC, OC, {out, inp, weight, bias, gelu_aux});
    if (N == 0) return;
    cublasLtEpilogue_t epilogue = gelu_aux ? (bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX)
                                           : (bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
    impl_->run(impl_->plan(Op::forward, OC, N, IC, epilogue), weight, inp, 0.0f, out, bias, gelu_aux, s);
}

void Gemm::backward_input(bf16* dinp, const bf16* dout, const bf16* weight, int64_t N, int IC, int OC,
                          const bf16* gelu_aux, float* dbias_gelu, cudaStream_t s) {
    check_args("backward_input", N, IC, OC, {dinp, dout, weight, gelu_aux});
    if (N == 0) return;
    cublasLtEpilogue_t epilogue = gelu_aux ? CUBLASLT_EPILOGUE_DGELU : CUBLASLT_EPILOGUE_DEFAULT;
    impl_->run(impl_->plan(Op::backward_input, IC, N, OC, epilogue), weight, dout, 0.0f, dinp, nullptr, gelu_aux, s);
    // The bias before the GELU gets the column sums of the bf16 dinp: the same values that the
    // layer's backward_weight multiplies.
    if (gelu_aux && dbias_gelu) colsum_accumulate(dbias_gelu, dinp, N, IC, impl_->workspace, kWorkspace, s);
}

void Gemm::backward_weight(float* dweight, float* dbias, const bf16* dout, const bf16* inp, int64_t N, int IC, int OC,
                           cudaStream_t s) {
    check_args("backward_weight", N, IC, OC, {dweight, dout, inp});
    if (N == 0) return;
    impl_->run(impl_->plan(Op::backward_weight, IC, OC, N, CUBLASLT_EPILOGUE_DEFAULT), inp, dout, 1.0f, dweight,
               nullptr, nullptr, s);
    // After the product on the same stream, so the workspace is free for the partial sums.
    if (dbias) colsum_accumulate(dbias, dout, N, OC, impl_->workspace, kWorkspace, s);
}

size_t Gemm::workspace_bytes() { return kWorkspace; }

}  // namespace st::gpu
