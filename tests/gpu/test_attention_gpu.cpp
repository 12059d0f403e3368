// GPU block-sparse attention against the CPU kernel run in float64 on the same bf16-rounded inputs:
// every pattern and head mode, head sizes 32/64/128, blocks 64/128, lengths that end inside a
// block, on every kernel attention_kernel picks for the shape (as on any card, and as on a Hopper
// where the device is one). Outputs are poisoned (NaN) first, so an unwritten element fails; the
// backward must give the same bits twice.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <vector>

#include "../attention_case.h"
#include "cpu/attention.h"
#include "gpu.h"
#include "kernels/attention.h"
#include "kernels/check.h"

using namespace st;
using st::gpu::bf16;

namespace {

using Case = AttnCase;

// Values drawn from N(0, sd), rounded to bf16: the device gets the bf16 and the reference its exact value.
std::vector<bf16> random_bf16(size_t n, double sd, std::mt19937& rng, std::vector<double>* exact) {
    std::normal_distribution<float> g(0.f, float(sd));
    std::vector<bf16> v(n);
    exact->resize(n);
    for (size_t i = 0; i < n; i++) {
        v[i] = __float2bfloat16(g(rng));
        (*exact)[i] = double(__bfloat162float(v[i]));
    }
    return v;
}

std::vector<double> to_double(const std::vector<bf16>& v) {
    std::vector<double> d(v.size());
    for (size_t i = 0; i < v.size(); i++) d[i] = double(__bfloat162float(v[i]));
    return d;
}

double rel_err(const std::vector<double>& x, const std::vector<double>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); i++) {
        if (!std::isfinite(x[i]) && x[i] != ref[i]) return INFINITY;
        if (std::isinf(ref[i])) continue;  // -inf log-sum-exp of an empty set: equal above
        num += (x[i] - ref[i]) * (x[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return std::sqrt(num / std::max(den, 1e-300));
}

// The kernels of one case: the forward's and the backward's.
struct Kernels {
    gpu::AttnKernel fwd, bwd;
    bool operator==(const Kernels&) const = default;
};

void check_case(const Case& k, const Kernels& kk, std::mt19937& rng) {
    INFO(describe(k) << " on " << gpu::attention_kernel_name(kk.fwd) << " / " << gpu::attention_kernel_name(kk.bwd));
    const int C = k.C, T = k.T, B = k.B;
    const size_t N = size_t(B) * T;
    LayerLayout lay = layout_build(k.spec, T, k.NH, k.layer);
    gpu::AttnPlan plan(lay);
    std::vector<double> qkv_d, dout_d;
    // Scores of a few units (sd 1 entries, D terms, scaled by 1/sqrt(D)): softmax neither flat nor one-hot.
    std::vector<bf16> qkv = random_bf16(N * 3 * C, 1.0, rng, &qkv_d);
    std::vector<bf16> dout = random_bf16(N * C, 1.0, rng, &dout_d);

    std::vector<double> out_ref(N * C), lse_ref(size_t(B) * k.NH * T), dqkv_ref(N * 3 * C, 0.0);
    attention_forward(out_ref.data(), lse_ref.data(), qkv_d.data(), lay, B, T, C, k.NH);
    attention_backward(dqkv_ref.data(), dout_d.data(), qkv_d.data(), out_ref.data(), lse_ref.data(), lay, B, T, C,
                       k.NH);

    DeviceBuffer<bf16> d_qkv(qkv), d_dout(dout), d_out(N * C), d_dqkv(N * 3 * C);
    DeviceBuffer<float> d_lse(size_t(B) * k.NH * T), d_dsum(size_t(B) * k.NH * T);
    d_out.poison();
    d_lse.poison();
    d_dqkv.poison();
    gpu::attention_forward(kk.fwd, d_out.get(), d_lse.get(), d_qkv.get(), plan, B, T, C, k.NH, nullptr);
    gpu::attention_backward(kk.bwd, d_dqkv.get(), d_dout.get(), d_qkv.get(), d_out.get(), d_lse.get(), d_dsum.get(),
                            plan, B, T, C, k.NH, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<bf16> out = d_out.download(), dqkv = d_dqkv.download();
    std::vector<float> lse = d_lse.download();
    std::vector<double> lse_d(lse.begin(), lse.end());
    CHECK(rel_err(to_double(out), out_ref) < 1e-2);
    CHECK(rel_err(lse_d, lse_ref) < 1e-3);
    CHECK(rel_err(to_double(dqkv), dqkv_ref) < 2e-2);

    // Again with D made beforehand in two pieces, the second starting inside a window (the recomputing
    // engine's chunks): the same bits.
    d_dqkv.poison();
    d_dsum.poison();
    const int64_t h = int64_t(N) / 3;
    gpu::attention_dsum(d_dsum.get(), d_dout.get(), d_out.get(), 0, h, T, C, k.NH, nullptr);
    gpu::attention_dsum(d_dsum.get(), d_dout.get() + h * C, d_out.get() + h * C, h, int64_t(N) - h, T, C, k.NH,
                        nullptr);
    gpu::attention_backward(kk.bwd, d_dqkv.get(), d_dout.get(), d_qkv.get(), nullptr, d_lse.get(), d_dsum.get(), plan,
                            B, T, C, k.NH, nullptr);
    std::vector<bf16> again = d_dqkv.download();
    CHECK(std::memcmp(again.data(), dqkv.data(), dqkv.size() * sizeof(bf16)) == 0);
}

// Runs the case on each pair of kernels attention_kernel picks for its shape: the one of any sm_80+
// card, and the Hopper one where the device is a Hopper (skipped where it is the same pair).
void check_each_kernel(const Case& k, std::mt19937& rng) {
    std::vector<Kernels> runs;
    for (bool hopper : {false, true}) {
        if (hopper && !gpu::attention_hopper()) continue;
        const Kernels kk{gpu::attention_kernel(gpu::AttnPass::forward, k.head_size(), k.spec.block, hopper),
                         gpu::attention_kernel(gpu::AttnPass::backward, k.head_size(), k.spec.block, hopper)};
        if (std::find(runs.begin(), runs.end(), kk) == runs.end()) runs.push_back(kk);
    }
    for (const Kernels& kk : runs) check_case(k, kk, rng);
}

// Every pattern and mode, head sizes 32/64/128, blocks 64/128, lengths with whole and partial last blocks.
void check_all(std::mt19937& rng) {
    int n = 0;
    for (int block : {64, 128})
        for (int D : {32, 64, 128})
            for (Pattern p : {Pattern::dense, Pattern::local, Pattern::fixed, Pattern::strided})
                for (HeadMode mode : {HeadMode::interleaved, HeadMode::merged, HeadMode::multihead}) {
                    if (p == Pattern::dense && mode != HeadMode::merged) continue;
                    Case k;
                    k.spec.pattern = p;
                    k.spec.mode = mode;
                    k.spec.block = block;
                    k.spec.stride = p == Pattern::local ? 100 : 64;  // l: windows that are not whole blocks too
                    k.spec.summary = 16;
                    k.NH = D == 128 ? 2 : 4;
                    k.C = k.NH * D;
                    k.B = 2;
                    k.T = (n % 3 == 0) ? 512 : (n % 3 == 1 ? 449 : 1000);
                    for (int layer : {0, 1}) {
                        k.layer = layer;
                        check_each_kernel(k, rng);
                        if (mode != HeadMode::interleaved) break;
                    }
                    n++;
                }
}

// Long strided rows in transposed order, and a sequence shorter than one block. B 2: 512 blocks of a
// head and batch row, about four for each CTA of the persistent kernels (attention_ws.cuh) on a
// 132-SM card, so that their buffers are reused and their barriers' phases turn over.
void check_long_and_short(std::mt19937& rng) {
    Case k;
    k.spec.pattern = Pattern::strided;
    k.spec.mode = HeadMode::merged;
    k.spec.block = 128;
    k.spec.stride = 256;
    k.NH = 8;
    k.C = 8 * 64;
    k.B = 2;
    k.T = 4096;
    k.layer = 0;
    check_each_kernel(k, rng);
    k.T = 37;
    check_each_kernel(k, rng);
}

}  // namespace

TEST_CASE("GPU attention matches the CPU kernel for every pattern, mode, head size and block", "[gpu]") {
    ST_REQUIRE_GPU();
    std::mt19937 rng(1234);
    check_all(rng);
}

TEST_CASE("GPU attention: long strided rows in transposed order and a one-block sequence", "[gpu]") {
    ST_REQUIRE_GPU();
    std::mt19937 rng(99);
    check_long_and_short(rng);
}

TEST_CASE("the attention kernel rule is kernels/attention_kernel.h's table", "[attention]") {
    using gpu::AttnKernel, gpu::AttnPass;
    const auto pick = [](AttnPass pass, int D, int block, bool hopper) {
        return gpu::attention_kernel(pass, D, block, hopper);
    };
    for (AttnPass pass : {AttnPass::forward, AttnPass::backward})
        for (int D : {32, 64, 128})
            for (int block : {64, 128}) {
                CHECK(pick(pass, D, block, false) == AttnKernel::mma);  // an A100
                // Every kernel that runs a shape has code for it, and only mma has code where it never runs.
                for (AttnKernel k : {AttnKernel::mma, AttnKernel::wgmma, AttnKernel::ws})
                    CHECK(gpu::attention_kernel_takes(k, pass, D, block) ==
                          (k == AttnKernel::mma || pick(pass, D, block, true) == k));
            }
    // On a Hopper (H100, H200).
    for (AttnPass pass : {AttnPass::forward, AttnPass::backward}) {
        CHECK(pick(pass, 32, 64, true) == AttnKernel::mma);
        CHECK(pick(pass, 32, 128, true) == AttnKernel::mma);
        CHECK(pick(pass, 64, 64, true) == AttnKernel::wgmma);
        CHECK(pick(pass, 64, 128, true) == AttnKernel::ws);
        CHECK(pick(pass, 128, 64, true) == AttnKernel::wgmma);
        CHECK(pick(pass, 128, 128, true) == AttnKernel::wgmma);
    }
}

TEST_CASE("a GPU plan holds the heads of one rule once", "[attention]") {
    const auto bytes = [](Pattern p, HeadMode mode, int heads) {
        AttnSpec s;
        s.pattern = p;
        s.mode = mode;
        s.stride = 256;
        s.summary = 16;
        s.block = 64;
        return gpu::AttnPlan::bytes_for(layout_build(s, 4096, heads, 0));
    };
    // Strided, merged: two components a head, alike in every head; only the per-head descriptors grow.
    CHECK(bytes(Pattern::strided, HeadMode::merged, 4) ==
          bytes(Pattern::strided, HeadMode::merged, 1) + 3 * 2 * sizeof(gpu::AttnPartDev));
    // Fixed: each head its own summary columns (attn_summary), so its own component.
    CHECK(bytes(Pattern::fixed, HeadMode::merged, 4) > 3 * bytes(Pattern::fixed, HeadMode::merged, 1));
}

TEST_CASE("GPU attention refuses a kernel that has no code for the shape, in one line", "[gpu]") {
    ST_REQUIRE_GPU();
    LayerLayout lay = layout_build(AttnSpec{}, 256, 4, 0);
    gpu::AttnPlan plan(lay);
    const int B = 1, T = 256, NH = 4, C = NH * 32;
    DeviceBuffer<bf16> qkv(size_t(B) * T * 3 * C), out(size_t(B) * T * C);
    DeviceBuffer<float> lse(size_t(B) * NH * T);
    // Head size 32: the warp-specialised kernels take 64 alone.
    CHECK_THROWS_WITH(
        gpu::attention_forward(gpu::AttnKernel::ws, out.get(), lse.get(), qkv.get(), plan, B, T, C, NH, nullptr),
        Catch::Contains("no kernel for head size 32") || Catch::Contains("need a Hopper"));
}
