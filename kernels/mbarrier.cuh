// Hopper's hand-offs between the warps of one CTA (sm_90): mbarriers in shared memory (a count of
// arrivals per phase, waited on by phase parity), cp.async copies that arrive on one when they land,
// named barriers for a subset of the warps, and setmaxnreg, which moves registers from a warpgroup
// that loads to the warpgroups that multiply.
#pragma once
#include <cstdint>

#include "kernels/mma.cuh"

namespace st::gpu::mbar {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ void init(uint64_t* bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(mma::smem_addr(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void arrive(uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(mma::smem_addr(bar)) : "memory");
}
// Blocks until the phase with this parity (0, 1, 0, ... for the barrier's first, second, ... phase) is done.
__device__ __forceinline__ void wait(uint64_t* bar, int parity) {
    asm volatile(
        "{\n.reg .pred done;\nWAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra WAIT;\n}\n" ::"r"(mma::smem_addr(bar)),
        "r"(parity)
        : "memory");
}
// One arrival once every cp.async this thread has issued so far has landed (the barrier's count
// includes it: .noinc).
__device__ __forceinline__ void cp_async_arrive(uint64_t* bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(mma::smem_addr(bar)) : "memory");
}
// Named barrier id (1..15) over n threads: sync waits for all n, arrive counts in without waiting.
__device__ __forceinline__ void named_sync(int id, int n) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int n) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
#else
__device__ __forceinline__ void init(uint64_t*, int) {}
__device__ __forceinline__ void arrive(uint64_t*) {}
__device__ __forceinline__ void wait(uint64_t*, int) {}
__device__ __forceinline__ void cp_async_arrive(uint64_t*) {}
__device__ __forceinline__ void named_sync(int, int) {}
__device__ __forceinline__ void named_arrive(int, int) {}
#endif

// A warpgroup's registers a thread, raised or lowered (a multiple of 8 in 24 .. 256; sm_90a only).
template <int N> __device__ __forceinline__ void regs_up() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N> __device__ __forceinline__ void regs_down() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

}  // namespace st::gpu::mbar
