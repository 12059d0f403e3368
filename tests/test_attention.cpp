// CPU block-sparse attention against a naive dense masked reference (double), finite differences for
// the backward, and bitwise determinism. The mask is attn_allowed, which tests/test_layout.cpp checks
// against the paper's sets (Child et al. 2019, section 4) written out independently.
#include <catch2/catch.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "attention_case.h"
#include "cpu/attention.h"
#include "error.h"
#include "layout.h"

using namespace st;

namespace {

using Case = AttnCase;

std::vector<double> randn(size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> g(0.0, 1.0);
    std::vector<double> x(n);
    for (double& v : x) v = g(rng);
    return x;
}

// softmax(q k^T / sqrt(Dh)) v over each query's allowed keys, one query at a time.
void reference_forward(std::vector<double>* out, std::vector<double>* lse, const std::vector<double>& qkv,
                       const Case& k) {
    const int Dh = k.C / k.NH, T = k.T, C = k.C;
    out->assign(size_t(k.B) * T * C, 0.0);
    lse->assign(size_t(k.B) * k.NH * T, 0.0);
    std::vector<double> s(static_cast<size_t>(T));
    for (int b = 0; b < k.B; b++)
        for (int h = 0; h < k.NH; h++)
            for (int i = 0; i < T; i++) {
                const double* q = &qkv[(size_t(b) * T + i) * 3 * C + h * Dh];
                double mx = -std::numeric_limits<double>::infinity();
                for (int j = 0; j < T; j++) {
                    s[size_t(j)] = -std::numeric_limits<double>::infinity();
                    if (!attn_allowed(k.spec, k.NH, k.layer, h, i, j)) continue;
                    const double* kk = &qkv[(size_t(b) * T + j) * 3 * C + C + h * Dh];
                    double dot = 0;
                    for (int d = 0; d < Dh; d++) dot += q[d] * kk[d];
                    s[size_t(j)] = dot / std::sqrt(double(Dh));
                    mx = std::max(mx, s[size_t(j)]);
                }
                double* o = &(*out)[(size_t(b) * T + i) * C + h * Dh];
                double& l = (*lse)[(size_t(b) * k.NH + h) * T + i];
                if (mx == -std::numeric_limits<double>::infinity()) {
                    l = mx;
                    continue;
                }
                double sum = 0;
                for (int j = 0; j < T; j++) sum += std::exp(s[size_t(j)] - mx);
                for (int j = 0; j < T; j++) {
                    const double p = std::exp(s[size_t(j)] - mx) / sum;
                    const double* v = &qkv[(size_t(b) * T + j) * 3 * C + 2 * C + h * Dh];
                    for (int d = 0; d < Dh; d++) o[d] += p * v[d];
                }
                l = mx + std::log(sum);
            }
}

// The gradient of sum(out * g) by the textbook formulas, one query at a time (+= into dqkv).
void reference_backward(std::vector<double>* dqkv, const std::vector<double>& g, const std::vector<double>& qkv,
                        const std::vector<double>& lse, const Case& k) {
    const int Dh = k.C / k.NH, T = k.T, C = k.C;
    const double scale = 1 / std::sqrt(double(Dh));
    auto at = [&](int b, int t, int part, int h) { return (size_t(b) * T + t) * 3 * C + part * C + h * Dh; };
    std::vector<double> p(static_cast<size_t>(T)), dp(static_cast<size_t>(T));
    for (int b = 0; b < k.B; b++)
        for (int h = 0; h < k.NH; h++)
            for (int i = 0; i < T; i++) {
                const double* gi = &g[(size_t(b) * T + i) * C + h * Dh];
                const double l = lse[(size_t(b) * k.NH + h) * T + i];
                double D = 0;
                for (int j = 0; j < T; j++) {
                    p[size_t(j)] = dp[size_t(j)] = 0;
                    if (!attn_allowed(k.spec, k.NH, k.layer, h, i, j)) continue;
                    double s = 0, d = 0;
                    for (int e = 0; e < Dh; e++) {
                        s += qkv[at(b, i, 0, h) + e] * qkv[at(b, j, 1, h) + e];
                        d += gi[e] * qkv[at(b, j, 2, h) + e];
                    }
                    p[size_t(j)] = std::exp(s * scale - l);
                    dp[size_t(j)] = d;
                    D += p[size_t(j)] * d;
                }
                for (int j = 0; j < T; j++) {
                    if (p[size_t(j)] == 0) continue;
                    const double ds = p[size_t(j)] * (dp[size_t(j)] - D) * scale;
                    for (int e = 0; e < Dh; e++) {
                        (*dqkv)[at(b, i, 0, h) + e] += ds * qkv[at(b, j, 1, h) + e];
                        (*dqkv)[at(b, j, 1, h) + e] += ds * qkv[at(b, i, 0, h) + e];
                        (*dqkv)[at(b, j, 2, h) + e] += p[size_t(j)] * gi[e];
                    }
                }
            }
}

double max_abs(const std::vector<double>& x) {
    double m = 0;
    for (double v : x)
        if (std::isfinite(v)) m = std::max(m, std::abs(v));
    return m;
}

// max |a - b| with matching infinities counting as equal (empty sets have lse -inf).
template <class A> double max_diff(const std::vector<A>& a, const std::vector<double>& b) {
    double m = 0;
    for (size_t i = 0; i < b.size(); i++) {
        if (std::isinf(b[i]) && double(a[i]) == b[i]) continue;
        const double d = std::abs(double(a[i]) - b[i]);
        m = std::max(m, std::isnan(d) ? std::numeric_limits<double>::infinity() : d);
    }
    return m;
}

template <class F> void run_forward(std::vector<F>* out, std::vector<F>* lse, const std::vector<F>& qkv,
                                    const LayerLayout& lay, const Case& k) {
    out->assign(size_t(k.B) * k.T * k.C, F(0));
    lse->assign(size_t(k.B) * k.NH * k.T, F(0));
    attention_forward(out->data(), lse->data(), qkv.data(), lay, k.B, k.T, k.C, k.NH);
}

// Every pattern and mode on a few geometries: T below, at and off multiples of the block and stride.
std::vector<Case> forward_cases() {
    struct Geometry {
        int stride, summary, block, T, layer, NH, Dh;
    };
    const Geometry geometries[] = {
        {16, 4, 32, 96, 0, 2, 8},   {16, 4, 32, 96, 1, 4, 8},     {24, 8, 32, 77, 1, 2, 12}, {16, 8, 64, 40, 0, 2, 16},
        {32, 8, 64, 200, 1, 4, 16}, {128, 32, 128, 300, 1, 4, 8}, {8, 2, 32, 1, 0, 2, 8},
    };
    std::vector<Case> cases;
    for (Pattern pat : {Pattern::dense, Pattern::local, Pattern::strided, Pattern::fixed})
        for (HeadMode mode : {HeadMode::interleaved, HeadMode::merged, HeadMode::multihead})
            for (Geometry g : geometries)
                cases.push_back(
                    {AttnSpec{pat, mode, g.stride, g.summary, g.block}, g.layer, 2, g.T, g.NH * g.Dh, g.NH});
    return cases;
}

}  // namespace

