// One decoding step in one launch (decode.h, decode_step): a thread-block cluster of n CTAs (16
// where the card schedules that many, else 8) walks the embedding, every layer and the head itself.
// The per-op step (decode_linear, decode_attention) spends most of its time between kernels: each of
// its ~50 launches has a ramp, a tail and a dependency gap, while the work of one is a few KB. Here a
// phase ends at a cluster barrier (hardware, a fraction of a microsecond), and the activations never
// leave shared memory: every CTA holds the whole residual stream, computes its slice of each product's
// outputs and writes the slice into every CTA's copy (distributed shared memory).
//
// The weights are one stream per CTA, known before the step starts: its rows of every product in
// order, in chunks of up to 32 KB that the bulk-copy engine brings into a ring of slots, several
// chunks ahead of the products (so the next layer's rows are on their way while this one computes).
//
// Phases of a layer, each ended by a cluster barrier: qkv (LayerNorm in front; the query to every CTA,
// the key and value into the cache), attention (each CTA a share of a head's keys; the shares to every
// CTA), proj (the shares merged in order, then the product and the residual), fc (LayerNorm, GELU),
// fc2 (the residual). The arithmetic is the per-op kernels': bf16 inputs to the products, fp32 sums,
// the same roundings.
//
// Not yet the sampler's default (ST_DECODE=one takes it): the barriers cost what was hoped (about
// 0.4 us each), but the weight stream arrives at about 8 GB/s an SM, and 16 SMs cannot read a large
// model's weights or long caches fast enough (kernels/dev/NOTES.md has the breakdown).
#include <cooperative_groups.h>

#include <algorithm>

#include "kernels/check.h"
#include "kernels/decode.h"
#include "kernels/decode_common.cuh"
#include "kernels/mbarrier.cuh"

