// The model's GPU ops other than the matrix products and attention (ops.h), each checked against
// libst/cpu by tests/gpu/test_ops_gpu.cpp. Math is fp32 (the reductions for clipping fp64); every
// sum runs in a fixed order: a lane's elements in turn, then a butterfly across the warp (whose
// lanes all end with the same bits: each step adds a pair in both orders, and + commutes), then
// per-block partials summed in order by a second pass. No floating-point atomics.
#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/check.h"
#include "kernels/ops.h"
#include "rng.h"

namespace st::gpu {

namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // row ops: one warp per row, 8 warps a block
constexpr unsigned kAll = 0xffffffffu;

void require_rows(const char* op, int C, std::initializer_list<const void*> ptrs) {
    if (C % 8 != 0) fail(std::string(op) + ": C = " + std::to_string(C) + " is not a multiple of 8");
    for (const void* p : ptrs)
        if (!aligned16(p)) fail(std::string(op) + ": a pointer is not 16-byte aligned");
}

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Elementwise kernels walk groups of 8 elements, grid-stride; this many blocks of 256 threads.
unsigned elementwise_blocks(int64_t n) { return unsigned(std::min<int64_t>(cdiv(cdiv(n, 8), 256), 1 << 16)); }

// Eight consecutive elements to or from fp32 registers: one 16-byte access per 8 bf16 (two per 8
// floats) when Vec and the group is whole, else k scalar accesses (tails, unaligned pointers); the
// elements past k load as 0 and are not stored. Loops run to 8 so the arrays stay in registers.
template <bool Vec> __device__ inline void load8(float v[8], const float* p, int k) {
    if (Vec && k == 8) {
        float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
        for (int j = 0; j < 8; j++) v[j] = j < k ? p[j] : 0.0f;
    }
}
template <bool Vec> __device__ inline void load8(float v[8], const bf16* p, int k) {
    if (Vec && k == 8) {
        uint4 u = *reinterpret_cast<const uint4*>(p);
        const bf16* h = reinterpret_cast<const bf16*>(&u);
        for (int j = 0; j < 8; j++) v[j] = __bfloat162float(h[j]);
    } else {
        for (int j = 0; j < 8; j++) v[j] = j < k ? __bfloat162float(p[j]) : 0.0f;
    }
}
template <bool Vec> __device__ inline void store8(float* p, const float v[8], int k) {
    if (Vec && k == 8) {
        reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
        reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
        for (int j = 0; j < 8; j++)
            if (j < k) p[j] = v[j];
    }
}
template <bool Vec> __device__ inline void store8(bf16* p, const float v[8], int k) {
    if (Vec && k == 8) {
        uint4 u;
        bf16* h = reinterpret_cast<bf16*>(&u);
        for (int j = 0; j < 8; j++) h[j] = __float2bfloat16(v[j]);
        *reinterpret_cast<uint4*>(p) = u;
    } else {
        for (int j = 0; j < 8; j++)
            if (j < k) p[j] = __float2bfloat16(v[j]);
    }
}

// The grid-stride loop over groups of 8: f(first element, count).
template <class F> __device__ inline void for_groups(int64_t n, F f) {
    for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g * 8 < n; g += int64_t(gridDim.x) * blockDim.x)
        f(g * 8, int(min(int64_t(8), n - g * 8)));
}

__device__ inline float warp_sum(float v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(kAll, v, o);
    return v;
}
__device__ inline float warp_max(float v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(kAll, v, o));
    return v;
}

// ---- LayerNorm ----

