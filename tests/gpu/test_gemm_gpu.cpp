// gpu::Gemm (cuBLASLt) against libst/cpu's linear layers in double on the same bf16 inputs: every
// epilogue, shapes whose N is no multiple of 16, accumulation into fp32 gradients, the same bits
// on a second run, and a clear error for shapes it does not take.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "cpu/ops.h"
#include "gpu.h"
#include "kernels/gemm.h"

using namespace st;
using namespace st::test;

namespace {

const cudaStream_t kStream = nullptr;

struct Shape {
    int64_t N;
    int IC, OC;
};
const Shape kShapes[] = {{1, 8, 8}, {37, 24, 40}, {300, 128, 384}, {1001, 256, 96}};

std::vector<double> minus(const std::vector<float>& a, const std::vector<float>& b) {
    std::vector<double> d(a.size());
    for (size_t i = 0; i < a.size(); i++) d[i] = double(a[i]) - double(b[i]);
    return d;
}

// Column sums of x (rows, cols).
std::vector<double> column_sums(const std::vector<double>& x, int64_t rows, int cols) {
    std::vector<double> s(cols, 0.0);
    for (int64_t r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) s[c] += x[r * cols + c];
    return s;
}

}  // namespace

TEST_CASE("GPU Gemm forward matches the CPU linear layer, with bias and GELU epilogues", "[gpu]") {
    ST_REQUIRE_GPU();
    gpu::Gemm gemm;
    for (const Shape& s : kShapes)
        for (bool has_bias : {false, true})
            for (bool gelu : {false, true}) {
                INFO("N " << s.N << " IC " << s.IC << " OC " << s.OC << " bias " << has_bias << " gelu " << gelu);
                const uint64_t seed = uint64_t(s.N * 7 + s.IC);
                const auto inp = to_bf16(random_floats(s.N * s.IC, seed));
                const auto w = to_bf16(random_floats(size_t(s.OC) * s.IC, seed + 1, 1.0 / std::sqrt(s.IC)));
                const auto bias = to_bf16(random_floats(s.OC, seed + 2, 0.5));
                const auto inp_d = to_double(inp), w_d = to_double(w), bias_d = to_double(bias);
                std::vector<double> pre(s.N * s.OC), out_ref(s.N * s.OC);
                linear_forward(pre.data(), inp_d.data(), w_d.data(), has_bias ? bias_d.data() : nullptr, s.N, s.IC,
                               s.OC);
                if (gelu)
                    gelu_forward(out_ref.data(), pre.data(), s.N * s.OC);
                else
                    out_ref = pre;

                DeviceBuffer<bf16> d_inp(inp), d_w(w), d_bias(bias), d_out(s.N * s.OC), d_aux(s.N * s.OC);
                auto run = [&] {
                    d_out.poison(), d_aux.poison();
                    gemm.forward(d_out.get(), d_inp.get(), d_w.get(), has_bias ? d_bias.get() : nullptr, s.N, s.IC,
                                 s.OC, gelu ? d_aux.get() : nullptr, kStream);
                    return std::make_pair(d_out.download(), d_aux.download());
                };
                auto [out, aux] = run();
                CHECK(rel_error(out, out_ref) < kTolBf16);
                if (gelu) CHECK(rel_error(aux, pre) < kTolBf16);
                auto [out2, aux2] = run();
                CHECK(same_bits(out, out2));
                if (gelu) CHECK(same_bits(aux, aux2));
            }
}