namespace st::gpu {

namespace {

namespace cg = cooperative_groups;

constexpr int kWarps = 8, kThreads = kWarps * 32;
constexpr int kSlotBytes = 32768;  // a chunk of weight rows
constexpr int kMaxSlots = 6;

__host__ __device__ inline int splits_of(int NH, int n) { return NH >= n ? 1 : n / NH; }
__host__ __device__ inline int imax(int a, int b) { return a > b ? a : b; }
__host__ __device__ inline int round128(int bytes) { return (bytes + 127) / 128 * 128; }

// The small vectors of a layer a CTA reads, staged in shared memory a layer ahead (their loads wait
// at barriers, not in the products): both LayerNorms, and its rows of each product's bias. The head's
// LayerNorm takes the ln1 places.
struct Vecs {
    int ln1w, ln1b, ln2w, ln2b, qkvb, projb, fcb, fpb, size;
    __host__ __device__ Vecs(int C, int F, int n) {
        ln1w = 0, ln1b = C, ln2w = 2 * C, ln2b = 3 * C, qkvb = 4 * C;
        projb = qkvb + (3 * C + n - 1) / n + 1;
        fcb = projb + (C + n - 1) / n + 1;
        fpb = fcb + (F + n - 1) / n + 1;
        size = fpb + (C + n - 1) / n + 1;
    }
};

// Where everything lives in a CTA's shared memory.
struct StepSmem {
    int ring, xres, x1, qs, in16, hbuf, part, ws, ys, vecs, layers, bars, bytes;
    __host__ __device__ StepSmem(int B, int C, int F, int V, int L, int NH, int D, int n, int slots) {
        const int most = (imax(imax(3 * C, F), V) + n - 1) / n + 1;  // a CTA's rows of a product, at most
        int at = 0;
        ring = at, at += slots * kSlotBytes;
        xres = at, at += round128(B * C * 4);  // the residual stream, fp32
        x1 = at, at += round128(B * C * 4);    // the stream after the attention branch
        qs = at, at += round128(B * C * 4);    // the queries (bf16 values)
        in16 = at, at += round128(B * C * 2);  // a product's input: a LayerNorm's output, or attention's
        hbuf = at, at += round128(B * F * 2);  // GELU's output, fc2's input
        part = at, at += round128(B * NH * splits_of(NH, n) * (D + 2) * 4);  // attention's shares
        ws = at, at += round128(kWarps * (D + 2) * 4);
        ys = at, at += round128(B * most * 4);                  // this CTA's rows of a product, before they go out
        vecs = at, at += round128(2 * Vecs(C, F, n).size * 4);  // two layers' (this one's and the next)
        layers = at, at += round128(L * int(sizeof(DecodeLayer)));
        bars = at, at += round128(slots * 8);
        bytes = at;
    }
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr int kChunkRows = 64;                     // rows a chunk at most: 8 a warp
constexpr int kRowsPerWarp = kChunkRows / kWarps;  // accumulators a warp keeps per sequence

// Product p of the step's 4 L + 1: layer p / 4's qkv, proj, fc and fc2, then the head.
struct Product {
    const bf16* w;
    int ic, oc;
};
__device__ inline Product product(const DecodeStep& a, int p) {
    if (p == 4 * a.L) return {a.head_w, a.C, a.V};
    const DecodeLayer& l = a.layers[p / 4];
    switch (p % 4) {
        case 0:
            return {l.qkv_w, a.C, 3 * a.C};
        case 1:
            return {l.proj_w, a.C, a.C};
        case 2:
            return {l.fc_w, a.C, a.F};
        default:
            return {l.fp_w, a.F, a.C};
    }
}
__device__ inline int chunk_rows(int ic) { return min(kChunkRows, kSlotBytes / (ic * 2)); }
__device__ inline int2 rows_of(int oc, int rank, int n) { return {rank * oc / n, (rank + 1) * oc / n}; }

__device__ inline void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(mma::smem_addr(bar)), "r"(bytes)
                 : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                     mma::smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(mma::smem_addr(bar))
                 : "memory");
}

// The CTA's weight stream through the ring: chunk i in slot i % slots, its barrier's phase i / slots.
// Thread 0 issues; every thread waits for a chunk, and after the CTA has read it (release) thread 0
// refills its slot with the chunk `slots` further on.
struct Ring {
    const DecodeStep& a;
    unsigned char* base;
    uint64_t* full;
    int slots, rank, n;
    int used = 0;                            // chunks read (every thread)
    int next_p = 0, next_c = 0, issued = 0;  // thread 0: the next chunk to issue

