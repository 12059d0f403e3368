// Every CPU op's backward against central finite differences in float64, and the optimizer
// against its formula.
#include <catch2/catch.hpp>
#include <cmath>

#include "cpu/ops.h"
#include "fd.h"

using namespace st;
using namespace st::test;

static const double kTol = 1e-6;

TEST_CASE("layernorm backward matches finite differences", "[ops]") {
    const int N = 5, C = 13;
    auto x = randn(N * C, 1), w = randn(C, 2), b = randn(C, 3), r = randn(N * C, 4);
    std::vector<double> out(N * C), mean(N), rstd(N);
    auto loss = [&] {
        layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
        return dot(out, r);
    };
    loss();
    std::vector<double> dx(N * C, 0.0), dw(C, 0.0), db(C, 0.0);
    layernorm_backward(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
    CHECK(fd_rel_error(x, dx, loss) < kTol);
    CHECK(fd_rel_error(w, dw, loss) < kTol);
    CHECK(fd_rel_error(b, db, loss) < kTol);
}

TEST_CASE("linear backward matches finite differences", "[ops]") {
    const int N = 7, IC = 9, OC = 11;
    auto x = randn(N * IC, 5), w = randn(OC * IC, 6), b = randn(OC, 7), r = randn(N * OC, 8);
    std::vector<double> out(N * OC);
    auto loss = [&] {
        linear_forward(out.data(), x.data(), w.data(), b.data(), N, IC, OC);
        return dot(out, r);
    };
    std::vector<double> dx(N * IC, 0.0), dw(OC * IC, 0.0), db(OC, 0.0);
    linear_backward(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), N, IC, OC);
    CHECK(fd_rel_error(x, dx, loss) < kTol);
    CHECK(fd_rel_error(w, dw, loss) < kTol);
    CHECK(fd_rel_error(b, db, loss) < kTol);
}

TEST_CASE("gelu backward matches finite differences", "[ops]") {
    const int n = 64;
    auto x = randn(n, 9, 2.0), r = randn(n, 10);
    std::vector<double> out(n);
    auto loss = [&] {
        gelu_forward(out.data(), x.data(), n);
        return dot(out, r);
    };
    std::vector<double> dx(n);
    gelu_backward(dx.data(), x.data(), r.data(), n);
    CHECK(fd_rel_error(x, dx, loss) < kTol);
    // The tanh approximation's known values: gelu(1) = 0.8411920, gelu(-1) = -0.1588080.
    double in[2] = {1.0, -1.0}, o[2];
    gelu_forward(o, in, 2);
    CHECK(std::fabs(o[0] - 0.841192) < 1e-6);
    CHECK(std::fabs(o[1] + 0.158808) < 1e-6);
}

TEST_CASE("embedding backward matches finite differences", "[ops]") {
    const int V = 6, C = 5, B = 2, T = 4;
    auto wte = randn(V * C, 11), p0 = randn(2 * C, 12), p1 = randn(3 * C, 13), r = randn(B * T * C, 14);
    std::vector<uint8_t> tok = {1, 3, 3, 0, 5, 1, 2, 3};
    std::vector<int32_t> i0 = {0, 0, 1, 1}, i1 = {0, 1, 2, 0};
    const int32_t* idx[2] = {i0.data(), i1.data()};
    std::vector<double> out(B * T * C);
    auto loss = [&] {
        const double* pos[2] = {p0.data(), p1.data()};
        embedding_forward(out.data(), tok.data(), wte.data(), pos, idx, 2, B * T, T, C);
        return dot(out, r);
    };
    std::vector<double> dwte(V * C, 0.0), dp0(2 * C, 0.0), dp1(3 * C, 0.0);
    double* dpos[2] = {dp0.data(), dp1.data()};
    embedding_backward(dwte.data(), dpos, r.data(), tok.data(), idx, 2, B * T, T, C);
    CHECK(fd_rel_error(wte, dwte, loss) < kTol);
    CHECK(fd_rel_error(p0, dp0, loss) < kTol);
    CHECK(fd_rel_error(p1, dp1, loss) < kTol);
}

