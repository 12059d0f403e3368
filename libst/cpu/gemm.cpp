// GEMM on the CPU, laid out as in BLIS/GotoBLAS: the K x N panel of op(B) is packed once per KC slice and
// shared by the threads, each thread packs its own MC x KC block of op(A), and an AVX2/FMA micro-kernel
// multiplies one MR-row sliver of packed A by one NR-column sliver of packed B into registers.
//
// Determinism: every element of C is one chain of FMAs over k in order, cut into the same KC slices whatever
// the thread count (the slices depend on K only); threads only decide which tiles they own, and edge tiles
// run the same arithmetic as full ones (zero padding, masked loads and stores). So 1 and N threads agree
// bit for bit.
#include "cpu/gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <string>

#include "error.h"

namespace st {
namespace {

// One ymm register of T and the few operations the kernels need.
template <class T> struct simd;

template <> struct simd<float> {
    using V = __m256;
    static constexpr int W = 8;
    static V zero() { return _mm256_setzero_ps(); }
    static V set1(float x) { return _mm256_set1_ps(x); }
    static V load(const float* p) { return _mm256_loadu_ps(p); }
    static V broadcast(const float* p) { return _mm256_broadcast_ss(p); }
    static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
    static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    static __m256i mask(int n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
    static V load(const float* p, __m256i m) { return _mm256_maskload_ps(p, m); }
    static void store(float* p, __m256i m, V v) { _mm256_maskstore_ps(p, m, v); }
};

template <> struct simd<double> {
    using V = __m256d;
    static constexpr int W = 4;
    static V zero() { return _mm256_setzero_pd(); }
    static V set1(double x) { return _mm256_set1_pd(x); }
    static V load(const double* p) { return _mm256_loadu_pd(p); }
    static V broadcast(const double* p) { return _mm256_broadcast_sd(p); }
    static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
    static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
    static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
    static __m256i mask(int n) { return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)); }
    static V load(const double* p, __m256i m) { return _mm256_maskload_pd(p, m); }
    static void store(double* p, __m256i m, V v) { _mm256_maskstore_pd(p, m, v); }
};

// The register tile: MR x NR of C lives in 2 * MR = 12 accumulators, which leaves 4 of the 16 ymm registers
// for the two B vectors and the A broadcast. Per k it issues 12 FMAs against 2 loads + 6 broadcasts, enough
// to keep both FMA pipes busy without saturating the load ports.
constexpr int MR = 6;
template <class T> constexpr int NR = 2 * simd<T>::W;

// Cache blocks. KC: a packed NR x KC sliver of B is 16 KiB in float, half of the 32 KiB L1d, so it stays there
// while the kernel streams every A sliver of the block past it. MC: the packed MC x KC block of A is ~150 KiB,
// well inside the 512 KiB L2 next to the B sliver and the C tiles. NC: the packed KC x NC panel of B (4 MiB)
// is shared by the threads and lives in L3; every width in the models (<= 4d = 2048) fits one panel, so A is
// packed once per call.
constexpr int KC = 256;
constexpr int MC = 144;
constexpr int NC = 4096;

// Below this many flops the threads cost more than they save (a parallel region is a few microseconds).
constexpr double min_parallel_flops = 1 << 21;
constexpr int min_chunk = 512;

int ceil_div(int a, int b) { return (a + b - 1) / b; }
int round_up(int a, int b) { return ceil_div(a, b) * b; }

// A growing 64-byte-aligned scratch buffer per thread (the packed blocks).
template <class T> struct Scratch {
    T* p = nullptr;
    size_t cap = 0;
    ~Scratch() { std::free(p); }
    T* get(size_t n) {
        if (n > cap) {
            std::free(p);
            cap = round_up(int(n * sizeof(T)), 64) / sizeof(T);
            p = static_cast<T*>(std::aligned_alloc(64, cap * sizeof(T)));
            if (!p) throw std::bad_alloc();
        }
        return p;
    }
};

// Rows i0..i0+mc, columns p0..p0+kc of op(A) into MR-row slivers, each k-major (MR values per k), the last
// sliver zero-padded to MR rows.
template <class T> void pack_a(bool ta, const T* A, int lda, int i0, int mc, int p0, int kc, T* dst);

// Columns j0..j0+nc, rows p0..p0+kc of op(B) into NR-column slivers, each k-major, zero-padded to NR columns.
template <class T> void pack_b(bool tb, const T* B, int ldb, int p0, int kc, int j0, int nc, T* dst) {
    constexpr int nr_max = NR<T>;
    for (int j = 0; j < nc; j += nr_max, dst += size_t(nr_max) * kc) {
        const int nr = std::min(nr_max, nc - j);
        if (!tb) {
            const T* b = B + size_t(p0) * ldb + j0 + j;
            if (nr == nr_max) {
                for (int k = 0; k < kc; ++k, b += ldb)
                    for (int c = 0; c < nr_max; ++c) dst[k * nr_max + c] = b[c];
            } else {
                for (int k = 0; k < kc; ++k, b += ldb)
                    for (int c = 0; c < nr_max; ++c) dst[k * nr_max + c] = c < nr ? b[c] : T(0);
            }
        } else {
            const T* b = B + size_t(j0 + j) * ldb + p0;
            for (int c = 0; c < nr_max; ++c)
                for (int k = 0; k < kc; ++k) dst[k * nr_max + c] = c < nr ? b[size_t(c) * ldb + k] : T(0);
        }
    }
}

// The one sliver of op(A) that needs a transpose, A row-major and MR rows present, in 8 x 8 float blocks.
// Each transposed column is stored as 8 floats at a stride of 6: the 2 extra floats land where the next column
// (or the next sliver) goes and are overwritten by it, so the buffer keeps NR floats of slack at its end.
void pack_a_rows_6(const float* a, int lda, int kc, float* dst) {
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r0 = _mm256_loadu_ps(a + 0 * size_t(lda) + k), r1 = _mm256_loadu_ps(a + 1 * size_t(lda) + k);
        __m256 r2 = _mm256_loadu_ps(a + 2 * size_t(lda) + k), r3 = _mm256_loadu_ps(a + 3 * size_t(lda) + k);
        __m256 r4 = _mm256_loadu_ps(a + 4 * size_t(lda) + k), r5 = _mm256_loadu_ps(a + 5 * size_t(lda) + k);
        __m256 z = _mm256_setzero_ps();
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
        __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
        __m256 s4 = _mm256_shuffle_ps(t4, z, 0x44), s5 = _mm256_shuffle_ps(t4, z, 0xee);
        __m256 s6 = _mm256_shuffle_ps(t5, z, 0x44), s7 = _mm256_shuffle_ps(t5, z, 0xee);
        float* d = dst + k * MR;
        _mm256_storeu_ps(d + 0 * MR, _mm256_permute2f128_ps(s0, s4, 0x20));
        _mm256_storeu_ps(d + 1 * MR, _mm256_permute2f128_ps(s1, s5, 0x20));
        _mm256_storeu_ps(d + 2 * MR, _mm256_permute2f128_ps(s2, s6, 0x20));
        _mm256_storeu_ps(d + 3 * MR, _mm256_permute2f128_ps(s3, s7, 0x20));
        _mm256_storeu_ps(d + 4 * MR, _mm256_permute2f128_ps(s0, s4, 0x31));
        _mm256_storeu_ps(d + 5 * MR, _mm256_permute2f128_ps(s1, s5, 0x31));
        _mm256_storeu_ps(d + 6 * MR, _mm256_permute2f128_ps(s2, s6, 0x31));
        _mm256_storeu_ps(d + 7 * MR, _mm256_permute2f128_ps(s3, s7, 0x31));
    }
    for (; k < kc; ++k)
        for (int r = 0; r < MR; ++r) dst[k * MR + r] = a[size_t(r) * lda + k];
}