    __device__ void issue_next() {
        for (; next_p <= 4 * a.L; next_p++, next_c = 0) {
            const Product pr = product(a, next_p);
            const int2 r = rows_of(pr.oc, rank, n);
            const int per = chunk_rows(pr.ic), r0 = r.x + next_c * per;
            if (r0 >= r.y) continue;
            const int r1 = min(r.y, r0 + per), s = issued % slots;
            bulk_load(base + s * kSlotBytes, pr.w + int64_t(r0) * pr.ic, uint32_t((r1 - r0) * pr.ic * 2), full + s);
            issued++, next_c++;
            return;
        }
    }
    __device__ const bf16* wait() {
        const int s = used % slots;
        mbar::wait(full + s, (used / slots) & 1);
        return reinterpret_cast<const bf16*>(base + s * kSlotBytes);
    }
    __device__ void release() {
        __syncthreads();
        used++;
        if (threadIdx.x == 0) issue_next();
    }
};

// Rows [0, B) of dst (bf16, stride C) = LayerNorm of src's (fp32) with w, b: one warp a row.
template <int B> __device__ void layernorm_rows(bf16* dst, const float* src, const float* w, const float* b, int C) {
    for (int r = threadIdx.x / 32; r < B; r += kWarps) decode::layernorm_row(dst + r * C, src + r * C, w, b, C);
    __syncthreads();
}

// This CTA's output rows of x . W^T + bias for the B rows of x (bf16 in shared memory, row stride
// ic), W's rows from the ring, into ys (B, rows): a warp takes rows warp, warp + 8, ... of each chunk;
// a lane reads 16 bytes of the row at a time. bias: the CTA's rows of it, in shared memory, or null.
template <int B> __device__ void gemv(Ring& ring, const bf16* x, int ic, int2 rows, const float* bias, float* ys) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, per = chunk_rows(ic), nr = rows.y - rows.x;
    for (int c0 = 0; c0 < nr; c0 += per) {
        const int n = min(nr - c0, per);
        const bf16* w = ring.wait();
        float acc[kRowsPerWarp][B] = {};
        for (int i = lane * 8; i < ic; i += 256) {
            float xv[B][8];
#pragma unroll
            for (int b = 0; b < B; b++) {
                const uint4 raw = *reinterpret_cast<const uint4*>(x + b * ic + i);
                const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float2 f = __bfloat1622float2(p[e]);
                    xv[b][2 * e] = f.x, xv[b][2 * e + 1] = f.y;
                }
            }
#pragma unroll
            for (int j = 0; j < kRowsPerWarp; j++) {
                const int r = warp + j * kWarps;
                if (r >= n) break;
                const uint4 wv = *reinterpret_cast<const uint4*>(w + r * ic + i);
#pragma unroll
                for (int b = 0; b < B; b++) acc[j][b] += decode::dot8(wv, xv[b]);
            }
        }
#pragma unroll
        for (int j = 0; j < kRowsPerWarp; j++) {
            const int r = warp + j * kWarps;
            if (r >= n) break;  // the same for the whole warp
#pragma unroll
            for (int b = 0; b < B; b++) {
#pragma unroll
                for (int o = 16; o > 0; o /= 2) acc[j][b] += __shfl_xor_sync(0xffffffffu, acc[j][b], o);
                if (lane == 0) ys[b * nr + c0 + r] = acc[j][b] + (bias ? bias[c0 + r] : 0.f);
            }
        }
        ring.release();  // also the barrier after which ys is whole
    }
}

// Rows [rows.x, rows.y) of every CTA's copy of vec (B rows of `stride`) = v(b, r) for r in the rows:
// consecutive threads write consecutive elements of one CTA.
template <class T, class V>
__device__ void spread(cg::cluster_group& cluster, int n, int B, T* vec, int stride, int2 rows, V v) {
    const int nr = rows.y - rows.x;
    for (int i = threadIdx.x; i < n * B * nr; i += kThreads) {
        const int dst = i / (B * nr), b = i / nr % B, r = i % nr;
        *cluster.map_shared_rank(vec + b * stride + rows.x + r, dst) = T(v(b, r));
    }
}

// The vectors of layer ly (or, with ly null, the head's LayerNorm) into buf (Vecs), every thread a share.
__device__ void stage_vecs(float* buf, const DecodeLayer* ly, const DecodeStep& a, int rank, int n) {
    const int C = a.C;
    const Vecs v(C, a.F, n);
    auto copy = [&](int at, const float* src, int2 rows) {
        for (int i = rows.x + int(threadIdx.x); i < rows.y; i += kThreads) buf[at + i - rows.x] = src[i];
    };
    if (!ly) {
        copy(v.ln1w, a.lnf_w, {0, C});
        copy(v.ln1b, a.lnf_b, {0, C});
        return;
    }
    copy(v.ln1w, ly->ln1_w, {0, C});
    copy(v.ln1b, ly->ln1_b, {0, C});
    copy(v.ln2w, ly->ln2_w, {0, C});
    copy(v.ln2b, ly->ln2_b, {0, C});
    copy(v.qkvb, ly->qkv_b, rows_of(3 * C, rank, n));
    copy(v.projb, ly->proj_b, rows_of(C, rank, n));
    copy(v.fcb, ly->fc_b, rows_of(a.F, rank, n));
    copy(v.fpb, ly->fp_b, rows_of(C, rank, n));
}

