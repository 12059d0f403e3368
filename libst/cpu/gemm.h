// General matrix multiply on the CPU: C = alpha op(A) op(B) + beta C for row-major float and double,
// packed, cache-blocked and threaded with OpenMP (gemm.cpp says how).
#pragma once

namespace st {

// C = alpha * op(A) * op(B) + beta * C, all row-major. op(A) is M x K: A is M x K with leading dimension lda,
// or, when ta, A is K x M (lda) and is used transposed. Same for B (K x N, or N x K when tb).
// beta == 0 never reads C (it may hold NaN). Threads with OpenMP over output tiles when called outside a parallel
// region; runs serially when called inside one (omp_in_parallel()). Never splits K across threads, so the result
// does not depend on the thread count and is bitwise reproducible.
template <class T> void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
                             T beta, T* C, int ldc);

}  // namespace st
