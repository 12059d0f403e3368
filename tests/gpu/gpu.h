// What the [gpu] tests share: a skip without a device, device buffers, bf16 on the host, random
// inputs and the error measures. Every check compares with libst/cpu run in double on the same
// (bf16-rounded) inputs; outputs are poisoned with NaN first, so an element a kernel fails to write
// fails the check.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/check.h"
#include "rng.h"

inline bool st_have_gpu() {
    static const bool have = [] {
        int n = 0;
        bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
        cudaGetLastError();  // a failed query leaves its error behind
        return ok;
    }();
    return have;
}

// First line of every [gpu] test: passes, with a warning, on a machine without a device.
#define ST_REQUIRE_GPU()             \
    do {                             \
        if (!st_have_gpu()) {        \
            WARN("no GPU: skipped"); \
            return;                  \
        }                            \
    } while (0)

namespace st {

// n elements of T on the device, freed with the buffer.
template <class T> class DeviceBuffer {
   public:
    explicit DeviceBuffer(size_t n) : n_(n) { CUDA_CHECK(cudaMalloc(&ptr_, std::max<size_t>(n, 1) * sizeof(T))); }
    explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
    ~DeviceBuffer() { cudaFree(ptr_); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    T* get() const { return ptr_; }
    size_t size() const { return n_; }
    void upload(const std::vector<T>& host) {
        REQUIRE(host.size() == n_);
        CUDA_CHECK(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
    }
    // Synchronising: waits for the kernels before it on the default stream.
    std::vector<T> download() const {
        std::vector<T> host(n_);
        CUDA_CHECK(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
        return host;
    }
    // All bytes 0xFF: NaN as float, double and bf16, so an unwritten element shows.
    void poison() { CUDA_CHECK(cudaMemset(ptr_, 0xFF, n_ * sizeof(T))); }

   private:
    T* ptr_ = nullptr;
    size_t n_;
};

}  // namespace st

namespace st::test {

using bf16 = __nv_bfloat16;

inline std::vector<float> random_floats(size_t n, uint64_t seed, double scale = 1.0) {
    Rng r(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = float(scale * r.normal());
    return v;
}

inline std::vector<bf16> to_bf16(const std::vector<float>& v) {
    std::vector<bf16> out(v.size());
    for (size_t i = 0; i < v.size(); i++) out[i] = __float2bfloat16(v[i]);  // round to nearest even
    return out;
}

inline double as_double(float x) { return x; }
inline double as_double(double x) { return x; }
inline double as_double(bf16 x) { return double(__bfloat162float(x)); }

template <class T> std::vector<double> to_double(const std::vector<T>& v) {
    std::vector<double> out(v.size());
    for (size_t i = 0; i < v.size(); i++) out[i] = as_double(v[i]);
    return out;
}

// ||out - ref|| / ||ref||; NaN anywhere in out makes it NaN, which fails every "<" check.
template <class T> double rel_error(const std::vector<T>& out, const std::vector<double>& ref) {
    REQUIRE(out.size() == ref.size());
    double diff = 0, norm = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        double d = as_double(out[i]) - ref[i];
        diff += d * d;
        norm += ref[i] * ref[i];
    }
    return std::sqrt(diff / std::max(norm, 1e-300));
}

template <class T> bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Tolerances: a bf16 result carries a relative rounding error of 2^-9; fp32 math on fp32 inputs
// stays near 1e-7.
constexpr double kTolBf16 = 1e-2, kTolF32 = 1e-5;

}  // namespace st::test
