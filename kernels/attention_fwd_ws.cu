// Block-sparse flash attention, forward, warp-specialised (FlashAttention 3's structure, attention_ws.cuh)
// for head size 64 and blocks of 128: each multiplying warpgroup takes 64 of the item's queries
// against key tiles of a whole block. It issues tile it's scores with tile it - 1's P V, then takes
// tile it's exponentials while both run; and the two warpgroups take turns at issuing, so that one's
// products run while the other takes exponentials (persistent CTAs, heads grouped for L2). Its timings
// against attention_fwd_wgmma.cu's kernel, and the tries behind the choices here: kernels/dev/NOTES.md.
#include <cfloat>
#include <string>

#include "kernels/attention_fwd_common.cuh"
#include "kernels/attention_ws.cuh"

namespace st::gpu {

namespace {

using namespace mma;
using namespace ws;

struct FwdSmem {  // offsets from the 1024-aligned base
    static constexpr int stages = 4;
    static constexpr int q = 0;                      // 2 x kTile: an item's queries, two items in flight
    static constexpr int k = 2 * kTile;              // stages x kTile
    static constexpr int v = k + stages * kTile;     // stages x kTile
    static constexpr int pipe = v + stages * kTile;  // Pipe<stages>
    static constexpr int bytes = 1024 + pipe + sizeof(Pipe<stages>);
};

__global__ void __launch_bounds__(kThreads, 1) fwd_ws_kernel(FwdArgs a, Items items) {
    using L = FwdSmem;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char* smem = swizzle_base(smem_raw);
    Pipe<L::stages>& pipe = start_pipe<L::stages>(smem + L::pipe);
    const int wg = warpgroup(), warp = threadIdx.x / 32 % 4, lane = threadIdx.x % 32;
    const int64_t W3 = 3 * int64_t(a.C);

    if (wg == 0) {  // the loads, in the order the multiplying warpgroups take them
        mbar::regs_down<kLoadRegs>();
        int f = 0, n = 0;
        for_each_item(items, a.parts, [&](const AttnPartDev& P, int x, int h, int b) {
            const int qb = P.q_sched[x];
            const bf16* base = a.qkv + int64_t(b) * a.T * W3 + h * 64;
            pipe.fill_own(n++,
                          [&](int s) { load_tile128(smem + L::q + s * kTile, base, W3, P.order, qb * kKeys, a.T); });
            for (int e = P.row_ptr[qb]; e < P.row_ptr[qb + 1]; e++)
                pipe.fill(f++, [&](int s) {
                    load_tile128(smem + L::k + s * kTile, base + a.C, W3, P.order, P.col[e] * kKeys, a.T);
                    load_tile128(smem + L::v + s * kTile, base + 2 * a.C, W3, P.order, P.col[e] * kKeys, a.T);
                });
        });
        loads_done();
        return;
    }

    mbar::regs_up<kMathRegs>();
    const int mw = wg - 1, r0 = mw * 64 + warp * 16;  // this warpgroup, the warp's rows of the block
    const Turns turns{mw};
    turns.start();
    int f = 0, n = 0;
    for_each_item(items, a.parts, [&](const AttnPartDev& P, int x, int h, int b) {
        const int qb = P.q_sched[x];
        const int e0 = P.row_ptr[qb], ntiles = P.row_ptr[qb + 1] - e0, own = n;
        const unsigned char* Qt = smem + L::q + pipe.take_own(own) * kTile + mw * kPanel;

        float m[1][2] = {{-INFINITY, -INFINITY}}, l[1][2] = {}, alpha[2] = {1.f, 1.f};
        float acc[1][8][4] = {};
        uint32_t pa[8][4] = {};
        float s[16][4];
        wgmma::fence_regs<32>(&acc[0][0][0]);
        wgmma::fence_frags<32>(&pa[0][0]);
        // acc += P V of fill g (probabilities in pa), rescaled first by the tile after it; issued.
        auto pv = [&](int g) {
            rescale_rows<64>(acc[0], alpha);
            wgmma::fence_regs<32>(&acc[0][0][0]);
            wgmma::fence();
            pv_issue<64>(acc[0], pa, smem + L::v + g % L::stages * kTile);
            wgmma::commit();
        };
        // Tile it's scores into probabilities (s), its keys waited for and read; the P V of the tile
        // before it (with_pv) issued behind them.
        auto scores = [&](int it, bool with_pv) {
            const int e = e0 + it, k0 = P.col[e] * kKeys, mid = P.mask[e];
            const int st = pipe.take(f + it);
            turns.mine();
            wgmma::fence_regs<64>(&s[0][0]);
            wgmma::fence();
            qk128_issue(s, Qt, smem + L::k + st * kTile);
            wgmma::commit();
            if (with_pv) pv(f + it - 1);
            turns.yours();
            if (with_pv)
                wgmma::wait<1>();
            else
                wgmma::wait<0>();
            wgmma::fence_regs<64>(&s[0][0]);
            mask_tile128(s, P.masks, mid, a.T - k0, r0, lane);
            softmax_rows<16>(s, m[0], l[0], alpha, a.scale_log2);
        };
        // Fill g's P V, issued in scores (or after the last tile), waited for: its buffers go back.
        auto pv_done = [&](int g) {
            wgmma::wait<0>();
            wgmma::fence_regs<32>(&acc[0][0][0]);
            wgmma::fence_frags<32>(&pa[0][0]);
            pipe.give_back(g, lane);
        };
        if (ntiles > 0) {
            scores(0, false);
            pack_probs(pa, s);
            for (int it = 1; it < ntiles; it++) {
                scores(it, true);
                pv_done(f + it - 1);
                pack_probs(pa, s);
            }
            pv(f + ntiles - 1);
            pv_done(f + ntiles - 1);
            f += ntiles;
        }
        pipe.give_back_own(own, lane);
        n++;
        write_output<64, 1>(a, P, h, b, qb * kKeys + r0, m, l, acc, lane);
    });
    turns.finish();
}

}  // namespace

// Four stages: with two the loads wait on the products of the tile before; three were a little slower.
// Taking turns at issuing is a little faster than not.
void forward_ws(const FwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    if (a.C / a.NH != 64 || plan.block != kKeys)
        fail("forward_ws: takes head size 64 with blocks of " + std::to_string(kKeys) + " only");
    constexpr int smem = FwdSmem::bytes;
    allow_smem(reinterpret_cast<const void*>(fwd_ws_kernel), smem);
    const Items items = items_for(plan, a.T, a.NH, B);
    for_each_component(plan, a, [&](const FwdArgs& ak) {
        fwd_ws_kernel<<<grid_for(items), kThreads, smem, s>>>(ak, items);
        CUDA_LAUNCH_CHECK();
    });
}

}  // namespace st::gpu