__global__ void layernorm_forward_kernel(bf16* out, float* mean, float* rstd, const float* inp, const float* weight,
                                         const float* bias, int64_t N, int C) {
    int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
    if (row >= N) return;
    const int lane = threadIdx.x % kWarp;
    const float* x = inp + row * C;
    // Two passes over the row as the CPU does (the mean, then the squared deviations from it): the
    // row is back from L1 the second time, and the variance has no cancellation.
    float v[8], s = 0;
    for (int c = lane * 8; c < C; c += kWarp * 8) {
        load8<true>(v, x + c, 8);
        for (int j = 0; j < 8; j++) s += v[j];
    }
    const float m = warp_sum(s) / C;
    float q = 0;
    for (int c = lane * 8; c < C; c += kWarp * 8) {
        load8<true>(v, x + c, 8);
        for (int j = 0; j < 8; j++) q += (v[j] - m) * (v[j] - m);
    }
    const float r = 1.0f / sqrtf(warp_sum(q) / C + 1e-5f);
    for (int c = lane * 8; c < C; c += kWarp * 8) {
        float w[8], b[8];
        load8<true>(v, x + c, 8);
        load8<true>(w, weight + c, 8);
        load8<true>(b, bias + c, 8);
        for (int j = 0; j < 8; j++) v[j] = (v[j] - m) * r * w[j] + b[j];
        store8<true>(out + row * C + c, v, 8);
    }
    if (lane == 0) mean[row] = m, rstd[row] = r;
}

__global__ void layernorm_backward_dinp_kernel(float* dinp, const bf16* dout, const float* inp, const float* weight,
                                               const float* mean, const float* rstd, int64_t N, int C) {
    int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
    if (row >= N) return;
    const int lane = threadIdx.x % kWarp;
    const float* x = inp + row * C;
    const bf16* g = dout + row * C;
    const float m = mean[row], s = rstd[row];
    float xv[8], gv[8], w[8], sum_g = 0, sum_gx = 0;  // means of dnorm and dnorm * norm over the row
    for (int c = lane * 8; c < C; c += kWarp * 8) {
        load8<true>(xv, x + c, 8);
        load8<true>(gv, g + c, 8);
        load8<true>(w, weight + c, 8);
        for (int j = 0; j < 8; j++) {
            float dn = gv[j] * w[j];
            sum_g += dn;
            sum_gx += dn * (xv[j] - m) * s;
        }
    }
    sum_g = warp_sum(sum_g) / C;
    sum_gx = warp_sum(sum_gx) / C;
    for (int c = lane * 8; c < C; c += kWarp * 8) {
        float d[8];
        load8<true>(xv, x + c, 8);
        load8<true>(gv, g + c, 8);
        load8<true>(w, weight + c, 8);
        load8<true>(d, dinp + row * C + c, 8);
        for (int j = 0; j < 8; j++) d[j] += s * (gv[j] * w[j] - sum_g - (xv[j] - m) * s * sum_gx);
        store8<true>(dinp + row * C + c, d, 8);
    }
}

// dweight and dbias sum over rows: each block sums a chunk of kLnChunk rows for 8 columns a thread
// into the scratch, and add_chunk_sums adds the chunks in a fixed order.
constexpr int kLnChunk = 32;

int64_t layernorm_chunks(int64_t N) { return (N + kLnChunk - 1) / kLnChunk; }

__global__ void layernorm_backward_partial_kernel(float* pw, float* pb, const bf16* dout, const float* inp,
                                                  const float* mean, const float* rstd, int64_t N, int C) {
    const int c = (blockIdx.y * blockDim.x + threadIdx.x) * 8;
    if (c >= C) return;
    const int64_t chunk = blockIdx.x, r1 = min(N, (chunk + 1) * kLnChunk);
    float dw[8] = {}, db[8] = {}, x[8], g[8];
    for (int64_t r = chunk * kLnChunk; r < r1; r++) {
        load8<true>(x, inp + r * C + c, 8);
        load8<true>(g, dout + r * C + c, 8);
        const float m = mean[r], s = rstd[r];
        for (int j = 0; j < 8; j++) {
            dw[j] += g[j] * (x[j] - m) * s;
            db[j] += g[j];
        }
    }
    store8<true>(pw + chunk * C + c, dw, 8);
    store8<true>(pb + chunk * C + c, db, 8);
}