TEST_CASE("GPU Gemm backward_input matches the CPU, plain and through the GELU with its bias gradient", "[gpu]") {
    ST_REQUIRE_GPU();
    gpu::Gemm gemm;
    for (const Shape& s : kShapes) {
        INFO("N " << s.N << " IC " << s.IC << " OC " << s.OC);
        const uint64_t seed = uint64_t(s.N * 11 + s.OC);
        const auto dout = to_bf16(random_floats(s.N * s.OC, seed));
        const auto w = to_bf16(random_floats(size_t(s.OC) * s.IC, seed + 1, 1.0 / std::sqrt(s.OC)));
        const auto aux = to_bf16(random_floats(s.N * s.IC, seed + 2, 2.0));  // pre-GELU values of the layer below
        const auto dbias0 = random_floats(s.IC, seed + 3);
        const auto dout_d = to_double(dout), w_d = to_double(w), aux_d = to_double(aux);
        // dinp = dout . W through linear_backward (its dweight, of an unused input, is discarded).
        std::vector<double> dpre(s.N * s.IC, 0.0), dw_unused(size_t(s.OC) * s.IC, 0.0), dinp_gelu(s.N * s.IC);
        linear_backward(dpre.data(), dw_unused.data(), static_cast<double*>(nullptr), dout_d.data(), aux_d.data(),
                        w_d.data(), s.N, s.IC, s.OC);
        gelu_backward(dinp_gelu.data(), aux_d.data(), dpre.data(), s.N * s.IC);
        const auto dbias_ref = column_sums(dinp_gelu, s.N, s.IC);

        DeviceBuffer<bf16> d_dout(dout), d_w(w), d_aux(aux), d_dinp(s.N * s.IC);
        DeviceBuffer<float> d_dbias(s.IC);
        auto run = [&](bool gelu, bool dbias) {
            d_dinp.poison();
            d_dbias.upload(dbias0);
            gemm.backward_input(d_dinp.get(), d_dout.get(), d_w.get(), s.N, s.IC, s.OC, gelu ? d_aux.get() : nullptr,
                                dbias ? d_dbias.get() : nullptr, kStream);
            return std::make_pair(d_dinp.download(), d_dbias.download());
        };
        auto [plain, unused] = run(false, false);
        CHECK(rel_error(plain, dpre) < kTolBf16);
        CHECK(same_bits(plain, run(false, false).first));

        auto [dinp, dbias] = run(true, true);
        CHECK(rel_error(dinp, dinp_gelu) < kTolBf16);
        CHECK(rel_error(minus(dbias, dbias0), dbias_ref) < kTolBf16);
        auto [dinp2, dbias2] = run(true, true);
        CHECK(same_bits(dinp, dinp2));
        CHECK(same_bits(dbias, dbias2));
        // Without the bias gradient: the same dinp, and the gradient untouched.
        auto [dinp3, dbias3] = run(true, false);
        CHECK(same_bits(dinp, dinp3));
        CHECK(same_bits(dbias3, dbias0));
    }
}

TEST_CASE("GPU Gemm backward_weight accumulates into fp32 gradients, with and without dbias", "[gpu]") {
    ST_REQUIRE_GPU();
    gpu::Gemm gemm;
    for (const Shape& s : kShapes)
        for (bool has_bias : {false, true}) {
            INFO("N " << s.N << " IC " << s.IC << " OC " << s.OC << " dbias " << has_bias);
            const uint64_t seed = uint64_t(s.N * 13 + s.IC * 3 + s.OC);
            const auto dout = to_bf16(random_floats(s.N * s.OC, seed));
            const auto inp = to_bf16(random_floats(s.N * s.IC, seed + 1));
            const auto dw0 = random_floats(size_t(s.OC) * s.IC, seed + 2), db0 = random_floats(s.OC, seed + 3);
            const auto dout_d = to_double(dout), inp_d = to_double(inp);
            std::vector<double> dw_ref(size_t(s.OC) * s.IC, 0.0), db_ref(s.OC, 0.0);
            linear_backward(static_cast<double*>(nullptr), dw_ref.data(), db_ref.data(), dout_d.data(), inp_d.data(),
                            static_cast<const double*>(nullptr), s.N, s.IC, s.OC);
            for (auto& v : dw_ref) v *= 2;  // two calls
            for (auto& v : db_ref) v *= 2;

            DeviceBuffer<bf16> d_dout(dout), d_inp(inp);
            DeviceBuffer<float> d_dw(dw0), d_db(db0);
            auto run = [&] {
                d_dw.upload(dw0), d_db.upload(db0);
                for (int k = 0; k < 2; k++)
                    gemm.backward_weight(d_dw.get(), has_bias ? d_db.get() : nullptr, d_dout.get(), d_inp.get(), s.N,
                                         s.IC, s.OC, kStream);
                return std::make_pair(d_dw.download(), d_db.download());
            };
            auto [dw, db] = run();
            CHECK(rel_error(minus(dw, dw0), dw_ref) < 1e-4);  // bf16 products are exact; fp32 sums of N terms
            if (has_bias)
                CHECK(rel_error(minus(db, db0), db_ref) < kTolF32);
            else
                CHECK(same_bits(db, db0));
            auto [dw2, db2] = run();
            CHECK(same_bits(dw, dw2));
            CHECK(same_bits(db, db2));
        }
}

