// Hopper's warpgroup matrix products (wgmma, sm_90a): a warpgroup of 4 warps multiplies a 64-row A
// (here from registers, laid out per warp as mma.m16n8k16's A fragments) by a B read straight from
// shared memory through a 64-bit descriptor, accumulating in registers laid out per warp as
// mma.m16n8's accumulators over N/8 column tiles. B tiles are stored in the 128-byte swizzle: rows of
// 64 bf16 (128 bytes) whose 16-byte chunks are permuted by chunk ^ (row % 8), in 1024-byte atoms of
// 8 rows; that is what lets the tensor cores read them without bank conflicts.
#pragma once
#include <cstdint>

#include "kernels/mma.cuh"

// wgmma exists only in sm_90a code; a build for several architectures compiles these files for the
// others too, where every helper is empty and the kernels trap (the host never launches them there).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define ST_SM90A 1
#else
#define ST_SM90A 0
#endif

namespace st::gpu::wgmma {

// The byte offset of element column c (multiple of 8) of row r in a 64-column swizzled panel.
__device__ __forceinline__ uint32_t sw128_offset(int r, int c) {
    return uint32_t(r * 128 + (((c >> 3) ^ (r & 7)) << 4));
}

// Descriptor of a swizzled tile at p (1024-byte aligned atoms): sbo = bytes between 8-row groups;
// lbo = bytes between 64-column panels along N of an N-major operand (unused for K-major).
__device__ __forceinline__ uint64_t desc_sw128(const void* p, uint32_t sbo, uint32_t lbo) {
    const uint32_t a = mma::smem_addr(p);
    return uint64_t((a & 0x3FFFF) >> 4) | (uint64_t((lbo >> 4) & 0x3FFF) << 16) |
           (uint64_t((sbo >> 4) & 0x3FFF) << 32) | (uint64_t(1) << 62);
}

#if ST_SM90A
__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
#else
__device__ __forceinline__ void fence() {}
__device__ __forceinline__ void commit() {}
template <int N> __device__ __forceinline__ void wait() {}
#endif
// The asm statements above do not tell the compiler that an accumulator changes when the warpgroup's
// products land (at wait), so it could read or move one early: these empty asm statements pin every
// accumulator register in place around the issue and after the wait (CUTLASS does the same).
template <int N> __device__ __forceinline__ void fence_regs(float* r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
// The same for A fragments a product reads from registers: kept in place until after the wait.
template <int N> __device__ __forceinline__ void fence_frags(uint32_t* r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+r"(r[i])::"memory");
}
// Shared memory written through the generic proxy (cp.async, plain stores) before the tensor cores read it.
__device__ __forceinline__ void fence_proxy() {
#if ST_SM90A
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// The 32 fp32 accumulators of a warp's share of an m64n64 product, as asm operands %0 .. %31.
#define ST_WGMMA_ACC32(d)                                                                                       \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), \
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),  \
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), \
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])

// d (m64n64, fp32) = (accumulate ? d : 0) + a (m64k16, bf16 registers) . B (k16n64, descriptor);
// TRANS_B: B is N-major (rows of the tile are k) rather than K-major (rows are n).
template <int TRANS_B>
__device__ __forceinline__ void m64n64k16(float* d, const uint32_t (&a)[4], uint64_t b, int accumulate) {
#if ST_SM90A
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %38, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%"
        "29,%30,%31}, "
        "{%32,%33,%34,%35}, %36, p, 1, 1, %37;\n}\n"
        : ST_WGMMA_ACC32(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(TRANS_B), "r"(accumulate));
#else
    (void)d, (void)a, (void)b, (void)accumulate;
    __trap();  // never launched: the host runs this path only on sm_90a builds and devices
#endif
}

// The same with A read from shared memory too (descriptor a, K-major like a K-major B): no operand
// registers, so products may be issued while earlier ones still run without ptxas serialising them.
template <int TRANS_B> __device__ __forceinline__ void m64n64k16_ss(float* d, uint64_t a, uint64_t b, int accumulate) {
#if ST_SM90A
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %35, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%"
        "29,%30,%31}, "
        "%32, %33, p, 1, 1, 0, %34;\n}\n"
        : ST_WGMMA_ACC32(d)
        : "l"(a), "l"(b), "n"(TRANS_B), "r"(accumulate));
#else
    (void)d, (void)a, (void)b, (void)accumulate;
    __trap();
#endif
}

// d (m64n128, fp32: the warp's 16 rows x 128 columns as 16 column tiles of 4) = (accumulate ? d : 0)
// + A B, both from shared memory as in m64n64k16_ss: a score tile of 128 keys in one instruction reads
// A once for twice the columns (m64n64 with both operands in shared memory is at the shared-memory rate).
template <int TRANS_B> __device__ __forceinline__ void m64n128k16_ss(float* d, uint64_t a, uint64_t b, int accumulate) {
#if ST_SM90A
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %67, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%"
        "29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%"
        "56,%57,%58,%59,%60,%61,%62,%63}, "
        "%64, %65, p, 1, 1, 0, %66;\n}\n"
        : ST_WGMMA_ACC32(d), ST_WGMMA_ACC32((d + 32))
        : "l"(a), "l"(b), "n"(TRANS_B), "r"(accumulate));
#else
    (void)d, (void)a, (void)b, (void)accumulate;
    __trap();
#endif
}

}  // namespace st::gpu::wgmma
