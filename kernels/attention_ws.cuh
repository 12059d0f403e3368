// What the warp-specialised attention kernels share (attention_fwd_ws.cu, attention_bwd_ws.cu): head
// size 64, blocks of 128; one CTA an SM, persistent over the launch's items (a block of one head and
// batch row: its queries, or its keys for dK/dV); its first warpgroup only loads (cp.async into
// mbarrier-guarded buffers, few registers), the other two multiply, each 64 of the item's rows
// against the streamed tiles.
#pragma once
#include <algorithm>

#include "kernels/attention.h"
#include "kernels/attention_wgmma_tile.cuh"
#include "kernels/check.h"
#include "kernels/mbarrier.cuh"

namespace st::gpu::ws {

constexpr int kKeys = 128;                      // keys a streamed tile: one block
constexpr int kTile = kKeys * 128;              // bytes of a 128-row tile of head size 64
constexpr int kThreads = 384;                   // the loading warpgroup, then two multiplying ones
constexpr int kLoadRegs = 40, kMathRegs = 232;  // 128 x (40 + 2 x 232) = 64,512 of 65,536 registers

// The items of a launch, in the order the CTAs take them (CTA c: items c, c + gridDim.x, ...): heads in
// groups of `group` whose keys and values fit in L2 together, and within a group the heads' blocks
// longest first (x, the position in their schedules, q_sched or k_sched), so that a launch ends on
// short items.
struct Items {
    int count, nblk, NH, HB, group;
    __device__ void at(int w, int& x, int& h, int& b) const {
        const int g = w / (nblk * group), in = w - g * nblk * group, gsize = min(group, HB - g * group);
        const int hb = g * group + in % gsize;
        x = in / gsize;
        h = hb % NH;
        b = hb / NH;
    }
};

inline Items items_for(const AttnPlan& plan, int T, int NH, int B) {
    static const int l2 = device_attr(cudaDevAttrL2CacheSize);
    // A head's keys and values: T rows of 128 bytes each; half of L2 for a group's.
    const int group = int(std::clamp<int64_t>(l2 / 2 / (int64_t(T) * 256), 1, int64_t(NH) * B));
    return Items{plan.nblk * NH * B, plan.nblk, NH, NH * B, group};
}

inline int grid_for(const Items& items) {
    static const int sms = device_attr(cudaDevAttrMultiProcessorCount);
    return std::min(items.count, sms);
}

// Calls f(P, x, h, b) for this CTA's items, in order (the loading and the multiplying warpgroups
// walk the same sequence); x is the position in the head's schedule (q_sched or k_sched).
template <typename F> __device__ __forceinline__ void for_each_item(const Items& items, const AttnPartDev* parts, F f) {
    for (int w = blockIdx.x; w < items.count; w += gridDim.x) {
        int x, h, b;
        items.at(w, x, h, b);
        const AttnPartDev P = parts[h];
        if (P.row_ptr) f(P, x, h, b);
    }
}

// The hand-offs of a CTA: STAGES streamed tiles (fill f in stage f % STAGES), and the item's own rows
// in two slots (item n in slot n % 2). "full" barriers count the loading threads' cp.async arrivals,
// "empty" ones the multiplying warps done with the buffer.
template <int STAGES> struct Pipe {
    uint64_t full[STAGES], empty[STAGES], own_full[2], own_empty[2];

    __device__ void init() {  // by one thread, before a __syncthreads
        for (int s = 0; s < STAGES; s++) {
            mbar::init(&full[s], 128);
            mbar::init(&empty[s], 8);
        }
        for (int s = 0; s < 2; s++) {
            mbar::init(&own_full[s], 128);
            mbar::init(&own_empty[s], 8);
        }
    }
    // Loading side: wait until the buffer is free, load it (every thread of the warpgroup), mark it.
    template <typename Load> __device__ void fill(int f, Load load) {
        const int s = f % STAGES;
        if (f >= STAGES) mbar::wait(&empty[s], (f / STAGES - 1) & 1);
        load(s);
        mbar::cp_async_arrive(&full[s]);
    }
    template <typename Load> __device__ void fill_own(int n, Load load) {
        const int s = n & 1;
        if (n >= 2) mbar::wait(&own_empty[s], (n / 2 - 1) & 1);
        load(s);
        mbar::cp_async_arrive(&own_full[s]);
    }
    // Multiplying side: wait for the buffer (then visible to wgmma), give it back (one lane a warp).
    __device__ int take(int f) {
        mbar::wait(&full[f % STAGES], (f / STAGES) & 1);
        wgmma::fence_proxy();  // cp.async wrote through the generic proxy; wgmma reads through the async one
        return f % STAGES;
    }
    __device__ void give_back(int f, int lane) {
        if (lane == 0) mbar::arrive(&empty[f % STAGES]);
    }
    __device__ int take_own(int n) {
        mbar::wait(&own_full[n & 1], (n / 2) & 1);
        wgmma::fence_proxy();
        return n & 1;
    }
    __device__ void give_back_own(int n, int lane) {
        if (lane == 0) mbar::arrive(&own_empty[n & 1]);
    }
};

// The pipe at `at` in shared memory, initialised for the whole CTA.
template <int STAGES> __device__ __forceinline__ Pipe<STAGES>& start_pipe(unsigned char* at) {
    Pipe<STAGES>& pipe = *reinterpret_cast<Pipe<STAGES>*>(at);
    if (threadIdx.x == 0) pipe.init();
    __syncthreads();
    return pipe;
}

// This thread's warpgroup (0: the loads), through a shuffle so that the compiler knows it is the same
// across a warp: products issued on a path that looks divergent are serialised by ptxas (C7518).
__device__ __forceinline__ int warpgroup() { return __shfl_sync(0xffffffffu, threadIdx.x / 128, 0); }

// The loading warpgroup leaves once its last copies have landed.
__device__ __forceinline__ void loads_done() {
    mma::cp_async_commit();
    mma::cp_async_wait<0>();
}

// Rows t0 .. t0 + 127 of one head's 64 columns into a 128-row swizzled tile, by the loading warpgroup.
__device__ __forceinline__ void load_tile128(unsigned char* dst, const bf16* src, int64_t stride, const int32_t* order,
                                             int t0, int T) {
    load_tile_sw128<64, 128>(dst, src, stride, order, t0, T);
    load_tile_sw128<64, 128>(dst + kPanel, src, stride, order, t0 + 64, T);
}

// The two multiplying warpgroups take turns at issuing products (named barriers 1 and 2), so that
// one's products run while the other works on its scores. A turn: mine(), issue, yours().
struct Turns {
    int mw;  // 0 or 1
    __device__ void start() const {
        if (mw == 1) mbar::named_arrive(1, 256);  // the first warpgroup goes first
    }
    __device__ void mine() const { mbar::named_sync(1 + mw, 256); }
    __device__ void yours() const { mbar::named_arrive(2 - mw, 256); }
    __device__ void finish() const {
        if (mw == 0) mine();  // the second warpgroup's last "yours", unanswered
    }
};

// s (the warp's 16 rows x 128 keys) = A B^T over head size 64, issued: A a 64-row swizzled tile, B a
// 128-row one (qk_issue with twice the columns).
__device__ __forceinline__ void qk128_issue(float (&s)[16][4], const unsigned char* At, const unsigned char* Bt) {
    const uint64_t da = wgmma::desc_sw128(At, 1024, 16), db = wgmma::desc_sw128(Bt, 1024, 16);
#pragma unroll
    for (int kk = 0; kk < 4; kk++) wgmma::m64n128k16_ss<0>(&s[0][0], da + 2 * kk, db + 2 * kk, kk > 0);
}

// The mask of a 128-key tile for the warp's rows (r0: the warp's first row in its block), as mask_tile.
__device__ __forceinline__ void mask_tile128(float (&s)[16][4], const uint64_t* masks, int mid, int limit, int r0,
                                             int lane) {
#pragma unroll
    for (int half = 0; half < 2; half++)
        mask_tile<kKeys, 1, 8>(reinterpret_cast<float(&)[1][8][4]>(s[half * 8]), masks, mid, half * 64,
                               limit - half * 64, r0, lane);
}

}  // namespace st::gpu::ws
