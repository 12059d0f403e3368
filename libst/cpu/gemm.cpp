// GEMM on the CPU, laid out as in BLIS/GotoBLAS: per KC slice of K, a KC x NC panel of op(B) and an MC x KC
// block of op(A) are packed into slivers, and an AVX2/FMA micro-kernel multiplies one MR-row sliver of A by
// one NR-column sliver of B in registers. Threads take disjoint chunks of C and share nothing else.
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
#include <cstring>
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
    static __m256i mask(int n) {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
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

// Cache blocks, for a core with 32 KiB L1d and 512 KiB L2 (this machine: AMD Zen 3).
// KC: a packed NR x KC sliver of B is 16 KiB in float, half of L1d, so it stays there while the kernel
// streams every A sliver of the block past it. MC: the packed MC x KC block of A is ~150 KiB, inside L2 next
// to the B slivers streaming through. NC: the KC x NC panel of B (4 MiB) lives in L3; every width in the
// models (<= 4d = 2048) fits one panel, so each A block is packed once.
constexpr int KC = 256;
constexpr int MC = 144;
constexpr int NC = 4096;

// Below this many flops the threads cost more than they save (a parallel region is a few microseconds).
constexpr double min_parallel_flops = 1 << 21;
// The narrowest chunk of C worth giving a thread when cutting C finer than one chunk per thread (see gemm).
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
            cap = (n * sizeof(T) + 63) / 64 * 64 / sizeof(T);
            p = static_cast<T*>(std::aligned_alloc(64, cap * sizeof(T)));
            if (!p) throw std::bad_alloc();
        }
        return p;
    }
};

// Rows p0..p0+kc, columns c0..c0+w of a row-major X into slivers of `width` columns, each k-major and the last
// zero-padded: the packing of op(A) when ta and of op(B) when !tb, which needs no transpose. It walks 8 rows
// at a time across all the slivers, so the reads stream along 8 rows together instead of hopping to a new
// row (a new cache line, often a cache miss) every `width` values; the copy was ~20% of a dW = dy^T x.
template <int width, class T> void pack_rows(const T* X, int ld, int p0, int kc, int c0, int w, T* dst) {
    for (int k0 = 0; k0 < kc; k0 += 8) {
        const int k1 = std::min(kc, k0 + 8);
        for (int s = 0; s < w; s += width) {
            const int n = std::min(width, w - s);
            T* d = dst + size_t(s) * kc;
            for (int k = k0; k < k1; ++k) {
                const T* x = X + size_t(p0 + k) * ld + c0 + s;
                if (n == width) {
                    std::memcpy(d + k * width, x, sizeof(T) * width);  // a constant size: plain vector moves
                } else {
                    std::memcpy(d + k * width, x, sizeof(T) * n);
                    std::fill(d + k * width + n, d + (k + 1) * width, T(0));
                }
            }
        }
    }
}

// Transposes the 8 x 8 floats in r[0..7] (r[i] holds row i; afterwards r[j] holds column j).
inline void transpose_8x8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i) {
        s[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
        s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
    }
    for (int j = 0; j < 4; ++j) {
        r[j] = _mm256_permute2f128_ps(s[j], s[j + 4], 0x20);
        r[j + 4] = _mm256_permute2f128_ps(s[j], s[j + 4], 0x31);
    }
}

// Values k0..k0+kc of `rows` rows of X (row-major, ld) into one sliver: dst[k * rows + r] = X[r][k0 + k].
// This is the packing that transposes (op(A) when !ta, op(B) when tb); in float and with full slivers it moves
// 8 x 8 blocks through registers. MR = 6 rows are transposed as 8 with 2 zero rows and each column stored as
// 8 floats at a stride of 6: the 2 extra land where the next column (or the next sliver) goes and are
// overwritten by it, so the buffers keep NR values of slack at their end.
template <int rows, class T> void pack_transposed(const T* X, int ld, int k0, int kc, int n, T* dst) {
    int k = 0;
    if constexpr (std::is_same_v<T, float>) {
        if (n == rows) {
            for (; k + 8 <= kc; k += 8)
                for (int g = 0; g < rows; g += 8) {
                    __m256 r[8];
                    for (int i = 0; i < 8; ++i)
                        r[i] = g + i < rows ? _mm256_loadu_ps(X + size_t(g + i) * ld + k0 + k) : _mm256_setzero_ps();
                    transpose_8x8(r);
                    for (int j = 0; j < 8; ++j) _mm256_storeu_ps(dst + (k + j) * rows + g, r[j]);
                }
        }
    }
    for (; k < kc; ++k)
        for (int i = 0; i < rows; ++i) dst[k * rows + i] = i < n ? X[size_t(i) * ld + k0 + k] : T(0);
}