TEST_CASE("GPU Gemm refuses sizes that are not multiples of 8", "[gpu]") {
    ST_REQUIRE_GPU();
    gpu::Gemm gemm;
    DeviceBuffer<bf16> a(64 * 64), b(64 * 64), c(64 * 64);
    CHECK_THROWS_AS(gemm.forward(c.get(), a.get(), b.get(), nullptr, 4, 12, 16, nullptr, kStream), Error);
    CHECK_THROWS_AS(gemm.backward_input(c.get(), a.get(), b.get(), 4, 16, 20, nullptr, nullptr, kStream), Error);
    CHECK_THROWS_AS(gemm.forward(c.get(), a.get() + 1, b.get(), nullptr, 4, 16, 16, nullptr, kStream), Error);
}

TEST_CASE("cuBLASLt's GELU epilogues are the tanh approximation, as the CPU's", "[gpu]") {
    ST_REQUIRE_GPU();
    // An identity weight hands the epilogue exact pre-activations: a grid over [-4, 4], where the
    // tanh and erf forms of GELU differ by up to 5e-4, far above bf16 rounding in the tails.
    const int C = 8;
    const int64_t N = 128;
    std::vector<float> grid(N * C), eye(C * C, 0.0f), ones(N * C, 1.0f);
    for (int64_t i = 0; i < N * C; i++) grid[i] = -4.0f + 8.0f * float(i) / float(N * C);
    for (int c = 0; c < C; c++) eye[c * C + c] = 1.0f;
    const auto x = to_bf16(grid);
    const auto x_d = to_double(x);
    std::vector<double> tanh_y(N * C), tanh_dy(N * C), erf_y(N * C), erf_dy(N * C);
    gelu_forward(tanh_y.data(), x_d.data(), N * C);
    gelu_backward(tanh_dy.data(), x_d.data(), std::vector<double>(N * C, 1.0).data(), N * C);
    for (int64_t i = 0; i < N * C; i++) {
        const double v = x_d[i], cdf = 0.5 * (1 + std::erf(v / std::sqrt(2.0)));
        erf_y[i] = v * cdf;
        erf_dy[i] = cdf + v * std::exp(-0.5 * v * v) / std::sqrt(2 * M_PI);
    }

    gpu::Gemm gemm;
    DeviceBuffer<bf16> d_x(x), d_eye(to_bf16(eye)), d_ones(to_bf16(ones)), d_y(N * C), d_aux(N * C), d_dx(N * C);
    d_y.poison(), d_aux.poison(), d_dx.poison();
    gemm.forward(d_y.get(), d_x.get(), d_eye.get(), nullptr, N, C, C, d_aux.get(), kStream);
    gemm.backward_input(d_dx.get(), d_ones.get(), d_eye.get(), N, C, C, d_x.get(), nullptr, kStream);
    const auto y = d_y.download(), dx = d_dx.download();
    CHECK(same_bits(d_aux.download(), x));
    // The mean elementwise relative error: a norm would be all large values, where the forms agree.
    auto mean_rel = [](const std::vector<bf16>& out, const std::vector<double>& ref) {
        double sum = 0;
        int n = 0;
        for (size_t i = 0; i < ref.size(); i++)
            if (std::fabs(ref[i]) > 1e-3) sum += std::fabs(as_double(out[i]) - ref[i]) / std::fabs(ref[i]), n++;
        return sum / n;
    };
    const double fwd_tanh = mean_rel(y, tanh_y), fwd_erf = mean_rel(y, erf_y);
    const double bwd_tanh = mean_rel(dx, tanh_dy), bwd_erf = mean_rel(dx, erf_dy);
    WARN("mean relative error of cuBLASLt's GELU against the tanh form "
         << fwd_tanh << ", the erf form " << fwd_erf << "; of DGELU " << bwd_tanh << ", " << bwd_erf);
    CHECK(fwd_tanh < fwd_erf);
    CHECK(bwd_tanh < bwd_erf);
}
