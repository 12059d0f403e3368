// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// float64 uses std::tanh (it is the reference the tests hold float32 to); float32 uses AVX2: libm's
// tanhf is scalar and was a tenth of a CPU training step.
#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "cpu/ops.h"
#include "cpu/vexp.h"

namespace st {

static const double kSqrt2OverPi = 0.7978845608028654, kCubic = 0.044715;

#ifdef __AVX2__
// For t = tanh(u), u = k (x + c x^3), and e = e^{2u}: 1 + t = 2e / (e + 1) and 1 - t = 2 / (e + 1).
// Both forms are free of cancellation on either side of zero, where 1 +- t would lose digits.
static inline void tanh_parts8(__m256 x, __m256* one_plus_t, __m256* one_minus_t) {
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 u =
        _mm256_mul_ps(_mm256_set1_ps(float(kSqrt2OverPi)), _mm256_fmadd_ps(_mm256_set1_ps(float(kCubic)), x3, x));
    __m256 e = exp8(_mm256_add_ps(u, u));
    __m256 r2 = _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f)));
    *one_plus_t = _mm256_mul_ps(e, r2);
    *one_minus_t = r2;
}
#endif

template <class T> static inline T tanh_arg(T x) { return std::tanh(T(kSqrt2OverPi) * (x + T(kCubic) * x * x * x)); }

template <class T> static inline T gelu_grad(T x, T t) {  // d gelu / dx given t = tanh_arg(x)
    T du = T(kSqrt2OverPi) * (T(1) + T(3 * kCubic) * x * x);
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
}

template <class T> void gelu_forward(T* out, const T* inp, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMinValues)
    for (int64_t i0 = 0; i0 < n; i0 += 1024) {
        int64_t i = i0, end = std::min(n, i0 + 1024);
#ifdef __AVX2__
        if constexpr (sizeof(T) == 4)
            for (; i + 8 <= end; i += 8) {
                __m256 x = _mm256_loadu_ps(inp + i);
                __m256 p, m;
                tanh_parts8(x, &p, &m);
                _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), p));
            }
#endif
        for (; i < end; i++) out[i] = T(0.5) * inp[i] * (T(1) + tanh_arg(inp[i]));
    }
}

template <class T> void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += 1024) {
        int64_t i = i0, end = std::min(n, i0 + 1024);
#ifdef __AVX2__
        if constexpr (sizeof(T) == 4)
            for (; i + 8 <= end; i += 8) {
                __m256 x = _mm256_loadu_ps(inp + i), half = _mm256_set1_ps(0.5f), p, m;
                tanh_parts8(x, &p, &m);
                __m256 du = _mm256_mul_ps(
                    _mm256_set1_ps(float(kSqrt2OverPi)),
                    _mm256_fmadd_ps(_mm256_set1_ps(float(3 * kCubic)), _mm256_mul_ps(x, x), _mm256_set1_ps(1.0f)));
                __m256 a = _mm256_mul_ps(half, p);  // (1 + t) / 2
                __m256 b = _mm256_mul_ps(_mm256_mul_ps(half, x),
                                         _mm256_mul_ps(_mm256_mul_ps(p, m), du));  // x (1 - t^2) du / 2
                _mm256_storeu_ps(dinp + i, _mm256_mul_ps(_mm256_loadu_ps(dout + i), _mm256_add_ps(a, b)));
            }
#endif
        for (; i < end; i++) dinp[i] = dout[i] * gelu_grad(inp[i], tanh_arg(inp[i]));
    }
}

template void gelu_forward<float>(float*, const float*, int64_t);
template void gelu_forward<double>(double*, const double*, int64_t);
template void gelu_backward<float>(float*, const float*, const float*, int64_t);
template void gelu_backward<double>(double*, const double*, const double*, int64_t);

}  // namespace st