TEST_CASE("attention_forward equals dense masked attention", "[attention]") {
    // Double: 1e-5 absolute (out is O(1): a mix of N(0, 1) values; lse is O(log T)).
    // Float: 1e-5 relative to the largest |value| of the tensor (out or lse).
    double worst_double = 0, worst_float = 0;
    for (const Case& k : forward_cases()) {
        INFO(describe(k));
        const LayerLayout lay = layout_build(k.spec, k.T, k.NH, k.layer);
        const std::vector<double> qkv = randn(size_t(k.B) * k.T * 3 * k.C, 1);
        std::vector<double> ref_out, ref_lse;
        reference_forward(&ref_out, &ref_lse, qkv, k);

        std::vector<double> out, lse;
        run_forward(&out, &lse, qkv, lay, k);
        const double d_out = max_diff(out, ref_out), d_lse = max_diff(lse, ref_lse);
        CHECK(d_out < 1e-5);
        CHECK(d_lse < 1e-5);
        worst_double = std::max({worst_double, d_out, d_lse});

        std::vector<float> qkv_f(qkv.begin(), qkv.end()), out_f, lse_f;
        run_forward(&out_f, &lse_f, qkv_f, lay, k);
        const double r_out = max_diff(out_f, ref_out) / std::max(max_abs(ref_out), 1e-30);
        const double r_lse = max_diff(lse_f, ref_lse) / std::max(max_abs(ref_lse), 1e-30);
        CHECK(r_out < 1e-5);
        CHECK(r_lse < 1e-5);
        worst_float = std::max({worst_float, r_out, r_lse});
    }
    WARN("forward: worst double difference " << worst_double << ", worst float relative difference " << worst_float);
}