// Attention of layer l: item (b, h, s) is split s of head h's keys for sequence b; CTA `rank` takes
// items rank, rank + n, ... Each share (max, sum, output) goes to slot `item` of part in every CTA.
template <int B, int D> __device__ void attend(const DecodeStep& a, const DecodeLayer& ly, int l, int t,
                                               const float* qs, float* part, float* ws, cg::cluster_group& cluster,
                                               int rank, int n) {
    const int NH = a.NH, C = a.C, S = splits_of(NH, n), warp = threadIdx.x / 32;
    const int col = threadIdx.x % 32 % (D / 8) * 8;
    for (int item = rank; item < B * NH * S; item += n) {
        const int s = item % S, h = item / S % NH, b = item / S / NH;
        const DecodeHead hd = a.heads[l * NH + h];
        const DecodeKeys ks(hd, t);
        const int count = ks.count(), per = (count + S - 1) / S, k0 = min(count, s * per), k1 = min(count, k0 + per);
        float q[8];
        const float scale = decode::kLog2e / sqrtf(float(D));
#pragma unroll
        for (int e = 0; e < 8; e++) q[e] = qs[b * C + h * D + col + e] * scale;
        const int64_t base = (int64_t(b) * NH + h) * a.S;
        // Key t was stored by another CTA in this step: read through L2, never a stale line of L1.
        auto row = [&](bool value, int, int slot) {
            return __ldcg(reinterpret_cast<const uint4*>((value ? ly.vc : ly.kc) + (base + slot) * D + col));
        };
        float m, sum, acc[8];
        decode::attend_keys<D>(hd, ks, t, q, k0, k1, warp, kWarps, row, m, sum, acc);
        float* share = part + item * (D + 2);
        decode::merge_warps<D, kWarps>(share, ws, m, sum, acc);
        for (int i = threadIdx.x; i < n * (D + 2); i += kThreads)
            if (i / (D + 2) != rank) *cluster.map_shared_rank(share + i % (D + 2), i / (D + 2)) = share[i % (D + 2)];
        __syncthreads();  // share and ws are rewritten by the next item
    }
}

// The shares of every head merged in split order (decode.cu's combine), into dst (B, C) bf16.
__device__ void merge_shares(bf16* dst, const float* part, int B, int NH, int D, int S) {
    for (int i = threadIdx.x; i < B * NH * D; i += kThreads) {
        const int b = i / (NH * D), h = i / D % NH, d = i % D;
        const float* p = part + (b * NH + h) * S * (D + 2);
        float M = -INFINITY;
        for (int s = 0; s < S; s++) M = fmaxf(M, p[s * (D + 2)]);
        float L = 0, A = 0;
        for (int s = 0; s < S; s++) {
            const float m = p[s * (D + 2)], f = m == -INFINITY ? 0.f : exp2f(m - M);
            L += f * p[s * (D + 2) + 1];
            A += f * p[s * (D + 2) + 2 + d];
        }
        dst[i] = __float2bfloat16(L > 0 ? A / L : 0.f);
    }
    __syncthreads();
}

#endif

