// A device allocation that frees itself, and the bytes the GPU engine and sampler hold: what they
// report as peak memory (PyTorch's max_memory_allocated counts the same way).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <utility>

#include "error.h"
#include "kernels/check.h"

namespace st::gpu {

struct MemoryUse {
    size_t now = 0, peak = 0;
};
inline MemoryUse& memory_use() {
    static MemoryUse m;
    return m;
}

template <class T> struct Buf {
    T* p = nullptr;
    size_t n = 0;
    Buf() = default;
    explicit Buf(size_t count) : n(count) {
        const cudaError_t e = cudaMalloc(&p, bytes());
        if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();  // clear it: the process may go on (and save the model)
            size_t free = 0, total = 0;
            cudaMemGetInfo(&free, &total);
            char msg[256];
            std::snprintf(msg, sizeof msg,
                          "out of GPU memory: %.2f GiB more did not fit beside %.2f GiB held (%.1f GiB card); try a "
                          "smaller --batch or --ctx, or --recompute",
                          double(bytes()) / (1 << 30), double(memory_use().now) / (1 << 30), double(total) / (1 << 30));
            fail(msg);
        }
        if (e != cudaSuccess) cuda_fail(e, "cudaMalloc");
        MemoryUse& m = memory_use();
        m.now += bytes();
        m.peak = std::max(m.peak, m.now);
    }
    ~Buf() {
        if (p) {
            memory_use().now -= bytes();
            cudaFree(p);
        }
    }
    Buf(Buf&& o) noexcept : p(o.p), n(o.n) { o.p = nullptr; }
    Buf& operator=(Buf&& o) noexcept {  // the old allocation goes with o
        std::swap(p, o.p);
        std::swap(n, o.n);
        return *this;
    }
    Buf(const Buf&) = delete;
    Buf& operator=(const Buf&) = delete;
    size_t bytes() const { return std::max<size_t>(n, 1) * sizeof(T); }
    void upload(const T* src, cudaStream_t s = nullptr) {
        CUDA_CHECK(cudaMemcpyAsync(p, src, n * sizeof(T), cudaMemcpyHostToDevice, s));
    }
};

// Pinned host memory (the copies to and from it run asynchronously), freed with it; not device memory.
template <class T> struct HostBuf {
    T* p = nullptr;
    size_t n = 0;
    HostBuf() = default;
    HostBuf(size_t count, const char* what) : n(count) {
        if (cudaHostAlloc(&p, n * sizeof(T), cudaHostAllocDefault) != cudaSuccess) {
            cudaGetLastError();
            p = nullptr;
            char msg[256];
            std::snprintf(msg, sizeof msg, "%s: could not pin %.2f GiB of host memory", what,
                          double(n * sizeof(T)) / (1 << 30));
            fail(msg);
        }
    }
    ~HostBuf() {
        if (p) cudaFreeHost(p);
    }
    HostBuf(HostBuf&& o) noexcept : p(o.p), n(o.n) { o.p = nullptr; }
    HostBuf& operator=(HostBuf&& o) noexcept {
        std::swap(p, o.p);
        std::swap(n, o.n);
        return *this;
    }
    HostBuf(const HostBuf&) = delete;
    HostBuf& operator=(const HostBuf&) = delete;
};

}  // namespace st::gpu
