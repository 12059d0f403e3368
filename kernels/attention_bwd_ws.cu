// Block-sparse flash attention, backward, warp-specialised (attention_ws.cuh) for head size 64 and
// blocks of 128: the two kernels of attention_bwd_wgmma.cu (dK/dV by key block, dQ by query block: no
// atomics, the same bits every run) on the forward's structure, persistent, the streamed tiles loaded
// by their own warpgroup (kernels/dev/NOTES.md has its timings against attention_bwd_wgmma.cu's).
#include <string>

#include "kernels/attention_bwd_common.cuh"
#include "kernels/attention_ws.cuh"

namespace st::gpu {

namespace {

using namespace mma;
using namespace ws;

// dQ: each multiplying warpgroup holds 64 of the item's queries (their Q and dO tiles loaded once an
// item, lse and D in registers) and walks the row's key blocks: S = Q K^T and dP = dO V^T over 128
// keys, then dS = P (dP - D), issued as dQ += dS K behind the next tile's S and dP.
struct DqSmem {  // offsets from the 1024-aligned base
    static constexpr int stages = 3;
    static constexpr int q = 0;                      // 2 x kTile: an item's queries, two items in flight
    static constexpr int g = 2 * kTile;              // 2 x kTile: their dO
    static constexpr int k = 4 * kTile;              // stages x kTile
    static constexpr int v = k + stages * kTile;     // stages x kTile
    static constexpr int pipe = v + stages * kTile;  // Pipe<stages>
    static constexpr int bytes = 1024 + pipe + sizeof(Pipe<stages>);
};

__global__ void __launch_bounds__(kThreads, 1) dq_ws_kernel(BwdArgs a, Items items) {
    using L = DqSmem;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char* smem = swizzle_base(smem_raw);
    Pipe<L::stages>& pipe = start_pipe<L::stages>(smem + L::pipe);
    const int wg = warpgroup(), warp = threadIdx.x / 32 % 4, lane = threadIdx.x % 32;

    if (wg == 0) {
        mbar::regs_down<kLoadRegs>();
        int f = 0, n = 0;
        for_each_item(items, a.parts, [&](const AttnPartDev& P, int x, int h, int b) {
            const int qb = P.q_sched[x];
            const HeadRows<64> r(a, b, h);
            pipe.fill_own(n++, [&](int s) {
                load_tile128(smem + L::q + s * kTile, r.qkv, r.W3, P.order, qb * kKeys, a.T);
                load_tile128(smem + L::g + s * kTile, r.dout, a.C, P.order, qb * kKeys, a.T);
            });
            for (int e = P.row_ptr[qb]; e < P.row_ptr[qb + 1]; e++)
                pipe.fill(f++, [&](int s) {
                    load_tile128(smem + L::k + s * kTile, r.qkv + a.C, r.W3, P.order, P.col[e] * kKeys, a.T);
                    load_tile128(smem + L::v + s * kTile, r.qkv + 2 * a.C, r.W3, P.order, P.col[e] * kKeys, a.T);
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
        const HeadRows<64> r(a, b, h);
        const int e0 = P.row_ptr[qb], ntiles = P.row_ptr[qb + 1] - e0, own = n;
        float Lq[1][2], Dq[1][2];
        row_lse_dsum<64, 1>(Lq, Dq, r, P.order, qb * kKeys + r0, a.T, lane);
        const int slot = pipe.take_own(own);
        const unsigned char* Qt = smem + L::q + slot * kTile + mw * kPanel;
        const unsigned char* Gt = smem + L::g + slot * kTile + mw * kPanel;

        float dq[1][8][4] = {};
        uint32_t da[8][4] = {};  // dS as the A operand of dQ += dS K, kept until its wait
        float s[1][16][4], dp[1][16][4];
        wgmma::fence_regs<32>(&dq[0][0][0]);
        wgmma::fence_frags<32>(&da[0][0]);
        auto dq_issue = [&](int g) {  // dQ += dS K of fill g, issued
            wgmma::fence_regs<32>(&dq[0][0][0]);
            wgmma::fence();
            pv_issue<64>(dq[0], da, smem + L::k + g % L::stages * kTile);
            wgmma::commit();
        };
        // Tile it's dS (in dp), its keys and values waited for and read; the dQ product of the tile
        // before it (with_dq) issued behind S and dP.
        auto dscores = [&](int it, bool with_dq) {
            const int e = e0 + it, k0 = P.col[e] * kKeys, mid = P.mask[e];
            const int st = pipe.take(f + it);
            turns.mine();
            wgmma::fence_regs<64>(&s[0][0][0]);
            wgmma::fence_regs<64>(&dp[0][0][0]);
            wgmma::fence();
            qk128_issue(s[0], Qt, smem + L::k + st * kTile);
            qk128_issue(dp[0], Gt, smem + L::v + st * kTile);
            wgmma::commit();
            if (with_dq) dq_issue(f + it - 1);
            turns.yours();
            if (with_dq)
                wgmma::wait<1>();
            else
                wgmma::wait<0>();
            wgmma::fence_regs<64>(&s[0][0][0]);
            wgmma::fence_regs<64>(&dp[0][0][0]);
            mask_tile128(s[0], P.masks, mid, a.T - k0, r0, lane);
            dscores_by_row<16, 1>(s, dp, Lq, Dq, a.scale_log2);
        };
        auto dq_done = [&](int g) {  // fill g's dQ product waited for: its buffers go back
            wgmma::wait<0>();
            wgmma::fence_regs<32>(&dq[0][0][0]);
            wgmma::fence_frags<32>(&da[0][0]);
            pipe.give_back(g, lane);
        };
        if (ntiles > 0) {
            dscores(0, false);
            pack_probs(da, dp[0]);
            for (int it = 1; it < ntiles; it++) {
                dscores(it, true);
                dq_done(f + it - 1);
                pack_probs(da, dp[0]);
            }
            dq_issue(f + ntiles - 1);
            dq_done(f + ntiles - 1);
            f += ntiles;
        }
        pipe.give_back_own(own, lane);
        n++;
        store_rows<64, 1>(a.dqkv + int64_t(b) * a.T * r.W3 + h * 64, r.W3, dq, P.order, qb * kKeys + r0, a.T, lane,
                          a.merge, a.scale);
    });
    turns.finish();
}

// dK/dV: an item is a key block (k_sched); each multiplying warpgroup holds 64 of its keys (K and V
// tiles loaded once an item) and walks the column's query blocks in 64-query tiles (two a block: the
// score products of m64n64 leave registers for dK and dV's): S^T = K Q^T and dP^T = V dO^T, then
// dV += P^T dO and dK += dS^T Q, left running into the next tile.
struct DkvSmem {  // offsets from the 1024-aligned base
    static constexpr int stages = 4;
    static constexpr int k = 0;                          // 2 x kTile: an item's keys, two items in flight
    static constexpr int v = 2 * kTile;                  // 2 x kTile: their values
    static constexpr int q = 4 * kTile;                  // stages x kPanel: 64 queries
    static constexpr int g = q + stages * kPanel;        // stages x kPanel: their dO
    static constexpr int lse = g + stages * kPanel;      // stages x 64 floats
    static constexpr int dsum = lse + stages * 64 * 4;   // stages x 64 floats
    static constexpr int pipe = dsum + stages * 64 * 4;  // Pipe<stages>
    static constexpr int bytes = 1024 + pipe + sizeof(Pipe<stages>);
};

__global__ void __launch_bounds__(kThreads, 1) dkv_ws_kernel(BwdArgs a, Items items) {
    using L = DkvSmem;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char* smem = swizzle_base(smem_raw);
    Pipe<L::stages>& pipe = start_pipe<L::stages>(smem + L::pipe);
    float* Ls = reinterpret_cast<float*>(smem + L::lse);
    float* Ds = reinterpret_cast<float*>(smem + L::dsum);
    const int wg = warpgroup(), warp = threadIdx.x / 32 % 4, lane = threadIdx.x % 32;

    if (wg == 0) {
        mbar::regs_down<kLoadRegs>();
        int f = 0, n = 0;
        for_each_item(items, a.parts, [&](const AttnPartDev& P, int x, int h, int b) {
            const int kb = P.k_sched[x];
            const HeadRows<64> r(a, b, h);
            pipe.fill_own(n++, [&](int s) {
                load_tile128(smem + L::k + s * kTile, r.qkv + a.C, r.W3, P.order, kb * kKeys, a.T);
                load_tile128(smem + L::v + s * kTile, r.qkv + 2 * a.C, r.W3, P.order, kb * kKeys, a.T);
            });
            for (int e = P.col_ptr[kb]; e < P.col_ptr[kb + 1]; e++)
                for (int sub = 0; sub < 2; sub++)
                    pipe.fill(f++, [&](int s) {
                        const int q0 = P.row_of[e] * kKeys + sub * 64;
                        load_tile_sw128<64, 128>(smem + L::q + s * kPanel, r.qkv, r.W3, P.order, q0, a.T);
                        load_tile_sw128<64, 128>(smem + L::g + s * kPanel, r.dout, a.C, P.order, q0, a.T);
                        load_lse_dsum<64, 128, 64>(Ls + s * 64, Ds + s * 64, r, P.order, q0, a.T);
                    });
        });
        loads_done();
        return;
    }

    mbar::regs_up<kMathRegs>();
    const int mw = wg - 1, r0 = mw * 64 + warp * 16;  // this warpgroup, the warp's keys of the block
    int f = 0, n = 0;
    for_each_item(items, a.parts, [&](const AttnPartDev& P, int x, int h, int b) {
        const int kb = P.k_sched[x], x0 = P.col_ptr[kb], ntiles = 2 * (P.col_ptr[kb + 1] - x0), own = n;
        const int slot = pipe.take_own(own);
        const unsigned char* Kt = smem + L::k + slot * kTile + mw * kPanel;
        const unsigned char* Vt = smem + L::v + slot * kTile + mw * kPanel;

        float dk[1][8][4] = {}, dv[1][8][4] = {};
        uint32_t pv[4][4] = {}, pk[4][4] = {};  // the A operands of the dV and dK products, kept until their wait
        auto settle = [&] {  // dV and dK's products, their operands and accumulators, pinned up to the wait
            wgmma::fence_regs<32>(&dv[0][0][0]);
            wgmma::fence_regs<32>(&dk[0][0][0]);
            wgmma::fence_frags<16>(&pv[0][0]);
            wgmma::fence_frags<16>(&pk[0][0]);
        };
        settle();
        for (int it = 0; it < ntiles; it++) {
            const int e = x0 + it / 2, sub = it % 2, q0 = P.row_of[e] * kKeys + sub * 64, mid = P.mask_t[e];
            const int st = pipe.take(f + it);
            const unsigned char* Qt = smem + L::q + st * kPanel;
            const unsigned char* Gt = smem + L::g + st * kPanel;
            float s[1][8][4], dp[1][8][4];
            wgmma::fence_regs<32>(&s[0][0][0]);
            wgmma::fence_regs<32>(&dp[0][0][0]);
            wgmma::fence();
            qk_issue<64>(s[0], Kt, Qt);   // S^T = K Q^T: keys x 64 queries
            qk_issue<64>(dp[0], Vt, Gt);  // dP^T = V dO^T
            wgmma::commit();
            wgmma::wait<0>();  // also the previous tile's dV and dK
            wgmma::fence_regs<32>(&s[0][0][0]);
            wgmma::fence_regs<32>(&dp[0][0][0]);
            settle();
            if (it > 0) pipe.give_back(f + it - 1, lane);

            mask_tile<kKeys, 1, 8>(s, P.masks_t, mid, sub * 64, a.T - q0, r0, lane);
            probs_by_column<8, 1>(s, dp, Ls + st * 64, Ds + st * 64, a.scale_log2, lane);
            pack_probs(pv, s[0]);
            pack_probs(pk, dp[0]);
            wgmma::fence_regs<32>(&dv[0][0][0]);
            wgmma::fence_regs<32>(&dk[0][0][0]);
            wgmma::fence();
            pv_issue<64>(dv[0], pv, Gt);  // dV += P^T dO
            pv_issue<64>(dk[0], pk, Qt);  // dK += dS^T Q
            wgmma::commit();              // left running into the next tile
        }
        wgmma::wait<0>();
        settle();
        if (ntiles > 0) pipe.give_back(f + ntiles - 1, lane);
        f += ntiles;
        pipe.give_back_own(own, lane);
        n++;
        bf16* kdst = a.dqkv + int64_t(b) * a.T * 3 * int64_t(a.C) + a.C + h * 64;
        store_rows<64, 1>(kdst, 3 * int64_t(a.C), dk, P.order, kb * kKeys + r0, a.T, lane, a.merge, a.scale);
        store_rows<64, 1>(kdst + a.C, 3 * int64_t(a.C), dv, P.order, kb * kKeys + r0, a.T, lane, a.merge, 1.f);
    });
}

template <typename Kernel> void launch(Kernel kernel, int smem, const BwdArgs& a, const Items& items, cudaStream_t s) {
    allow_smem(reinterpret_cast<const void*>(kernel), smem);
    kernel<<<grid_for(items), kThreads, smem, s>>>(a, items);
    CUDA_LAUNCH_CHECK();
}

}  // namespace

// Taking turns pays in dQ's walk and not in dK/dV's, whose warpgroups wait on their own products at
// every tile anyway. Stages: dQ's four were no faster than three, dK/dV's six than four.
void backward_ws(const BwdArgs& a, const AttnPlan& plan, int B, cudaStream_t s) {
    if (a.C / a.NH != 64 || plan.block != kKeys)
        fail("backward_ws: takes head size 64 with blocks of " + std::to_string(kKeys) + " only");
    const Items items = items_for(plan, a.T, a.NH, B);
    for_each_component(plan, a, [&](const BwdArgs& ak) {
        launch(dkv_ws_kernel, DkvSmem::bytes, ak, items, s);
        launch(dq_ws_kernel, DqSmem::bytes, ak, items, s);
    });
}

}  // namespace st::gpu