// out[c] += sum over k of partial[k * cols + c], k in order within each of kChunkLanes strided
// lanes, the lanes then in order: the same bits every run. A block takes 32 columns (one 128-byte
// read a warp) and kChunkLanes lanes of chunks, so the sum is spread over many threads, not one a
// column (which, with thousands of chunks, made the finishing pass slower than the partial sums).
constexpr int kChunkLanes = 32;

__global__ void add_chunk_sums_kernel(float* out, const float* partial, int64_t chunks, int cols) {
    __shared__ float lane_sum[kChunkLanes][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float s = 0;
    if (c < cols)
        for (int64_t k = threadIdx.y; k < chunks; k += kChunkLanes) s += partial[k * cols + c];
    lane_sum[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y != 0 || c >= cols) return;
    float t = 0;
    for (int y = 0; y < kChunkLanes; y++) t += lane_sum[y][threadIdx.x];
    out[c] += t;
}

// ---- GELU ----

constexpr float kSqrt2OverPi = 0.7978845608028654f, kCubic = 0.044715f;

// For t = tanh(u), u = k (x + c x^3) and e = e^{2u}: 1 + t = 2e / (e + 1) and 1 - t = 2 / (e + 1),
// free of the cancellation 1 + t suffers for negative x (as libst/cpu/gelu.cpp). 2u is capped below
// where e^{2u} overflows; t is 1 in float long before.
__device__ inline void tanh_parts(float x, float& one_plus_t, float& one_minus_t) {
    float u = kSqrt2OverPi * (x + kCubic * x * x * x);
    float e = expf(fminf(2.0f * u, 80.0f));
    one_minus_t = 2.0f / (e + 1.0f);
    one_plus_t = e * one_minus_t;
}

template <bool Vec> __global__ void gelu_forward_kernel(bf16* out, const bf16* inp, int64_t n) {
    for_groups(n, [&](int64_t i, int k) {
        float v[8], p, m;
        load8<Vec>(v, inp + i, k);
        for (int j = 0; j < 8; j++) {
            tanh_parts(v[j], p, m);
            v[j] = 0.5f * v[j] * p;
        }
        store8<Vec>(out + i, v, k);
    });
}

// ---- Residual with dropout ----

// The CPU's hash (libst/rng.h), so both engines drop the same elements.
__device__ inline bool keep(uint64_t seed, int64_t i, uint64_t threshold) {
    return (hash64(seed, uint64_t(i)) >> 11) >= threshold;
}

// The CPU keeps element i when uniform01(h) = (h >> 11) * 2^-53 >= p (in double). Scaling by 2^53
// is exact, and h >> 11 is an integer, so that is (h >> 11) >= ceil(p * 2^53): one integer compare.
uint64_t keep_threshold(float p) {
    if (!(p >= 0.0f && p < 1.0f)) fail("residual dropout: p = " + std::to_string(p) + " is not in [0, 1)");
    return uint64_t(std::ceil(double(p) * 0x1p53));
}

template <bool Vec> __global__ void residual_forward_kernel(float* out, const float* x, const bf16* y, float scale,
                                                            uint64_t seed, uint64_t threshold, int64_t n,
                                                            int64_t first) {
    for_groups(n, [&](int64_t i, int k) {
        float a[8], b[8];
        load8<Vec>(a, x + i, k);
        load8<Vec>(b, y + i, k);
        for (int j = 0; j < 8; j++) a[j] += keep(seed, first + i + j, threshold) ? b[j] * scale : 0.0f;
        store8<Vec>(out + i, a, k);
    });
}

template <bool Vec> __global__ void residual_backward_kernel(bf16* dy, const float* dout, float scale, uint64_t seed,
                                                             uint64_t threshold, int64_t n, int64_t first) {
    for_groups(n, [&](int64_t i, int k) {
        float d[8];
        load8<Vec>(d, dout + i, k);
        for (int j = 0; j < 8; j++) d[j] = keep(seed, first + i + j, threshold) ? d[j] * scale : 0.0f;
        store8<Vec>(dy + i, d, k);
    });
}

// ---- Embeddings ----

__global__ void embedding_forward_kernel(float* out, const uint8_t* tok, const float* wte, PosTables pos, int64_t first,
                                         int64_t N, int T, int C) {
    const int groups = C / 8;
    for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < N * groups;
         g += int64_t(gridDim.x) * blockDim.x) {
        const int64_t i = g / groups;
        const int c = int(g % groups) * 8;
        float o[8], p[8];
        load8<true>(o, wte + int64_t(tok[i]) * C + c, 8);
        for (int k = 0; k < 3; k++) {  // a fixed trip count keeps pos's arrays out of local memory
            if (k >= pos.n) break;
            load8<true>(p, pos.table[k] + int64_t(pos.index[k][(first + i) % T]) * C + c, 8);
            for (int j = 0; j < 8; j++) o[j] += p[j];
        }
        store8<true>(out + i * C + c, o, 8);
    }
}