// Columns j0..j0+nc, rows p0..p0+kc of op(B) into NR-column slivers, each k-major, zero-padded to NR columns.
template <class T> void pack_b(bool tb, const T* B, int ldb, int p0, int kc, int j0, int nc, T* dst) {
    constexpr int nr_max = NR<T>;
    if (!tb) return pack_rows<nr_max>(B, ldb, p0, kc, j0, nc, dst);
    for (int j = 0; j < nc; j += nr_max, dst += size_t(nr_max) * kc)
        pack_transposed<nr_max>(B + size_t(j0 + j) * ldb, ldb, p0, kc, std::min(nr_max, nc - j), dst);
}

// Rows i0..i0+mc, columns p0..p0+kc of op(A) into MR-row slivers, each k-major (MR values per k), the last
// sliver zero-padded to MR rows.
template <class T> void pack_a(bool ta, const T* A, int lda, int i0, int mc, int p0, int kc, T* dst) {
    if (ta) return pack_rows<MR>(A, lda, p0, kc, i0, mc, dst);
    for (int i = 0; i < mc; i += MR, dst += size_t(MR) * kc)
        pack_transposed<MR>(A + size_t(i0 + i) * lda, lda, p0, kc, std::min(MR, mc - i), dst);
}

// C[0:mr, 0:nr] = alpha * a_sliver * b_sliver + beta * C, where beta == 0 leaves C unread. The full-tile and
// the edge-tile stores compute the same fma(alpha, acc, beta * c), so a tile's position never changes a bit.
template <class T> void micro_kernel(int kc, const T* a, const T* b, T* c, int ldc, T alpha, T beta, int mr, int nr) {
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

// Prefetches rectangles of memory (rows of `bytes` bytes, `stride` apart) a few cache lines per call, spread
// over the kernel calls of one stretch of work.
class Prefetcher {
   public:
    void add(const void* p, size_t stride, int rows, size_t bytes) {
        if (n_ < 2 && rows > 0 && bytes > 0) r_[n_++] = {static_cast<const char*>(p), stride, rows, bytes};
    }
    // Sets the pace: all lines over `calls` calls of step().
    void pace(int calls) {
        size_t lines = 0;
        for (int i = 0; i < n_; ++i) lines += size_t(r_[i].rows) * lines_per_row(r_[i]);
        per_call_ = int((lines + calls - 1) / std::max(calls, 1));
    }
    void step() {
        for (int c = 0; c < per_call_ && cur_ < n_; ++c) {
            const Rect& r = r_[cur_];
            _mm_prefetch(r.p + row_ * r.stride + std::min(size_t(line_) * 64, r.bytes - 1), _MM_HINT_T0);
            if (++line_ == lines_per_row(r)) {
                line_ = 0;
                if (++row_ == r.rows) row_ = 0, ++cur_;
            }
        }
    }

   private:
    struct Rect {
        const char* p;
        size_t stride;
        int rows;
        size_t bytes;
    };
    // Every 64 bytes from the row's start and its last byte: all its lines, however it is aligned.
    static int lines_per_row(const Rect& r) { return int((r.bytes - 1) / 64 + 2); }
    Rect r_[2];
    int n_ = 0, cur_ = 0, row_ = 0, line_ = 0, per_call_ = 0;
};

// Where rows i0..i0+m (columns p0..p0+kc) of op(A), and columns j0..j0+n (rows p0..p0+kc) of op(B), are read.
template <class T> void add_a(Prefetcher& pf, const Problem<T>& p, int i0, int m, int p0, int kc) {
    if (p.ta)
        pf.add(p.A + size_t(p0) * p.lda + i0, p.lda * sizeof(T), kc, m * sizeof(T));
    else
        pf.add(p.A + size_t(i0) * p.lda + p0, p.lda * sizeof(T), m, kc * sizeof(T));
}
template <class T> void add_b(Prefetcher& pf, const Problem<T>& p, int j0, int n, int p0, int kc) {
    if (p.tb)
        pf.add(p.B + size_t(j0) * p.ldb + p0, p.ldb * sizeof(T), n, kc * sizeof(T));
    else
        pf.add(p.B + size_t(p0) * p.ldb + j0, p.ldb * sizeof(T), kc, n * sizeof(T));
}

// C[i0:i0+m, j0:j0+n], serially: for each NC panel and KC slice, for each MC block: pack the A block, and
// sweep the B slivers (each held in L1) past its A slivers (streamed from L2), packing each B sliver just
// before its first use. Packing reads operands that are often out of cache, and alone it waits on memory
// (a quarter of a d = 128 dW's time); so while the kernels run, what is packed next is prefetched: the next
// B sliver during the current one, the next A block (and the next slice's first B sliver) over the block.
template <class T> void gemm_block(const Problem<T>& p, int i0, int m, int j0, int n) {
    constexpr int nr_max = NR<T>;
    thread_local Scratch<T> a_scratch, b_scratch;
    const int n_k = ceil_div(p.K, KC), kc_max = ceil_div(p.K, n_k);
    const int mc = round_up(ceil_div(m, ceil_div(m, MC)), MR);
    T* const a_pack = a_scratch.get(size_t(mc) * kc_max + nr_max);
    T* const b_pack = b_scratch.get(size_t(round_up(std::min(n, NC), nr_max)) * kc_max);
    // Even KC slices (K = 300 is 150 + 150, not 256 + 44); they depend on K only.
    auto slice = [&](int kb) { return int(long(p.K) * kb / n_k); };
    for (int jc = j0; jc < j0 + n; jc += NC) {
        const int nc = std::min(NC, j0 + n - jc);
        for (int kb = 0; kb < n_k; ++kb) {
            const int p0 = slice(kb), kc = slice(kb + 1) - p0;
            const T beta = kb == 0 ? p.beta : T(1);
            for (int ic = i0; ic < i0 + m; ic += mc) {
                const int mcur = std::min(mc, i0 + m - ic);
                const bool first = ic == i0;
                pack_a(p.ta, p.A, p.lda, ic, mcur, p0, kc, a_pack);
                Prefetcher next_block;
                if (ic + mc < i0 + m) {
                    add_a(next_block, p, ic + mc, std::min(mc, i0 + m - ic - mc), p0, kc);
                } else if (kb + 1 < n_k) {
                    add_a(next_block, p, i0, std::min(mc, m), slice(kb + 1), slice(kb + 2) - slice(kb + 1));
                    add_b(next_block, p, jc, std::min(nr_max, nc), slice(kb + 1), slice(kb + 2) - slice(kb + 1));
                }
                next_block.pace(ceil_div(nc, nr_max) * ceil_div(mcur, MR));
                for (int j = 0; j < nc; j += nr_max) {
                    T* const b = b_pack + size_t(j) * kc;
                    Prefetcher next_sliver;
                    if (first) {
                        pack_b(p.tb, p.B, p.ldb, p0, kc, jc + j, std::min(nr_max, nc - j), b);
                        if (j + nr_max < nc)
                            add_b(next_sliver, p, jc + j + nr_max, std::min(nr_max, nc - j - nr_max), p0, kc);
                        next_sliver.pace(ceil_div(mcur, MR));
                    }
                    for (int i = 0; i < mcur; i += MR) {
                        next_sliver.step();
                        next_block.step();
                        micro_kernel(kc, a_pack + size_t(i) * kc, b, p.C + size_t(ic + i) * p.ldc + jc + j, p.ldc,
                                     p.alpha, beta, std::min(MR, mcur - i), std::min(nr_max, nc - j));
                    }
                }
            }
        }
    }
}

template <class T> void scale(int M, int N, T beta, T* C, int ldc) {
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) C[size_t(i) * ldc + j] = beta == T(0) ? T(0) : beta * C[size_t(i) * ldc + j];
}

}  // namespace

template <class T> void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
                             T beta, T* C, int ldc) {
    if (M < 0 || N < 0 || K < 0) fail("gemm: negative size");
    if (lda < std::max(1, ta ? M : K) || ldb < std::max(1, tb ? K : N) || ldc < std::max(1, N))
        fail("gemm: leading dimension smaller than the row width");
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == T(0)) return scale(M, N, beta, C, ldc);

    const Problem<T> p{ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
    const int nt = omp_in_parallel() || 2.0 * M * N * K < min_parallel_flops ? 1 : omp_get_max_threads();
    if (nt == 1) return gemm_block(p, 0, M, 0, N);

    // The threads share nothing but C: each takes whole chunks of C (all of K) and packs what it needs
    // itself, so no thread ever waits for another mid-product. (Sharing the packed B panel needs a barrier
    // per KC slice; on a busy machine each one waited out a scheduler time slice, 30x slower.) The price is
    // packing the uncut operand once per chunk, so C is cut along its longer side, which duplicates the
    // smaller operand, and into more than one chunk per thread (at most 4) only where the chunks stay at
    // least min_chunk wide, ~1000 flops per duplicated value. Dynamic scheduling then lets a thread that
    // has its core take the chunks of one that has been preempted.
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
