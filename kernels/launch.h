// Launching the small kernels of a decoding step so that each starts before the one before it ends
// (programmatic dependent launch, Hopper and later). Such a kernel calls grid_dependency_wait() before
// it reads anything the previous kernel wrote; what comes before the wait (its launch, index
// arithmetic, loading weights) overlaps the previous kernel's tail. Every CTA must reach the wait:
// then a kernel cannot finish before the one before it, and waiting on the last kernel is waiting
// on all of them.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "kernels/check.h"

namespace st::gpu {

__device__ inline void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

inline bool dependent_launch_supported() {  // compute capability 9.0 and later, on the current device
    return device_attr(cudaDevAttrComputeCapabilityMajor) >= 9;
}

template <class... Params, class... Args>
void launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args&&... args) {
    cudaLaunchAttribute attr = {};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = &attr;
    cfg.numAttrs = dependent_launch_supported() ? 1 : 0;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace st::gpu