// A table row's terms (rep b, item i), b-major, are cut into units of kEmbTerms; each unit is one
// block's sum into the scratch, and a second pass adds a row's units in order. The units are placed
// by a scan over the rows on the device, as the counts live there.
constexpr int kEmbTerms = 64;

__device__ inline int64_t embedding_units(const int32_t* ptr, int r, int reps) {
    return (int64_t(ptr[r + 1] - ptr[r]) * reps + kEmbTerms - 1) / kEmbTerms;
}

constexpr int kScanThreads = 1024;

// One block: unit_ptr[r] = the first unit of row r, unit_ptr[rows] = the total.
__global__ void embedding_scan_kernel(int64_t* unit_ptr, const int32_t* ptr, int rows, int reps, int64_t max_units) {
    __shared__ int64_t run[kScanThreads];
    const int t = threadIdx.x, per = (rows + kScanThreads - 1) / kScanThreads;
    const int r0 = min(rows, t * per), r1 = min(rows, r0 + per);
    int64_t mine = 0;
    for (int r = r0; r < r1; r++) mine += embedding_units(ptr, r, reps);
    run[t] = mine;
    __syncthreads();
    for (int o = 1; o < kScanThreads; o *= 2) {  // inclusive scan (integers: any order is exact)
        int64_t add = t >= o ? run[t - o] : 0;
        __syncthreads();
        run[t] += add;
        __syncthreads();
    }
    int64_t at = run[t] - mine;
    for (int r = r0; r < r1; r++) {
        unit_ptr[r] = at;
        at += embedding_units(ptr, r, reps);
    }
    if (t == kScanThreads - 1) {
        unit_ptr[rows] = run[t];
        if (run[t] > max_units) __trap();  // InverseIndex.nitems understated: the scratch is too small
    }
}

__global__ void embedding_partial_kernel(float* partial, const int64_t* unit_ptr, const float* dout, InverseIndex inv,
                                         int reps, int64_t rep_stride, int C) {
    const int64_t u = blockIdx.x;
    if (u >= unit_ptr[inv.rows]) return;
    int lo = 0, hi = inv.rows;  // the row of unit u: the last r with unit_ptr[r] <= u
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        (unit_ptr[mid] <= u ? lo : hi) = mid;
    }
    const int32_t* items = inv.items + inv.ptr[lo];
    const int64_t count = inv.ptr[lo + 1] - inv.ptr[lo], first = (u - unit_ptr[lo]) * kEmbTerms;
    const int64_t last = min(count * reps, first + kEmbTerms);
    for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8) {
        float s[8] = {}, v[8];
        int64_t b = first / count, k = first % count;  // term j is item k of rep b
        for (int64_t j = first; j < last; j++) {
            load8<true>(v, dout + (b * rep_stride + items[k]) * C + c, 8);
            for (int e = 0; e < 8; e++) s[e] += v[e];
            if (++k == count) k = 0, b++;
        }
        store8<true>(partial + u * C + c, s, 8);
    }
}