template <class T> void pack_a(bool ta, const T* A, int lda, int i0, int mc, int p0, int kc, T* dst) {
    for (int i = 0; i < mc; i += MR, dst += size_t(MR) * kc) {
        const int mr = std::min(MR, mc - i);
        if (ta) {
            const T* a = A + size_t(p0) * lda + i0 + i;
            if (mr == MR) {
                for (int k = 0; k < kc; ++k, a += lda)
                    for (int r = 0; r < MR; ++r) dst[k * MR + r] = a[r];
            } else {
                for (int k = 0; k < kc; ++k, a += lda)
                    for (int r = 0; r < MR; ++r) dst[k * MR + r] = r < mr ? a[r] : T(0);
            }
            continue;
        }
        const T* a = A + size_t(i0 + i) * lda + p0;
        if constexpr (std::is_same_v<T, float>) {
            if (mr == MR) {
                pack_a_rows_6(a, lda, kc, dst);
                continue;
            }
        }
        for (int k = 0; k < kc; ++k)
            for (int r = 0; r < MR; ++r) dst[k * MR + r] = r < mr ? a[size_t(r) * lda + k] : T(0);
    }
}

// C[0:mr, 0:nr] = alpha * a_sliver * b_sliver + beta * C, where beta == 0 leaves C unread. The full-tile and
// the edge-tile stores compute the same fma(alpha, acc, beta * c), so a tile's position never changes a bit.
template <class T>
void micro_kernel(int kc, const T* a, const T* b, T* c, int ldc, T alpha, T beta, int mr, int nr) {
    using S = simd<T>;
    using V = typename S::V;
    constexpr int W = S::W;
    // The C tile is needed only after the k loop; fetching it now hides the miss (C rows are often 1-4 KiB
    // apart, a stride the hardware prefetcher does not follow).
    for (int r = 0; r < mr; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(c + size_t(r) * ldc), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(c + size_t(r) * ldc + 2 * W - 1), _MM_HINT_T0);
    }
    V acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = S::zero();