TEST_CASE("attention_backward equals the dense masked gradient", "[attention]") {
    // Every forward case. Double: 1e-9 relative to the largest gradient; float: 1e-4.
    double worst_double = 0, worst_float = 0;
    for (const Case& k : forward_cases()) {
        INFO(describe(k));
        const LayerLayout lay = layout_build(k.spec, k.T, k.NH, k.layer);
        const std::vector<double> qkv = randn(size_t(k.B) * k.T * 3 * k.C, 6), g = randn(size_t(k.B) * k.T * k.C, 7);
        std::vector<double> out, lse;
        reference_forward(&out, &lse, qkv, k);
        std::vector<double> ref(qkv.size(), 0.0);
        reference_backward(&ref, g, qkv, lse, k);
        const double scale = std::max(max_abs(ref), 1e-30);

        std::vector<double> grad(qkv.size(), 0.0);
        attention_backward(grad.data(), g.data(), qkv.data(), out.data(), lse.data(), lay, k.B, k.T, k.C, k.NH);
        const double d = max_diff(grad, ref) / scale;
        CHECK(d < 1e-9);
        worst_double = std::max(worst_double, d);

        const std::vector<float> qkv_f(qkv.begin(), qkv.end()), g_f(g.begin(), g.end());
        std::vector<float> out_f, lse_f, grad_f(qkv.size(), 0.0f);
        run_forward(&out_f, &lse_f, qkv_f, lay, k);
        attention_backward(grad_f.data(), g_f.data(), qkv_f.data(), out_f.data(), lse_f.data(), lay, k.B, k.T, k.C,
                           k.NH);
        const double f = max_diff(grad_f, ref) / scale;
        CHECK(f < 1e-4);
        worst_float = std::max(worst_float, f);
    }
    WARN("backward: worst double relative difference " << worst_double << ", float " << worst_float);
}