__global__ void embedding_finish_kernel(float* dtable, const float* partial, const int64_t* unit_ptr, int C) {
    const int r = blockIdx.x;
    const int64_t u0 = unit_ptr[r], u1 = unit_ptr[r + 1];
    if (u0 == u1) return;
    for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8) {
        float s[8] = {}, v[8];
        for (int64_t u = u0; u < u1; u++) {
            load8<true>(v, partial + u * C + c, 8);
            for (int e = 0; e < 8; e++) s[e] += v[e];
        }
        load8<true>(v, dtable + int64_t(r) * C + c, 8);
        for (int e = 0; e < 8; e++) v[e] += s[e];
        store8<true>(dtable + int64_t(r) * C + c, v, 8);
    }
}

int64_t embedding_max_units(const InverseIndex& inv, int reps) {
    return inv.rows + (inv.nitems * reps + kEmbTerms - 1) / kEmbTerms;
}

// Scratch layout: the unit offsets, then the partial rows (256-byte aligned).
size_t embedding_partial_offset(const InverseIndex& inv) { return (size_t(inv.rows + 1) * 8 + 255) / 256 * 256; }

// Threads for C/8 column groups, a whole number of warps, at most 256.
int row_threads(int C) { return int(std::min<int64_t>(256, cdiv(C / 8, kWarp) * kWarp)); }

// ---- Cross-entropy ----

__global__ void crossentropy_kernel(float* losses, bf16* dlogits, const bf16* logits, const uint8_t* targets,
                                    float scale, int64_t N, int V) {
    int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
    if (row >= N) return;
    const int lane = threadIdx.x % kWarp, t = targets[row];
    const bf16* z = logits + row * V;
    const float zt = __bfloat162float(z[t]);
    float mx = -INFINITY;
    for (int v = lane; v < V; v += kWarp) mx = fmaxf(mx, __bfloat162float(z[v]));
    mx = warp_max(mx);
    float s = 0;
    for (int v = lane; v < V; v += kWarp) s += expf(__bfloat162float(z[v]) - mx);
    s = warp_sum(s);
    if (lane == 0) losses[row] = logf(s) + mx - zt;
    if (!dlogits) return;
    __syncwarp();  // every lane has read z[t] before dlogits, which may alias logits, is written
    bf16* d = dlogits + row * V;
    const float r = scale / s;
    for (int v = lane; v < V; v += kWarp)
        d[v] = __float2bfloat16(expf(__bfloat162float(z[v]) - mx) * r - (v == t ? scale : 0.0f));
}

// ---- Reductions in double ----

constexpr int kReduceThreads = 256, kReduceMaxBlocks = 1024;

// A function of n alone, so the partition (and the bits of the sum) depend on nothing else.
int reduce_blocks(int64_t n) { return int(std::clamp<int64_t>((n + 4095) / 4096, 1, kReduceMaxBlocks)); }

// The block's sum in a fixed tree: within warps, then the warps' sums by the first warp.
__device__ double block_sum(double v) {
    __shared__ double warps[kWarp];
    for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(kAll, v, o);
    const int w = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    if (lane == 0) warps[w] = v;
    __syncthreads();
    if (w == 0) {
        v = lane < int(blockDim.x / kWarp) ? warps[lane] : 0.0;
        for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(kAll, v, o);
    }
    return v;  // valid in thread 0
}

template <bool Square> __device__ inline double term(float x) { return Square ? double(x) * double(x) : double(x); }