#pragma GCC unroll 4
    for (int k = 0; k < kc; ++k, a += MR, b += 2 * W) {
        const V b0 = S::load(b), b1 = S::load(b + W);
#pragma GCC unroll 6
        for (int r = 0; r < MR; ++r) {
            const V ar = S::broadcast(a + r);
            acc[r][0] = S::fma(ar, b0, acc[r][0]);
            acc[r][1] = S::fma(ar, b1, acc[r][1]);
        }
    }
    const V va = S::set1(alpha), vb = S::set1(beta);
    if (mr == MR && nr == 2 * W) {
#pragma GCC unroll 6
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
            for (int v = 0; v < 2; ++v) {
                T* p = c + size_t(r) * ldc + v * W;
                S::store(p, beta == T(0) ? S::mul(va, acc[r][v]) : S::fma(va, acc[r][v], S::mul(vb, S::load(p))));
            }
        return;
    }
    // Edge tile: through memory, so that acc[][] is only ever indexed by constants and stays in registers.
    alignas(32) T tile[MR][2 * W];
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
        for (int v = 0; v < 2; ++v) S::store(&tile[r][v * W], acc[r][v]);
    for (int v = 0; v * W < nr; ++v) {
        const __m256i m = S::mask(nr - v * W);
        for (int r = 0; r < mr; ++r) {
            T* p = c + size_t(r) * ldc + v * W;
            const V x = S::load(&tile[r][v * W]);
            S::store(p, m, beta == T(0) ? S::mul(va, x) : S::fma(va, x, S::mul(vb, S::load(p, m))));
        }
    }
}

template <class T> struct Problem {
    bool ta, tb;
    int M, N, K;
    T alpha;
    const T* A;
    int lda;
    const T* B;
    int ldb;
    T beta;
    T* C;
    int ldc;
};