TEST_CASE("attention_backward matches central finite differences", "[attention]") {
    // Loss sum(out * G): its gradient is attention_backward with dout = G. Relative error
    // max|analytic - numeric| / max(max|numeric|, tiny) below 1e-6, in double.
    struct Setup {
        Pattern pattern;
        HeadMode mode;
        int layer, T, block;
    };
    std::vector<Setup> setups;
    for (Pattern pat : {Pattern::dense, Pattern::local, Pattern::strided, Pattern::fixed})
        for (HeadMode mode : {HeadMode::interleaved, HeadMode::merged, HeadMode::multihead}) {
            setups.push_back({pat, mode, 0, 96, 32});
            if (mode == HeadMode::interleaved && (pat == Pattern::strided || pat == Pattern::fixed))
                setups.push_back({pat, mode, 1, 96, 32});
        }
    setups.push_back({Pattern::strided, HeadMode::merged, 0, 100, 64});  // partial blocks, both components
    setups.push_back({Pattern::fixed, HeadMode::merged, 0, 100, 64});

    double worst = 0;
    for (const Setup& u : setups) {
        const Case k{AttnSpec{u.pattern, u.mode, 16, 4, u.block}, u.layer, 2, u.T, 16, 2};
        INFO(describe(k));
        const LayerLayout lay = layout_build(k.spec, k.T, k.NH, k.layer);
        std::vector<double> qkv = randn(size_t(k.B) * k.T * 3 * k.C, 2);
        const std::vector<double> g = randn(size_t(k.B) * k.T * k.C, 3);
        std::vector<double> out, lse;
        run_forward(&out, &lse, qkv, lay, k);

        // Starts from 0.5 everywhere to check that the backward accumulates.
        std::vector<double> grad(qkv.size(), 0.5);
        attention_backward(grad.data(), g.data(), qkv.data(), out.data(), lse.data(), lay, k.B, k.T, k.C, k.NH);

        // The part of the loss that input i moves: its batch row's.
        const size_t row = size_t(k.T) * 3 * k.C;
        std::vector<double> out1(size_t(k.T) * k.C), lse1(size_t(k.NH) * k.T);
        auto loss = [&](size_t i) {
            const size_t b = i / row;
            attention_forward(out1.data(), lse1.data(), qkv.data() + b * row, lay, 1, k.T, k.C, k.NH);
            double s = 0;
            for (size_t j = 0; j < out1.size(); j++) s += out1[j] * g[b * out1.size() + j];
            return s;
        };
        // A random 1/32 of the inputs (q, k and v of every head, position and batch row alike), on one
        // thread: the many tiny forwards would mostly be OpenMP start-up. The reference comparison
        // below covers every input.
        std::mt19937 pick(unsigned(u.T * 31 + int(u.pattern) * 7 + int(u.mode) + u.layer));
        std::uniform_int_distribution<size_t> any(0, qkv.size() - 1);
        const int threads = omp_get_max_threads();
        omp_set_num_threads(1);
        const double eps = 1e-5;
        double err = 0, scale = 0;
        for (size_t n = 0; n < qkv.size() / 32; n++) {
            const size_t i = any(pick);
            const double x = qkv[i];
            qkv[i] = x + eps;
            const double up = loss(i);
            qkv[i] = x - eps;
            const double down = loss(i);
            qkv[i] = x;
            const double numeric = (up - down) / (2 * eps);
            err = std::max(err, std::abs((grad[i] - 0.5) - numeric));
            scale = std::max(scale, std::abs(numeric));
        }
        omp_set_num_threads(threads);
        const double rel = err / std::max(scale, 1e-30);
        CHECK(rel < 1e-6);
        worst = std::max(worst, rel);
    }
    WARN("backward: worst relative error against finite differences " << worst);
}

TEST_CASE("attention_backward is deterministic", "[attention]") {
    // Float, several (batch, head) pairs per thread; two runs, and one on a single thread, bit for bit.
    const Case k{AttnSpec{Pattern::fixed, HeadMode::merged, 64, 16, 64}, 0, 3, 700, 64, 4};
    const LayerLayout lay = layout_build(k.spec, k.T, k.NH, k.layer);
    const std::vector<double> x = randn(size_t(k.B) * k.T * 3 * k.C, 4), y = randn(size_t(k.B) * k.T * k.C, 5);
    const std::vector<float> qkv(x.begin(), x.end()), g(y.begin(), y.end());
    std::vector<float> out, lse;
    run_forward(&out, &lse, qkv, lay, k);
    auto backward = [&] {
        std::vector<float> grad(qkv.size(), 0.0f);
        attention_backward(grad.data(), g.data(), qkv.data(), out.data(), lse.data(), lay, k.B, k.T, k.C, k.NH);
        return grad;
    };
    const std::vector<float> first = backward(), second = backward();
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const std::vector<float> single = backward();
    omp_set_num_threads(threads);
    CHECK(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(first.data(), single.data(), first.size() * sizeof(float)) == 0);
    CHECK(max_abs(std::vector<double>(first.begin(), first.end())) > 0);
}

TEST_CASE("attention refuses a layout built for other sizes", "[attention]") {
    const LayerLayout lay = layout_build(AttnSpec{}, 128, 2, 0);
    std::vector<float> qkv(size_t(100) * 3 * 16), out(size_t(100) * 16), lse(size_t(2) * 100);
    CHECK_THROWS_AS(attention_forward(out.data(), lse.data(), qkv.data(), lay, 1, 100, 16, 2), Error);
    CHECK_THROWS_AS(attention_forward(out.data(), lse.data(), qkv.data(), lay, 1, 128, 16, 4), Error);
}