template <bool Square, bool Vec> __global__ void reduce_partial_kernel(double* partial, const float* x, int64_t n) {
    const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
    double acc = 0;
    int64_t tail = 0;
    if (Vec) {
        for (int64_t g = tid; g < n / 4; g += stride) {
            float4 v = reinterpret_cast<const float4*>(x)[g];
            acc += term<Square>(v.x), acc += term<Square>(v.y), acc += term<Square>(v.z), acc += term<Square>(v.w);
        }
        tail = n / 4 * 4;
    }
    for (int64_t i = tail + tid; i < n; i += stride) acc += term<Square>(x[i]);
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void reduce_finish_kernel(double* out, const double* partial, int blocks) {
    double v = block_sum(int(threadIdx.x) < blocks ? partial[threadIdx.x] : 0.0);
    if (threadIdx.x == 0) out[0] = v;
}

template <bool Square> void reduce(double* out, const float* x, int64_t n, void* scratch, cudaStream_t s) {
    const int blocks = n > 0 ? reduce_blocks(n) : 1;
    double* partial = static_cast<double*>(scratch);
    if (aligned16(x))
        reduce_partial_kernel<Square, true><<<blocks, kReduceThreads, 0, s>>>(partial, x, n);
    else
        reduce_partial_kernel<Square, false><<<blocks, kReduceThreads, 0, s>>>(partial, x, n);
    CUDA_LAUNCH_CHECK();
    reduce_finish_kernel<<<1, kReduceMaxBlocks, 0, s>>>(out, partial, blocks);
    CUDA_LAUNCH_CHECK();
}

// ---- AdamW ----

struct AdamStep {
    float step, rc2, eps, beta1, beta2, decay;  // lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t), 1 - lr wd
    float clip;
};

__global__ void adamw_kernel(float* w, bf16* w16, const float* grad, float* m, float* v, const Segment* segs, int nsegs,
                             int64_t nparams, AdamStep a, const double* sumsq) {
    // The clipping scale as the CPU trainer computes it: clip / norm in double, applied in float.
    float gscale = 1.0f;
    if (a.clip > 0) {
        double norm = sqrt(*sumsq);
        if (norm > a.clip) gscale = float(a.clip / norm);
    }
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < nparams;
         i += int64_t(gridDim.x) * blockDim.x) {
        int lo = 0, hi = nsegs;  // the last segment starting at or before i (segments are few and cached)
        while (hi - lo > 1) {
            int mid = (lo + hi) / 2;
            (segs[mid].offset <= i ? lo : hi) = mid;
        }
        const Segment sg = segs[lo];
        if (i < sg.offset || i >= sg.offset + sg.numel) continue;
        const float g = grad[i] * gscale;
        const float mi = a.beta1 * m[i] + (1.0f - a.beta1) * g;
        const float vi = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
        const float wi = w[i] * (sg.decay ? a.decay : 1.0f) - a.step * mi / (sqrtf(vi) * a.rc2 + a.eps);
        m[i] = mi, v[i] = vi, w[i] = wi;
        w16[i] = __float2bfloat16(wi);
    }
}

// ---- Conversions ----

template <bool Vec> __global__ void f32_to_bf16_kernel(bf16* out, const float* in, int64_t n) {
    for_groups(n, [&](int64_t i, int k) {
        float v[8];
        load8<Vec>(v, in + i, k);
        store8<Vec>(out + i, v, k);
    });
}

template <bool Vec> __global__ void bf16_to_f32_kernel(float* out, const bf16* in, int64_t n) {
    for_groups(n, [&](int64_t i, int k) {
        float v[8];
        load8<Vec>(v, in + i, k);
        store8<Vec>(out + i, v, k);
    });
}

}  // namespace

void layernorm_forward(bf16* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int C, cudaStream_t s) {
    require_rows("layernorm_forward", C, {out, inp, weight, bias});
    if (N <= 0) return;
    layernorm_forward_kernel<<<unsigned(cdiv(N, kRowsPerBlock)), kRowsPerBlock * kWarp, 0, s>>>(out, mean, rstd, inp,
                                                                                                weight, bias, N, C);
    CUDA_LAUNCH_CHECK();
}

void add_chunk_sums(float* out, const float* partial, int64_t chunks, int cols, cudaStream_t s) {
    if (chunks <= 0 || cols <= 0) return;
    add_chunk_sums_kernel<<<unsigned(cdiv(cols, 32)), dim3(32, kChunkLanes), 0, s>>>(out, partial, chunks, cols);
    CUDA_LAUNCH_CHECK();
}

size_t layernorm_backward_scratch(int64_t N, int C) { return 2 * size_t(layernorm_chunks(N)) * C * sizeof(float); }

