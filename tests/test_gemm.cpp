// st::gemm against a naive long-double triple loop: every transpose pair, alpha/beta, odd sizes, padded
// leading dimensions, float and double; and bitwise equality across thread counts.
#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cpu/gemm.h"

namespace {

template <class T> std::vector<T> random_vector(size_t n, std::mt19937& rng) {
    std::uniform_real_distribution<double> u(-1, 1);
    std::vector<T> v(n);
    for (auto& x : v) x = T(u(rng));
    return v;
}

// Element (i, k) of op(X) where X is stored row-major with leading dimension ld.
template <class T> T op_at(const std::vector<T>& x, bool t, int ld, int i, int k) {
    return t ? x[size_t(k) * ld + i] : x[size_t(i) * ld + k];
}

struct Shape {
    int M, N, K;
};

// Runs one case and returns the largest error measured in units of its bound (fails at > 1): the rounding
// error of a K-term dot product in FMAs is below (K + 1) eps/2 times the sum of the magnitudes of the terms.
template <class T> double gemm_error(bool ta, bool tb, Shape s, int pad, T alpha, T beta, std::mt19937& rng) {
    const int lda = (ta ? s.M : s.K) + pad, ldb = (tb ? s.K : s.N) + pad, ldc = s.N + pad;
    const auto A = random_vector<T>(size_t(ta ? s.K : s.M) * lda, rng);
    const auto B = random_vector<T>(size_t(tb ? s.N : s.K) * ldb, rng);
    auto C = random_vector<T>(size_t(s.M) * ldc, rng);
    const T sentinel = T(12345);
    for (int i = 0; i < s.M; ++i) {
        if (beta == T(0))
            for (int j = 0; j < s.N; ++j) C[size_t(i) * ldc + j] = std::numeric_limits<T>::quiet_NaN();
        for (int j = s.N; j < ldc; ++j) C[size_t(i) * ldc + j] = sentinel;
    }
    const auto C0 = C;
    st::gemm<T>(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);

    const double eps = std::numeric_limits<T>::epsilon();
    double worst = 0;
    for (int i = 0; i < s.M; ++i) {
        for (int j = 0; j < s.N; ++j) {
            long double dot = 0, mag = 0;
            for (int k = 0; k < s.K; ++k) {
                const long double t = (long double)op_at(A, ta, lda, i, k) * op_at(B, tb, ldb, k, j);
                dot += t;
                mag += std::fabs(t);
            }
            const long double c0 = beta == T(0) ? 0 : C0[size_t(i) * ldc + j];
            const long double want = alpha * dot + beta * c0;
            const long double bound = (s.K + 3) * eps * (std::fabs(alpha) * mag + std::fabs(beta * c0)) + 1e-300;
            const double got = C[size_t(i) * ldc + j];
            if (!std::isfinite(got)) return INFINITY;
            worst = std::max(worst, double(std::fabs(got - want) / bound));
        }
        for (int j = s.N; j < ldc; ++j)
            if (C[size_t(i) * ldc + j] != sentinel) return INFINITY;  // wrote past the row
    }
    return worst;
}

// Sizes around the register tile (6 x 16 floats, 6 x 8 doubles), the KC = 256 slice and the NC = 4096 panel.
const Shape shapes[] = {{1, 1, 1},    {7, 17, 63},   {65, 129, 300}, {17, 1, 65},  {300, 65, 7}, {129, 300, 17},
                        {6, 16, 256}, {12, 32, 513}, {63, 7, 129},   {1, 300, 65}, {3, 4100, 20}};

}  // namespace

TEMPLATE_TEST_CASE("gemm matches a naive loop for every transpose, size and scale", "[gemm]", float, double) {
    std::mt19937 rng(1);
    const TestType scales[][2] = {{1, 0}, {1, 1}, {-0.5, 0.75}, {2, 0}};
    for (const Shape& s : shapes)
        for (int t = 0; t < 4; ++t)
            for (const auto& ab : scales) {
                const bool ta = t & 1, tb = t & 2;
                const int pad = (s.M + s.N + t) % 3 * 5;
                INFO("M " << s.M << " N " << s.N << " K " << s.K << " ta " << ta << " tb " << tb << " alpha " << ab[0]
                          << " beta " << ab[1] << " pad " << pad);
                CHECK(gemm_error<TestType>(ta, tb, s, pad, ab[0], ab[1], rng) <= 1.0);
            }
}

TEMPLATE_TEST_CASE("gemm with alpha = 0 or K = 0 only scales C", "[gemm]", float, double) {
    std::vector<TestType> A(12, TestType(1)), B(12, TestType(1)), C(9, TestType(2));
    st::gemm<TestType>(false, false, 3, 3, 4, 0, A.data(), 4, B.data(), 3, 0.5, C.data(), 3);
    for (TestType c : C) CHECK(c == TestType(1));
    st::gemm<TestType>(false, false, 3, 3, 0, 1, A.data(), 1, B.data(), 3, 0, C.data(), 3);
    for (TestType c : C) CHECK(c == TestType(0));
}

TEST_CASE("gemm gives the same bits with 1 and 2 threads and inside a parallel region", "[gemm]") {
    std::mt19937 rng(2);
    // Large enough to run threaded: cut by rows, by columns, and into several chunks per thread.
    const Shape cases[] = {{300, 129, 600}, {5, 700, 300}, {1000, 16, 200}, {2100, 20, 30}, {7, 5000, 40}};
    const int saved = omp_get_max_threads();
    for (const Shape& s : cases)
        for (int t = 0; t < 4; ++t) {
            const bool ta = t & 1, tb = t & 2;
            INFO("M " << s.M << " N " << s.N << " K " << s.K << " ta " << ta << " tb " << tb);
            const auto A = random_vector<float>(size_t(s.M) * s.K, rng);
            const auto B = random_vector<float>(size_t(s.K) * s.N, rng);
            const auto C0 = random_vector<float>(size_t(s.M) * s.N, rng);
            const int lda = ta ? s.M : s.K, ldb = tb ? s.K : s.N;
            std::vector<float> C[4] = {C0, C0, C0, C0};
            omp_set_num_threads(1);
            st::gemm(ta, tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.5f, C[0].data(), s.N);
            omp_set_num_threads(2);
            st::gemm(ta, tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.5f, C[1].data(), s.N);
#pragma omp parallel for num_threads(2)
            for (int c = 2; c < 4; ++c)
                st::gemm(ta, tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.5f, C[c].data(), s.N);
            for (int c = 1; c < 4; ++c) CHECK(std::memcmp(C[0].data(), C[c].data(), C0.size() * sizeof(float)) == 0);
        }
    omp_set_num_threads(saved);
}