TEST_CASE("cross-entropy backward matches finite differences", "[ops]") {
    const int N = 6, V = 17;
    auto z = randn(N * V, 15, 3.0), r = randn(N, 16);
    std::vector<uint8_t> tgt = {0, 16, 3, 3, 9, 1};
    std::vector<double> losses(N);
    auto loss = [&] {
        crossentropy_forward(losses.data(), z.data(), tgt.data(), N, V);
        return dot(losses, r);
    };
    loss();
    // d(sum_i r_i loss_i)/dz = r_i (softmax - onehot): run the backward row by row with scale r_i.
    std::vector<double> dz(N * V);
    for (int i = 0; i < N; i++) crossentropy_backward(dz.data() + i * V, z.data() + i * V, tgt.data() + i, r[i], 1, V);
    CHECK(fd_rel_error(z, dz, loss) < kTol);
    // A loss against a direct log-softmax.
    double mx = -1e300, s = 0;
    for (int v = 0; v < V; v++) mx = std::max(mx, z[v]);
    for (int v = 0; v < V; v++) s += std::exp(z[v] - mx);
    CHECK(std::fabs(losses[0] - (std::log(s) + mx - z[tgt[0]])) < 1e-12);
}

TEST_CASE("residual dropout backward matches finite differences and keeps 1-p", "[ops]") {
    const int n = 4000;
    const float p = 0.25f;
    auto x = randn(n, 17), y = randn(n, 18), r = randn(n, 19);
    std::vector<double> out(n);
    auto loss = [&] {
        residual_forward(out.data(), x.data(), y.data(), p, 42, n);
        return dot(out, r);
    };
    std::vector<double> dy(n);
    residual_backward_branch(dy.data(), r.data(), p, 42, n);
    std::vector<size_t> some;
    for (size_t i = 0; i < 200; i++) some.push_back(i * 17);
    CHECK(fd_rel_error(y, dy, loss, some) < kTol);
    CHECK(fd_rel_error(x, r, loss, some) < kTol);  // dx = dout
    int kept = 0;
    for (int i = 0; i < n; i++) kept += dy[i] != 0.0;
    CHECK(std::fabs(kept / double(n) - (1 - p)) < 0.03);
}

TEST_CASE("adamw follows PyTorch's formula", "[ops]") {
    const int n = 5;
    auto p = randn(n, 20), g = randn(n, 21);
    std::vector<double> m(n, 0.0), v(n, 0.0), pr = p, mr(n, 0.0), vr(n, 0.0);
    // The hyper-parameters are floats: the reference uses exactly those values, in double.
    const double lr = 0.01f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    for (int t = 1; t <= 3; t++) {
        adamw_update(p.data(), g.data(), m.data(), v.data(), n, float(lr), float(b1), float(b2), float(eps), float(wd),
                     t);
        for (int i = 0; i < n; i++) {
            pr[i] *= 1 - lr * wd;
            mr[i] = b1 * mr[i] + (1 - b1) * g[i];
            vr[i] = b2 * vr[i] + (1 - b2) * g[i] * g[i];
            double mh = mr[i] / (1 - std::pow(b1, t)), vh = vr[i] / (1 - std::pow(b2, t));
            pr[i] -= lr * mh / (std::sqrt(vh) + eps);
        }
    }
    for (int i = 0; i < n; i++) CHECK(std::fabs(p[i] - pr[i]) < 1e-12);
}

TEST_CASE("sum of squares is the same for any thread count", "[ops]") {
    std::vector<float> x(300000);
    for (size_t i = 0; i < x.size(); i++) x[i] = float(std::sin(double(i)));
    double a = sum_squares(x.data(), int64_t(x.size()));
    double ref = 0;
    for (float f : x) ref += double(f) * f;
    CHECK(std::fabs(a - ref) < 1e-9 * ref);
}

TEST_CASE("float gelu stays within 1e-6 (relative) of float64", "[ops]") {
    std::vector<float> x(2001), y(2001), g(2001), one(2001, 1.0f);
    for (int i = 0; i < 2001; i++) x[i] = (i - 1000) * 0.01f;
    gelu_forward(y.data(), x.data(), 2001);
    gelu_backward(g.data(), x.data(), one.data(), 2001);
    std::vector<double> xd(x.begin(), x.end()), yd(2001), gd(2001), oned(2001, 1.0);
    gelu_forward(yd.data(), xd.data(), 2001);
    gelu_backward(gd.data(), xd.data(), oned.data(), 2001);
    double worst = 0;
    for (int i = 0; i < 2001; i++)
        worst = std::max({worst, std::fabs(y[i] - yd[i]) / std::max(1.0, std::fabs(yd[i])),
                          std::fabs(g[i] - gd[i]) / std::max(1.0, std::fabs(gd[i]))});
    CHECK(worst < 1e-6);
}