void layernorm_backward(float* dinp, float* dweight, float* dbias, const bf16* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int C, void* scratch,
                        cudaStream_t s) {
    require_rows("layernorm_backward", C, {dinp, dout, inp, weight, scratch});
    if (N <= 0) return;
    layernorm_backward_dinp_kernel<<<unsigned(cdiv(N, kRowsPerBlock)), kRowsPerBlock * kWarp, 0, s>>>(
        dinp, dout, inp, weight, mean, rstd, N, C);
    CUDA_LAUNCH_CHECK();
    const int64_t chunks = layernorm_chunks(N);
    float* pw = static_cast<float*>(scratch);
    float* pb = pw + chunks * C;
    const int threads = row_threads(C);
    layernorm_backward_partial_kernel<<<dim3(unsigned(chunks), unsigned(cdiv(C / 8, threads))), threads, 0, s>>>(
        pw, pb, dout, inp, mean, rstd, N, C);
    CUDA_LAUNCH_CHECK();
    add_chunk_sums(dweight, pw, chunks, C, s);
    add_chunk_sums(dbias, pb, chunks, C, s);
}

void gelu_forward(bf16* out, const bf16* inp, int64_t n, cudaStream_t s) {
    if (n <= 0) return;
    if (aligned16(out) && aligned16(inp))
        gelu_forward_kernel<true><<<elementwise_blocks(n), 256, 0, s>>>(out, inp, n);
    else
        gelu_forward_kernel<false><<<elementwise_blocks(n), 256, 0, s>>>(out, inp, n);
    CUDA_LAUNCH_CHECK();
}

void residual_forward(float* out, const float* x, const bf16* y, float p, uint64_t seed, int64_t n, int64_t first,
                      cudaStream_t s) {
    const uint64_t threshold = keep_threshold(p);
    if (n <= 0) return;
    const float scale = 1.0f / (1.0f - p);
    if (aligned16(out) && aligned16(x) && aligned16(y))
        residual_forward_kernel<true>
            <<<elementwise_blocks(n), 256, 0, s>>>(out, x, y, scale, seed, threshold, n, first);
    else
        residual_forward_kernel<false>
            <<<elementwise_blocks(n), 256, 0, s>>>(out, x, y, scale, seed, threshold, n, first);
    CUDA_LAUNCH_CHECK();
}

void residual_backward_branch(bf16* dy, const float* dout, float p, uint64_t seed, int64_t n, int64_t first,
                              cudaStream_t s) {
    const uint64_t threshold = keep_threshold(p);
    if (n <= 0) return;
    const float scale = 1.0f / (1.0f - p);
    if (aligned16(dy) && aligned16(dout))
        residual_backward_kernel<true>
            <<<elementwise_blocks(n), 256, 0, s>>>(dy, dout, scale, seed, threshold, n, first);
    else
        residual_backward_kernel<false>
            <<<elementwise_blocks(n), 256, 0, s>>>(dy, dout, scale, seed, threshold, n, first);
    CUDA_LAUNCH_CHECK();
}

void embedding_forward(float* out, const uint8_t* tok, const float* wte, const PosTables& pos, int64_t first, int64_t N,
                       int T, int C, cudaStream_t s) {
    require_rows("embedding_forward", C, {out, wte, pos.table[0], pos.table[1], pos.table[2]});
    if (N <= 0) return;
    const unsigned blocks = unsigned(std::min<int64_t>(cdiv(N * (C / 8), 256), 1 << 16));
    embedding_forward_kernel<<<blocks, 256, 0, s>>>(out, tok, wte, pos, first, N, T, C);
    CUDA_LAUNCH_CHECK();
}

size_t embedding_backward_scratch(const InverseIndex& inv, int reps, int C) {
    return embedding_partial_offset(inv) + size_t(embedding_max_units(inv, reps)) * C * sizeof(float);
}

