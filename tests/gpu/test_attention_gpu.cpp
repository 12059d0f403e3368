// GPU block-sparse attention against the CPU kernel run in float64 on the same bf16-rounded inputs:
// every pattern and head mode, head sizes 32/64/128, blocks 64/128, lengths that end inside a
// block. Outputs are poisoned (NaN) first, so an unwritten element fails; the backward must give
// the same bits twice.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <vector>

#include "kernels/attention.h"
#include "kernels/check.h"
#include "cpu/attention.h"
#include "gpu.h"

using namespace st;
using st::gpu::bf16;

namespace {

struct Case {
    AttnSpec spec;
    int layer, B, T, NH, D;
};

std::string describe(const Case& k) {
    std::ostringstream o;
    o << pattern_name(k.spec.pattern) << " " << head_mode_name(k.spec.mode) << " l " << k.spec.stride << " c "
      << k.spec.summary << " block " << k.spec.block << " layer " << k.layer << " B " << k.B << " T " << k.T << " NH "
      << k.NH << " D " << k.D;
    return o.str();
}

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
        if (std::isinf(ref[i])) continue;   // -inf log-sum-exp of an empty set: equal above
        num += (x[i] - ref[i]) * (x[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return std::sqrt(num / std::max(den, 1e-300));
}

void check_case(const Case& k, std::mt19937& rng) {
    INFO(describe(k) << (gpu::attention_wgmma() ? " (wgmma kernels where they take the shape)" : " (mma.sync kernels)"));
    const int C = k.NH * k.D, T = k.T, B = k.B;
    const size_t N = size_t(B) * T;
    LayerLayout lay = layout_build(k.spec, T, k.NH, k.layer);
    gpu::AttnPlan plan(lay);
    std::vector<double> qkv_d, dout_d;
    // Scores of a few units (sd 1 entries, D terms, scaled by 1/sqrt(D)): softmax neither flat nor one-hot.
    std::vector<bf16> qkv = random_bf16(N * 3 * C, 1.0, rng, &qkv_d);
    std::vector<bf16> dout = random_bf16(N * C, 1.0, rng, &dout_d);

    std::vector<double> out_ref(N * C), lse_ref(size_t(B) * k.NH * T), dqkv_ref(N * 3 * C, 0.0);
    attention_forward(out_ref.data(), lse_ref.data(), qkv_d.data(), lay, B, T, C, k.NH);
    attention_backward(dqkv_ref.data(), dout_d.data(), qkv_d.data(), out_ref.data(), lse_ref.data(), lay, B, T, C, k.NH);

    DeviceBuffer<bf16> d_qkv(qkv), d_dout(dout), d_out(N * C), d_dqkv(N * 3 * C);
    DeviceBuffer<float> d_lse(size_t(B) * k.NH * T), d_dsum(size_t(B) * k.NH * T);
    d_out.poison();
    d_lse.poison();
    d_dqkv.poison();
    gpu::attention_forward(d_out.get(), d_lse.get(), d_qkv.get(), plan, B, T, C, k.NH, nullptr);
    gpu::attention_backward(d_dqkv.get(), d_dout.get(), d_qkv.get(), d_out.get(), d_lse.get(), d_dsum.get(), plan, B, T,
                            C, k.NH, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<bf16> out = d_out.download(), dqkv = d_dqkv.download();
    std::vector<float> lse = d_lse.download();
    std::vector<double> lse_d(lse.begin(), lse.end());
    CHECK(rel_err(to_double(out), out_ref) < 1e-2);
    CHECK(rel_err(lse_d, lse_ref) < 1e-3);
    CHECK(rel_err(to_double(dqkv), dqkv_ref) < 2e-2);

    d_dqkv.poison();
    gpu::attention_backward(d_dqkv.get(), d_dout.get(), d_qkv.get(), d_out.get(), d_lse.get(), d_dsum.get(), plan, B, T,
                            C, k.NH, nullptr);
    std::vector<bf16> again = d_dqkv.download();
    CHECK(std::memcmp(again.data(), dqkv.data(), dqkv.size() * sizeof(bf16)) == 0);
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
                    k.spec.stride = p == Pattern::local ? 100 : 64;   // l: windows that are not whole blocks too
                    k.spec.summary = 16;
                    k.NH = D == 128 ? 2 : 4;
                    k.D = D;
                    k.B = 2;
                    k.T = (n % 3 == 0) ? 512 : (n % 3 == 1 ? 449 : 1000);
                    for (int layer : {0, 1}) {
                        k.layer = layer;
                        check_case(k, rng);
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
    k.D = 64;
    k.B = 2;
    k.T = 4096;
    k.layer = 0;
    check_case(k, rng);
    k.T = 37;
    check_case(k, rng);
}

// Runs check with each set of kernels the device has (Hopper: wgmma too), then restores the default.
template <class F>
void each_kernel_set(F check) {
    for (bool wgmma : gpu::attention_wgmma_supported() ? std::vector<bool>{false, true} : std::vector<bool>{false}) {
        gpu::attention_use_wgmma(wgmma);
        check();
    }
    gpu::attention_default_kernels();
}

}  // namespace

TEST_CASE("GPU attention matches the CPU kernel for every pattern, mode, head size and block", "[gpu]") {
    ST_REQUIRE_GPU();
    std::mt19937 rng(1234);
    each_kernel_set([&] { check_all(rng); });
}

TEST_CASE("GPU attention: long strided rows in transposed order and a one-block sequence", "[gpu]") {
    ST_REQUIRE_GPU();
    std::mt19937 rng(99);
    each_kernel_set([&] { check_long_and_short(rng); });
}
