// Every CUDA and launch result goes through these: a failure becomes an st::Error whose
// one-line message names the call, so the programs print it and exit 1 like any other error.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>

#include "error.h"

namespace st::gpu {

[[noreturn]] inline void cuda_fail(cudaError_t e, const char* what) {
    if (e == cudaErrorMemoryAllocation) fail("out of GPU memory; try a smaller --batch or --ctx, or --recompute");
    fail(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

// Lets kernel use `bytes` of dynamic shared memory (above 48 KB needs asking); asks once per kernel.
inline void allow_smem(const void* kernel, int bytes) {
    static std::map<const void*, int> granted;
    int& g = granted[kernel];
    if (g >= bytes) return;
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (e != cudaSuccess) cuda_fail(e, "cudaFuncSetAttribute (dynamic shared memory)");
    g = bytes;
}

// 16-byte vector accesses (and cuBLASLt's bf16 kernels) need 16-byte aligned pointers.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace st::gpu

#define CUDA_CHECK(call)                                                  \
    do {                                                                  \
        cudaError_t st_err_ = (call);                                     \
        if (st_err_ != cudaSuccess) ::st::gpu::cuda_fail(st_err_, #call); \
    } while (0)

// After a kernel launch: catches bad launch configurations at once (asynchronous faults surface at
// the next synchronising call, which CUDA_CHECK also covers).
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

namespace st::gpu {
// An attribute of the current device (compute capability, SM count, L2 size...).
inline int device_attr(cudaDeviceAttr attr) {
    int dev = 0, v = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&v, attr, dev));
    return v;
}
}  // namespace st::gpu