template <int B> __global__ void __launch_bounds__(kThreads, 1) step_kernel(const __grid_constant__ DecodeStep a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cg::cluster_group cluster = cg::this_cluster();
    const int rank = int(cluster.block_rank()), n = int(cluster.num_blocks());
    const int C = a.C, F = a.F, NH = a.NH, D = C / NH, t = *a.t;
    extern __shared__ __align__(128) unsigned char smem[];
    const StepSmem L(B, C, F, a.V, a.L, NH, D, n, a.slots);
    float* xres = reinterpret_cast<float*>(smem + L.xres);
    float* x1 = reinterpret_cast<float*>(smem + L.x1);
    float* qs = reinterpret_cast<float*>(smem + L.qs);
    bf16* in16 = reinterpret_cast<bf16*>(smem + L.in16);
    bf16* hbuf = reinterpret_cast<bf16*>(smem + L.hbuf);
    float* part = reinterpret_cast<float*>(smem + L.part);
    float* ws = reinterpret_cast<float*>(smem + L.ws);
    float* ys = reinterpret_cast<float*>(smem + L.ys);
    DecodeLayer* layers = reinterpret_cast<DecodeLayer*>(smem + L.layers);
    const Vecs V(C, F, n);
    auto vecs = [&](int l) { return reinterpret_cast<float*>(smem + L.vecs) + l % 2 * V.size; };
    Ring ring{a, smem + L.ring, reinterpret_cast<uint64_t*>(smem + L.bars), a.slots, rank, n};
    if (threadIdx.x == 0) {
        for (int s = 0; s < a.slots; s++) mbar::init(ring.full + s, 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        for (int s = 0; s < a.slots; s++) ring.issue_next();  // the weights do not wait for anything
    }
    for (int i = threadIdx.x; i < a.L * int(sizeof(DecodeLayer) / 8); i += kThreads)
        reinterpret_cast<uint64_t*>(layers)[i] = reinterpret_cast<const uint64_t*>(a.layers)[i];
    stage_vecs(vecs(0), a.layers, a, rank, n);
    for (int i = threadIdx.x; i < B * C; i += kThreads)  // the embedding: every CTA its own copy
        xres[i] = decode::embedding(a.wte, a.pos, a.tok[i / C], t, C, i % C);
    cluster.sync();  // every CTA has started (and its barriers are set) before any writes into it
    for (int l = 0; l < a.L; l++) {
        const DecodeLayer& ly = layers[l];
        const float* vl = vecs(l);
        layernorm_rows<B>(in16, xres, vl + V.ln1w, vl + V.ln1b, C);
        int2 rows = rows_of(3 * C, rank, n);
        gemv<B>(ring, in16, C, rows, vl + V.qkvb, ys);
        const int nq = imax(0, min(rows.y, C) - rows.x);  // the rows that are queries
        spread(cluster, n, B, qs, C, int2{rows.x, rows.x + nq},
               [&](int b, int r) { return __bfloat162float(__float2bfloat16(ys[b * (rows.y - rows.x) + r])); });
        for (int i = threadIdx.x; i < B * (rows.y - rows.x - nq); i += kThreads) {
            // A key or value of position t, into the slots its head keeps.
            const int b = i / (rows.y - rows.x - nq), r = nq + i % (rows.y - rows.x - nq), o = rows.x + r;
            const int j = (o - C) % C, h = j / D;
            bf16* cache = o < 2 * C ? ly.kc : ly.vc;
            int slots[3];
            const int ns = a.heads[l * NH + h].write_slots(t, slots);
            const bf16 v = __float2bfloat16(ys[b * (rows.y - rows.x) + r]);
            for (int k = 0; k < ns; k++) cache[((int64_t(b) * NH + h) * a.S + slots[k]) * D + j % D] = v;
        }
        stage_vecs(vecs(l + 1), l + 1 < a.L ? &layers[l + 1] : nullptr, a, rank, n);
        cluster.sync();
        switch (D) {
            case 32:
                attend<B, 32>(a, ly, l, t, qs, part, ws, cluster, rank, n);
                break;
            case 64:
                attend<B, 64>(a, ly, l, t, qs, part, ws, cluster, rank, n);
                break;
            default:
                attend<B, 128>(a, ly, l, t, qs, part, ws, cluster, rank, n);
                break;
        }
        cluster.sync();
        merge_shares(in16, part, B, NH, D, splits_of(NH, n));
        rows = rows_of(C, rank, n);
        gemv<B>(ring, in16, C, rows, vl + V.projb, ys);
        spread(cluster, n, B, x1, C, rows,
               [&](int b, int r) { return xres[b * C + rows.x + r] + ys[b * (rows.y - rows.x) + r]; });
        cluster.sync();
        layernorm_rows<B>(in16, x1, vl + V.ln2w, vl + V.ln2b, C);
        rows = rows_of(F, rank, n);
        gemv<B>(ring, in16, C, rows, vl + V.fcb, ys);
        spread(cluster, n, B, hbuf, F, rows,
               [&](int b, int r) { return __float2bfloat16(decode::gelu_tanh(ys[b * (rows.y - rows.x) + r])); });
        cluster.sync();
        rows = rows_of(C, rank, n);
        gemv<B>(ring, hbuf, F, rows, vl + V.fpb, ys);
        spread(cluster, n, B, xres, C, rows,
               [&](int b, int r) { return x1[b * C + rows.x + r] + ys[b * (rows.y - rows.x) + r]; });
        cluster.sync();
    }
    const float* vf = vecs(a.L);
    layernorm_rows<B>(in16, xres, vf + V.ln1w, vf + V.ln1b, C);
    const int2 rows = rows_of(a.V, rank, n);
    gemv<B>(ring, in16, C, rows, nullptr, ys);
    for (int i = threadIdx.x; i < B * (rows.y - rows.x); i += kThreads) {
        const int b = i / (rows.y - rows.x), r = i % (rows.y - rows.x);
        a.logits[int64_t(b) * a.V + rows.x + r] = ys[i];
    }
#endif
}

// The step kernel for B sequences (1 .. kDecodeStepRows).
const void* kernel_for(int B) {
    switch (B) {
        case 1:
            return reinterpret_cast<const void*>(&step_kernel<1>);
        case 2:
            return reinterpret_cast<const void*>(&step_kernel<2>);
        case 3:
            return reinterpret_cast<const void*>(&step_kernel<3>);
        default:
            return reinterpret_cast<const void*>(&step_kernel<4>);
    }
}

int smem_bytes(const DecodeStep& a, int n) {
    return StepSmem(a.B, a.C, a.F, a.V, a.L, a.NH, a.C / a.NH, n, a.slots).bytes;
}

// A launch of n CTAs as one cluster (cfg points at attr: not copied).
struct ClusterLaunch {
    cudaLaunchAttribute attr = {};
    cudaLaunchConfig_t cfg = {};
    ClusterLaunch(int n, int smem, cudaStream_t s) {
        attr.id = cudaLaunchAttributeClusterDimension;
        attr.val.clusterDim.x = unsigned(n), attr.val.clusterDim.y = 1, attr.val.clusterDim.z = 1;
        cfg.gridDim = dim3(unsigned(n));
        cfg.blockDim = dim3(kThreads);
        cfg.dynamicSmemBytes = size_t(smem);
        cfg.stream = s;
        cfg.attrs = &attr;
        cfg.numAttrs = 1;
    }
    ClusterLaunch(const ClusterLaunch&) = delete;
};

}  // namespace