// C[i0:i0+m, j0:j0+n], serially: for each NC panel and KC slice, pack the B panel, then for each MC block
// pack the A block and sweep the B slivers (held in L1) past the A slivers (streamed from L2).
template <class T> void gemm_block(const Problem<T>& p, int i0, int m, int j0, int n) {
    constexpr int nr_max = NR<T>;
    thread_local Scratch<T> a_scratch, b_scratch;
    const int n_k = ceil_div(p.K, KC), kc_max = ceil_div(p.K, n_k);
    const int mc = round_up(ceil_div(m, ceil_div(m, MC)), MR);
    T* const a_pack = a_scratch.get(size_t(mc) * kc_max + nr_max);
    T* const b_pack = b_scratch.get(size_t(round_up(std::min(n, NC), nr_max)) * kc_max);
    for (int jc = j0; jc < j0 + n; jc += NC) {
        const int nc = std::min(NC, j0 + n - jc);
        for (int kb = 0; kb < n_k; ++kb) {
            // Even KC slices (K = 300 is 150 + 150, not 256 + 44); they depend on K only.
            const int p0 = int(long(p.K) * kb / n_k), kc = int(long(p.K) * (kb + 1) / n_k) - p0;
            const T beta = kb == 0 ? p.beta : T(1);
            pack_b(p.tb, p.B, p.ldb, p0, kc, jc, nc, b_pack);
            for (int ic = i0; ic < i0 + m; ic += mc) {
                const int mcur = std::min(mc, i0 + m - ic);
                pack_a(p.ta, p.A, p.lda, ic, mcur, p0, kc, a_pack);
                for (int j = 0; j < nc; j += nr_max)
                    for (int i = 0; i < mcur; i += MR)
                        micro_kernel(kc, a_pack + size_t(i) * kc, b_pack + size_t(j) * kc,
                                     p.C + size_t(ic + i) * p.ldc + jc + j, p.ldc, p.alpha, beta,
                                     std::min(MR, mcur - i), std::min(nr_max, nc - j));
            }
        }
    }
}

template <class T> void scale(int M, int N, T beta, T* C, int ldc) {
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) C[size_t(i) * ldc + j] = beta == T(0) ? T(0) : beta * C[size_t(i) * ldc + j];
}

}  // namespace

template <class T>
void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta, T* C,
          int ldc) {
    if (M < 0 || N < 0 || K < 0) fail("gemm: negative size");
    if (lda < std::max(1, ta ? M : K) || ldb < std::max(1, tb ? K : N) || ldc < std::max(1, N))
        fail("gemm: leading dimension smaller than the row width");
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == T(0)) return scale(M, N, beta, C, ldc);

    const Problem<T> p{ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
    const int nt = omp_in_parallel() || 2.0 * M * N * K < min_parallel_flops ? 1 : omp_get_max_threads();
    if (nt == 1) return gemm_block(p, 0, M, 0, N);

    // The threads share nothing but the finished C: each takes whole chunks of C (all of K) and packs what
    // it needs itself, so no thread ever waits for another mid-product (a barrier per KC slice made a busy
    // machine's scheduler delays add up). The price is packing the uncut operand once per chunk, so C is cut
    // along its longer side, duplicating the smaller operand, and into at most 4 chunks per thread, each at
    // least min_chunk wide, where that copy costs about 1% of the chunk's flops. Dynamic scheduling lets a
    // thread that has the core take the chunks of one that has been preempted.
    const bool rows = M >= N;
    const int extent = rows ? M : N, unit = rows ? MR : NR<T>;
    const int per_thread = std::clamp(extent / (nt * min_chunk), 1, 4);
    const int chunk = round_up(ceil_div(extent, nt * per_thread), unit), n_chunks = ceil_div(extent, chunk);
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (int c = 0; c < n_chunks; ++c) {
        const int lo = c * chunk, len = std::min(chunk, extent - lo);
        if (rows)
            gemm_block(p, lo, len, 0, N);
        else
            gemm_block(p, 0, M, lo, len);
    }
}

template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int);
template void gemm<double>(bool, bool, int, int, int, double, const double*, int, const double*, int, double, double*,
                           int);

}  // namespace st
