// Vectorised e^x for the float32 hot loops (softmax in attention and cross-entropy, GELU's tanh):
// libm's expf is scalar and was a large share of a CPU training step. float64 callers keep
// std::exp: it is the reference the tests hold float32 to.
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <type_traits>

namespace st {

#ifdef __AVX2__
// 2^n from the exponent bits times a degree-6 polynomial of r = x - n ln2 on [-ln2/2, ln2/2]:
// relative error about 2e-7. x is clamped to [-87, 88] so results stay finite and normal.
inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n =
        _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    for (float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

// x[i] = e^(x[i] - shift), exactly 0 where x[i] is -inf (a masked score); returns the sum.
template <class F> inline F exp_shifted_sum(F* x, int n, F shift) {
    int i = 0;
    F sum = 0;
#ifdef __AVX2__
    if constexpr (std::is_same_v<F, float>) {
        const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity()), s = _mm256_set1_ps(shift);
        __m256 acc = _mm256_setzero_ps();
        for (; i + 8 <= n; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i);
            __m256 e = _mm256_andnot_ps(_mm256_cmp_ps(v, ninf, _CMP_EQ_OQ), exp8(_mm256_sub_ps(v, s)));
            _mm256_storeu_ps(x + i, e);
            acc = _mm256_add_ps(acc, e);
        }
        alignas(32) float part[8];
        _mm256_store_ps(part, acc);
        for (float p : part) sum += p;
    }
#endif
    for (; i < n; i++) {
        x[i] = x[i] == -std::numeric_limits<F>::infinity() ? F(0) : std::exp(x[i] - shift);
        sum += x[i];
    }
    return sum;
}

}  // namespace st
