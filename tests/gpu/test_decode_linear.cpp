// The decoding step's products (kernels/decode_linear.cu) against a float64 reference on the same
// bf16 weights: every epilogue, with and without the LayerNorm in front, at row counts below, at and
// above a CTA's chunk of 16, an IC that is not a multiple of a warp's 256-element stride and one past
// what a lane loads before the wait.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "gpu.h"
#include "kernels/decode.h"

using namespace st;
using namespace st::test;

namespace {

// x . w^T + bias with x = LayerNorm(x_f32) rounded to bf16 (as the kernel keeps it) when ln is set.
std::vector<double> reference(const std::vector<float>& x, const std::vector<bf16>& w, const std::vector<float>& bias,
                              const std::vector<float>& ln_w, const std::vector<float>& ln_b, bool ln, int N, int IC,
                              int OC) {
    std::vector<double> out(size_t(N) * OC);
    std::vector<double> row(static_cast<size_t>(IC));
    for (int n = 0; n < N; n++) {
        const float* xr = &x[size_t(n) * IC];
        if (ln) {
            double mean = 0, var = 0;
            for (int i = 0; i < IC; i++) mean += xr[i];
            mean /= IC;
            for (int i = 0; i < IC; i++) var += (xr[i] - mean) * (xr[i] - mean);
            const double rstd = 1 / std::sqrt(var / IC + 1e-5);
            for (int i = 0; i < IC; i++)
                row[size_t(i)] =
                    as_double(__float2bfloat16(float((xr[i] - mean) * rstd * ln_w[size_t(i)] + ln_b[size_t(i)])));
        } else {
            for (int i = 0; i < IC; i++) row[size_t(i)] = as_double(__float2bfloat16(xr[i]));
        }
        for (int o = 0; o < OC; o++) {
            double s = bias[size_t(o)];
            for (int i = 0; i < IC; i++) s += row[size_t(i)] * as_double(w[size_t(o) * IC + i]);
            out[size_t(n) * OC + o] = s;
        }
    }
    return out;
}

double gelu(double x) { return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

}  // namespace

TEST_CASE("GPU decoding products: LayerNorm in front, bias, GELU and residual after", "[gpu]") {
    ST_REQUIRE_GPU();
    const int OC = 40;
    // 264 = 256 + 8: a warp's second pass reads one lane's worth; 1288: past the prefetched 1024.
    for (int IC : {264, 1288})
        for (int N : {1, 5, 16, 21})
            for (bool ln : {false, true})
                for (gpu::DecodeEpilogue e : {gpu::DecodeEpilogue::bf16, gpu::DecodeEpilogue::gelu_bf16,
                                              gpu::DecodeEpilogue::residual_f32, gpu::DecodeEpilogue::f32}) {
                    const uint64_t seed = uint64_t(IC * 1000 + N * 100 + ln * 10 + int(e));
                    std::vector<float> x = random_floats(size_t(N) * IC, seed, 2.0),
                                       bias = random_floats(size_t(OC), seed + 1, 0.5);
                    std::vector<float> ln_w = random_floats(size_t(IC), seed + 2, 0.3),
                                       ln_b = random_floats(size_t(IC), seed + 3, 0.3);
                    for (auto& v : ln_w) v += 1;
                    std::vector<float> resid = random_floats(size_t(N) * OC, seed + 4);
                    std::vector<bf16> w = to_bf16(random_floats(size_t(OC) * IC, seed + 5, 0.1));
                    DeviceBuffer<float> x_d(x), bias_d(bias), lnw_d(ln_w), lnb_d(ln_b), resid_d(resid);
                    DeviceBuffer<bf16> xb_d(to_bf16(x)), w_d(w);
                    const bool f32_out = e == gpu::DecodeEpilogue::residual_f32 || e == gpu::DecodeEpilogue::f32;
                    DeviceBuffer<float> out32(size_t(N) * OC);
                    DeviceBuffer<bf16> out16(size_t(N) * OC);
                    out32.poison();
                    out16.poison();
                    gpu::DecodeLinear a;
                    if (ln)
                        a.in_f32 = x_d.get(), a.ln_w = lnw_d.get(), a.ln_b = lnb_d.get();
                    else
                        a.in = xb_d.get();
                    a.weight = w_d.get(), a.bias = bias_d.get(), a.resid = resid_d.get();
                    a.out = f32_out ? static_cast<void*>(out32.get()) : static_cast<void*>(out16.get());
                    a.N = N, a.IC = IC, a.OC = OC, a.epilogue = e;
                    gpu::decode_linear(a, nullptr);
                    CUDA_CHECK(cudaDeviceSynchronize());
                    std::vector<double> ref = reference(x, w, bias, ln_w, ln_b, ln, N, IC, OC);
                    for (size_t i = 0; i < ref.size(); i++) {
                        if (e == gpu::DecodeEpilogue::gelu_bf16) ref[i] = gelu(ref[i]);
                        if (e == gpu::DecodeEpilogue::residual_f32) ref[i] += resid[i];
                    }
                    INFO("IC " << IC << " N " << N << " layernorm " << ln << " epilogue " << int(e));
                    // fp32 outputs: the reference's bf16 rounding of the LayerNorm may differ from the
                    // kernel's (float) by one unit on a few elements, worth about 1e-5 here.
                    if (f32_out)
                        CHECK(rel_error(out32.download(), ref) < 1e-4);
                    else
                        CHECK(rel_error(out16.download(), ref) < kTolBf16);
                }
}
