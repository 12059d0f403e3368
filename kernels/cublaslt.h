// cuBLASLt through dlopen: the entry points gemm.cu uses, resolved on first use.
//
// libcublasLt is half a gigabyte; linked, its relocation costs every program start about 0.4 s,
// st-train --help and every CPU run included. Opened here, only a program that multiplies on a GPU
// pays, and a machine without it gets a one-line error instead of a loader failure.
#pragma once
#include <cublasLt.h>

#include <string>

#include "error.h"

namespace st::gpu {

struct CublasLt {
    decltype(&cublasLtCreate) create;
    decltype(&cublasLtDestroy) destroy;
    decltype(&cublasLtMatmulDescCreate) desc_create;
    decltype(&cublasLtMatmulDescDestroy) desc_destroy;
    decltype(&cublasLtMatmulDescSetAttribute) desc_set;
    decltype(&cublasLtMatrixLayoutCreate) layout_create;
    decltype(&cublasLtMatrixLayoutDestroy) layout_destroy;
    decltype(&cublasLtMatmulPreferenceCreate) pref_create;
    decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy;
    decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set;
    decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic;
    decltype(&cublasLtMatmul) matmul;
    decltype(&cublasLtGetStatusString) status_string;
};

// The library, loaded once; fails with a one-line st::Error when it cannot be.
const CublasLt& cublaslt();

}  // namespace st::gpu

#define CUBLAS_CHECK(call)                                                \
    do {                                                                  \
        cublasStatus_t st_st_ = (call);                                   \
        if (st_st_ != CUBLAS_STATUS_SUCCESS)                              \
            ::st::fail(std::string("cuBLASLt error in ") + #call + ": " + \
                       ::st::gpu::cublaslt().status_string(st_st_));      \
    } while (0)