int decode_step_plan(DecodeStep* a) {
    const int D = a->NH > 0 ? a->C / a->NH : 0;
    if (device_attr(cudaDevAttrComputeCapabilityMajor) < 9 || a->B < 1 || a->B > kDecodeStepRows ||
        (D != 32 && D != 64 && D != 128) || a->C % 8 || a->F % 8 || a->V % 8)
        return 0;
    const int optin = device_attr(cudaDevAttrMaxSharedMemoryPerBlockOptin);
    const void* kernel = kernel_for(a->B);
    for (int n : {16, 8}) {
        if (a->V < n || a->C < n) continue;
        a->slots = 0;
        const int fixed = smem_bytes(*a, n);
        a->slots = std::min(kMaxSlots, (optin - fixed) / kSlotBytes);
        if (a->slots < 2) continue;
        const int bytes = smem_bytes(*a, n);
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
        if (n > 8) CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
        const ClusterLaunch launch(n, bytes, nullptr);
        int clusters = 0;
        if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &launch.cfg) != cudaSuccess) {
            (void)cudaGetLastError();  // not schedulable this way: try the smaller cluster
            continue;
        }
        if (clusters >= 1) return n;
    }
    return 0;
}

void decode_step(const DecodeStep& a, int ctas, cudaStream_t s) {
    const ClusterLaunch launch(ctas, smem_bytes(a, ctas), s);
    void* args[] = {const_cast<DecodeStep*>(&a)};
    CUDA_CHECK(cudaLaunchKernelExC(&launch.cfg, kernel_for(a.B), args));
}

}  // namespace st::gpu