void embedding_backward(float* dtable, const float* dout, const InverseIndex& inv, int reps, int64_t rep_stride, int C,
                        void* scratch, cudaStream_t s) {
    require_rows("embedding_backward", C, {dtable, dout, scratch});
    if (inv.rows <= 0) return;
    int64_t* unit_ptr = static_cast<int64_t*>(scratch);
    float* partial = reinterpret_cast<float*>(static_cast<char*>(scratch) + embedding_partial_offset(inv));
    const int64_t max_units = embedding_max_units(inv, reps);
    const int threads = row_threads(C);
    embedding_scan_kernel<<<1, kScanThreads, 0, s>>>(unit_ptr, inv.ptr, inv.rows, reps, max_units);
    CUDA_LAUNCH_CHECK();
    embedding_partial_kernel<<<unsigned(max_units), threads, 0, s>>>(partial, unit_ptr, dout, inv, reps, rep_stride, C);
    CUDA_LAUNCH_CHECK();
    embedding_finish_kernel<<<inv.rows, threads, 0, s>>>(dtable, partial, unit_ptr, C);
    CUDA_LAUNCH_CHECK();
}

void crossentropy(float* losses, bf16* dlogits, const bf16* logits, const uint8_t* targets, float scale, int64_t N,
                  int V, cudaStream_t s) {
    if (N <= 0) return;
    crossentropy_kernel<<<unsigned(cdiv(N, kRowsPerBlock)), kRowsPerBlock * kWarp, 0, s>>>(losses, dlogits, logits,
                                                                                           targets, scale, N, V);
    CUDA_LAUNCH_CHECK();
}

size_t reduce_scratch(int64_t n) { return size_t(reduce_blocks(n)) * sizeof(double); }

void sum_f64(double* out, const float* x, int64_t n, void* scratch, cudaStream_t s) {
    reduce<false>(out, x, n, scratch, s);
}

void sum_squares_f64(double* out, const float* x, int64_t n, void* scratch, cudaStream_t s) {
    reduce<true>(out, x, n, scratch, s);
}

void adamw(float* w, bf16* w16, const float* g, float* m, float* v, const Segment* segs, int nsegs, int64_t nparams,
           float lr, float beta1, float beta2, float eps, float weight_decay, int64_t t, const double* sumsq,
           float clip, cudaStream_t s) {
    if (nparams <= 0 || nsegs <= 0) return;
    // Bias corrections in double on the host, then float, as libst/cpu/adamw.cpp.
    const double c1 = 1.0 - std::pow(double(beta1), double(t)), c2 = 1.0 - std::pow(double(beta2), double(t));
    const AdamStep a{
        float(lr / c1), float(1.0 / std::sqrt(c2)), eps, beta1, beta2, float(1.0 - double(lr) * weight_decay), clip};
    const unsigned blocks = unsigned(std::min<int64_t>(cdiv(nparams, 256), 1 << 16));
    adamw_kernel<<<blocks, 256, 0, s>>>(w, w16, g, m, v, segs, nsegs, nparams, a, sumsq);
    CUDA_LAUNCH_CHECK();
}

void f32_to_bf16(bf16* out, const float* in, int64_t n, cudaStream_t s) {
    if (n <= 0) return;
    if (aligned16(out) && aligned16(in))
        f32_to_bf16_kernel<true><<<elementwise_blocks(n), 256, 0, s>>>(out, in, n);
    else
        f32_to_bf16_kernel<false><<<elementwise_blocks(n), 256, 0, s>>>(out, in, n);
    CUDA_LAUNCH_CHECK();
}

void bf16_to_f32(float* out, const bf16* in, int64_t n, cudaStream_t s) {
    if (n <= 0) return;
    if (aligned16(out) && aligned16(in))
        bf16_to_f32_kernel<true><<<elementwise_blocks(n), 256, 0, s>>>(out, in, n);
    else
        bf16_to_f32_kernel<false><<<elementwise_blocks(n), 256, 0, s>>>(out, in, n);
    CUDA_LAUNCH_CHECK();
}

}  // namespace st::gpu
