// Every GPU op of kernels/ops.h against libst/cpu run in double on the same (bf16-rounded) inputs,
// with the outputs poisoned first; and each op run twice for the same bits. Accumulating outputs
// start from random values and are compared as increments.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/ops.h"
#include "gpu.h"
#include "kernels/ops.h"
#include "rng.h"

using namespace st;
using namespace st::test;

namespace {

const cudaStream_t kStream = nullptr;

// a - b elementwise in double: what an accumulating op added.
std::vector<double> minus(const std::vector<float>& a, const std::vector<float>& b) {
    std::vector<double> d(a.size());
    for (size_t i = 0; i < a.size(); i++) d[i] = double(a[i]) - double(b[i]);
    return d;
}

// The dropout decision of libst/cpu/residual.cpp, element by element.
bool cpu_keep(uint64_t seed, int64_t i, float p) { return uniform01(hash64(seed, uint64_t(i))) >= p; }

// For each table row, the items (in [0, rows of row_of)) that read it, ascending: the counting sort
// the trainer does on the host.
struct HostIndex {
    std::vector<int32_t> ptr, items;
};
HostIndex invert(const std::vector<int32_t>& row_of, int rows) {
    HostIndex h;
    h.ptr.assign(rows + 1, 0);
    for (int32_t r : row_of) h.ptr[r + 1]++;
    for (int r = 0; r < rows; r++) h.ptr[r + 1] += h.ptr[r];
    h.items.resize(row_of.size());
    std::vector<int32_t> at(h.ptr.begin(), h.ptr.end() - 1);
    for (size_t i = 0; i < row_of.size(); i++) h.items[at[row_of[i]]++] = int32_t(i);
    return h;
}

// The index on the device, kept alive with its buffers.
struct DeviceIndex {
    DeviceBuffer<int32_t> ptr, items;
    gpu::InverseIndex inv;
    DeviceIndex(const HostIndex& h, int rows) : ptr(h.ptr), items(h.items) {
        inv.rows = rows;
        inv.nitems = int64_t(h.items.size());
        inv.ptr = ptr.get();
        inv.items = items.get();
    }
};

}  // namespace

TEST_CASE("GPU layernorm forward and backward match the CPU", "[gpu]") {
    ST_REQUIRE_GPU();
    const int64_t N = 101;  // rows of 200: lanes cover partial strides, the row chunks a partial last one
    const int C = 200;
    auto x = random_floats(N * C, 1, 2.0);
    for (auto& v : x) v += 3.0f;  // an offset the variance must not cancel against
    const auto w = random_floats(C, 2), b = random_floats(C, 3);
    DeviceBuffer<float> d_x(x), d_w(w), d_b(b), d_mean(N), d_rstd(N);
    DeviceBuffer<bf16> d_out(N * C);

    std::vector<double> out_ref(N * C), mean_ref(N), rstd_ref(N);
    const auto x_d = to_double(x), w_d = to_double(w), b_d = to_double(b);
    layernorm_forward(out_ref.data(), mean_ref.data(), rstd_ref.data(), x_d.data(), w_d.data(), b_d.data(), N, C);

    auto forward = [&] {
        d_out.poison(), d_mean.poison(), d_rstd.poison();
        gpu::layernorm_forward(d_out.get(), d_mean.get(), d_rstd.get(), d_x.get(), d_w.get(), d_b.get(), N, C, kStream);
        return std::make_tuple(d_out.download(), d_mean.download(), d_rstd.download());
    };
    auto [out, mean, rstd] = forward();
    CHECK(rel_error(out, out_ref) < kTolBf16);
    CHECK(rel_error(mean, mean_ref) < kTolF32);
    CHECK(rel_error(rstd, rstd_ref) < kTolF32);
    auto [out2, mean2, rstd2] = forward();
    CHECK(same_bits(out, out2));
    CHECK(same_bits(mean, mean2));
    CHECK(same_bits(rstd, rstd2));

    // Backward, from the GPU's own mean and rstd.
    const auto g = to_bf16(random_floats(N * C, 4));
    const auto dx0 = random_floats(N * C, 5), dw0 = random_floats(C, 6), db0 = random_floats(C, 7);
    std::vector<double> dx_ref(N * C, 0.0), dw_ref(C, 0.0), db_ref(C, 0.0);
    const auto g_d = to_double(g);
    layernorm_backward(dx_ref.data(), dw_ref.data(), db_ref.data(), g_d.data(), x_d.data(), w_d.data(), mean_ref.data(),
                       rstd_ref.data(), N, C);

    DeviceBuffer<bf16> d_g(g);
    DeviceBuffer<float> d_dx(N * C), d_dw(C), d_db(C);
    DeviceBuffer<char> scratch(gpu::layernorm_backward_scratch(N, C));
    auto backward = [&] {
        d_dx.upload(dx0), d_dw.upload(dw0), d_db.upload(db0);
        scratch.poison();
        gpu::layernorm_backward(d_dx.get(), d_dw.get(), d_db.get(), d_g.get(), d_x.get(), d_w.get(), d_mean.get(),
                                d_rstd.get(), N, C, scratch.get(), kStream);
        return std::make_tuple(d_dx.download(), d_dw.download(), d_db.download());
    };
    auto [dx, dw, db] = backward();
    CHECK(rel_error(minus(dx, dx0), dx_ref) < kTolF32);
    CHECK(rel_error(minus(dw, dw0), dw_ref) < kTolF32);
    CHECK(rel_error(minus(db, db0), db_ref) < kTolF32);
    auto [dx2, dw2, db2] = backward();
    CHECK(same_bits(dx, dx2));
    CHECK(same_bits(dw, dw2));
    CHECK(same_bits(db, db2));
}

TEST_CASE("GPU gelu forward matches the CPU, aligned, unaligned and in place", "[gpu]") {
    ST_REQUIRE_GPU();
    const int64_t n = 1001;  // not a multiple of 8: a tail group
    const auto x = to_bf16(random_floats(n, 11, 3.0));
    const auto x_d = to_double(x);
    std::vector<double> y_ref(n);
    gelu_forward(y_ref.data(), x_d.data(), n);

    // Offset 0 takes the 16-byte path, offset 1 the scalar one; both must give the same bits.
    std::vector<std::vector<bf16>> ys;
    for (int off : {0, 1, 0}) {
        DeviceBuffer<bf16> d_x(n + 1), d_y(n + 1);
        std::vector<bf16> xp(n + 1);
        std::copy(x.begin(), x.end(), xp.begin() + off);
        d_x.upload(xp);
        d_y.poison();
        gpu::gelu_forward(d_y.get() + off, d_x.get() + off, n, kStream);
        auto y = d_y.download();
        ys.emplace_back(y.begin() + off, y.begin() + off + n);
    }
    CHECK(rel_error(ys[0], y_ref) < kTolBf16);
    CHECK(same_bits(ys[0], ys[1]));
    CHECK(same_bits(ys[0], ys[2]));

    // In place: out == inp.
    DeviceBuffer<bf16> d_a(x);
    gpu::gelu_forward(d_a.get(), d_a.get(), n, kStream);
    CHECK(same_bits(d_a.download(), ys[0]));
}

TEST_CASE("GPU residual with dropout matches the CPU and drops the same elements", "[gpu]") {
    ST_REQUIRE_GPU();
    const int64_t n = 1003;
    const uint64_t seed = 0x0123456789abcdefull;
    const auto x = random_floats(n, 21);
    // |y| and |dout| at least 0.5: a kept element always changes the sum, so kept and dropped differ.
    auto y_f = random_floats(n, 22), dout = random_floats(n, 23);
    for (auto& v : y_f) v = std::copysign(0.5f + std::fabs(v), v);
    for (auto& v : dout) v = std::copysign(0.5f + std::fabs(v), v);
    const auto y = to_bf16(y_f);
    const auto x_d = to_double(x), y_d = to_double(y), dout_d = to_double(dout);
    DeviceBuffer<float> d_x(x), d_out(n), d_dout(dout);
    DeviceBuffer<bf16> d_y(y), d_dy(n);

    for (float p : {0.0f, 0.2f}) {
        INFO("p " << p);
        std::vector<double> out_ref(n), dy_ref(n);
        residual_forward(out_ref.data(), x_d.data(), y_d.data(), p, seed, n);
        residual_backward_branch(dy_ref.data(), dout_d.data(), p, seed, n);
        auto run = [&] {
            d_out.poison(), d_dy.poison();
            gpu::residual_forward(d_out.get(), d_x.get(), d_y.get(), p, seed, n, 0, kStream);
            gpu::residual_backward_branch(d_dy.get(), d_dout.get(), p, seed, n, 0, kStream);
            return std::make_pair(d_out.download(), d_dy.download());
        };
        auto [out, dy] = run();
        CHECK(rel_error(out, out_ref) < kTolF32);
        CHECK(rel_error(dy, dy_ref) < kTolBf16);
        int wrong = 0, dropped = 0;
        for (int64_t i = 0; i < n; i++) {
            const bool keep = cpu_keep(seed, i, p);
            dropped += !keep;
            wrong += keep == (out[i] == x[i]);
            wrong += keep == (__bfloat162float(dy[i]) == 0.0f);
        }
        CHECK(wrong == 0);
        if (p > 0) CHECK(dropped > 0);
        auto [out2, dy2] = run();
        CHECK(same_bits(out, out2));
        CHECK(same_bits(dy, dy2));
    }

    // A million elements, other seeds, and numbering from a data-parallel rank's first element: the
    // masks agree element for element.
    const int64_t big = (1 << 20) + 5;
    DeviceBuffer<float> d_ones(std::vector<float>(big, 1.0f));
    DeviceBuffer<bf16> d_mask(big);
    for (uint64_t s : {uint64_t(0), uint64_t(77), ~uint64_t(0)})
        for (float p : {0.1f, 0.5f, 0.9f})
            for (int64_t first : {int64_t(0), 3 * big + 1}) {
                d_mask.poison();
                gpu::residual_backward_branch(d_mask.get(), d_ones.get(), p, s, big, first, kStream);
                const auto mask = d_mask.download();
                int64_t wrong = 0;
                for (int64_t i = 0; i < big; i++)
                    wrong += cpu_keep(s, first + i, p) == (__bfloat162float(mask[i]) == 0.0f);
                INFO("seed " << s << " p " << p << " first " << first);
                CHECK(wrong == 0);
            }
}

TEST_CASE("GPU embedding forward and backward match the CPU, with a byte that fills many chunks", "[gpu]") {
    ST_REQUIRE_GPU();
    const int B = 4, T = 100, C = 72, V = 256;
    const int64_t N = int64_t(B) * T;
    // Half the tokens are one byte (a text's spaces): its row sums 200 terms in several chunks.
    Rng r(31);
    std::vector<uint8_t> tok(N);
    for (auto& t : tok) t = r.uniform() < 0.5 ? ' ' : uint8_t(r.next() % V);
    // Three position tables: t / 10 and t % 10 (factorized), and one row read by every position
    // (400 terms in chunks).
    const int rows[3] = {10, 10, 1};
    std::vector<int32_t> index[3];
    for (int t = 0; t < T; t++) index[0].push_back(t / 10), index[1].push_back(t % 10), index[2].push_back(0);

    const auto wte = random_floats(size_t(V) * C, 32);
    std::vector<float> pos[3];
    for (int k = 0; k < 3; k++) pos[k] = random_floats(size_t(rows[k]) * C, 33 + k);

    // Forward.
    std::vector<double> out_ref(N * C);
    {
        const auto wte_d = to_double(wte);
        std::vector<double> pos_d[3];
        const double* pos_p[3];
        const int32_t* idx_p[3];
        for (int k = 0; k < 3; k++)
            pos_d[k] = to_double(pos[k]), pos_p[k] = pos_d[k].data(), idx_p[k] = index[k].data();
        embedding_forward(out_ref.data(), tok.data(), wte_d.data(), pos_p, idx_p, 3, N, T, C);
    }
    DeviceBuffer<uint8_t> d_tok(tok);
    DeviceBuffer<float> d_wte(wte), d_pos0(pos[0]), d_pos1(pos[1]), d_pos2(pos[2]), d_out(N * C);
    DeviceBuffer<int32_t> d_idx0(index[0]), d_idx1(index[1]), d_idx2(index[2]);
    gpu::PosTables pt;
    pt.n = 3;
    pt.table[0] = d_pos0.get(), pt.table[1] = d_pos1.get(), pt.table[2] = d_pos2.get();
    pt.index[0] = d_idx0.get(), pt.index[1] = d_idx1.get(), pt.index[2] = d_idx2.get();
    d_out.poison();
    gpu::embedding_forward(d_out.get(), d_tok.get(), d_wte.get(), pt, 0, N, T, C, kStream);
    const auto out = d_out.download();
    CHECK(rel_error(out, out_ref) < kTolF32);
    d_out.poison();  // again in two pieces, the second starting inside a window (the chunked forward's calls)
    const int64_t h = N / 3;
    gpu::embedding_forward(d_out.get(), d_tok.get(), d_wte.get(), pt, 0, h, T, C, kStream);
    gpu::embedding_forward(d_out.get() + h * C, d_tok.get() + h, d_wte.get(), pt, h, N - h, T, C, kStream);
    CHECK(same_bits(out, d_out.download()));

    // Backward: one call per table with its inverse index, as the trainer makes them.
    const auto dout = random_floats(N * C, 40);
    std::vector<double> dwte_ref(size_t(V) * C, 0.0), dpos_ref[3];
    {
        const auto dout_d = to_double(dout);
        double* dpos_p[3];
        const int32_t* idx_p[3];
        for (int k = 0; k < 3; k++)
            dpos_ref[k].assign(size_t(rows[k]) * C, 0.0), dpos_p[k] = dpos_ref[k].data(), idx_p[k] = index[k].data();
        embedding_backward(dwte_ref.data(), dpos_p, dout_d.data(), tok.data(), idx_p, 3, N, T, C);
    }
    DeviceBuffer<float> d_dout(dout);
    auto check_table = [&](const std::vector<int32_t>& row_of, int nrows, int reps, int64_t rep_stride,
                           const std::vector<double>& ref, uint64_t seed) {
        const auto init = random_floats(size_t(nrows) * C, seed);
        DeviceIndex idx(invert(row_of, nrows), nrows);
        DeviceBuffer<float> d_table(size_t(nrows) * C);
        DeviceBuffer<char> scratch(gpu::embedding_backward_scratch(idx.inv, reps, C));
        auto run = [&] {
            d_table.upload(init);
            scratch.poison();
            gpu::embedding_backward(d_table.get(), d_dout.get(), idx.inv, reps, rep_stride, C, scratch.get(), kStream);
            return d_table.download();
        };
        const auto got = run();
        CHECK(rel_error(minus(got, init), ref) < kTolF32);
        CHECK(same_bits(got, run()));
    };
    std::vector<int32_t> tok_rows(tok.begin(), tok.end());
    check_table(tok_rows, V, 1, N, dwte_ref, 41);
    for (int k = 0; k < 3; k++) {
        INFO("position table " << k);
        check_table(index[k], rows[k], B, T, dpos_ref[k], 42 + k);
    }
}

TEST_CASE("GPU cross-entropy matches the CPU, in place too", "[gpu]") {
    ST_REQUIRE_GPU();
    const int64_t N = 37;
    for (int V : {256, 77, 1000}) {
        INFO("V " << V);
        const auto logits = to_bf16(random_floats(N * V, 50 + V, 3.0));
        Rng r(V);
        std::vector<uint8_t> targets(N);
        for (auto& t : targets) t = uint8_t(r.next() % std::min(V, 256));
        const float scale = 1.0f / N;
        const auto z_d = to_double(logits);
        std::vector<double> loss_ref(N), dz_ref(N * V);
        crossentropy_forward(loss_ref.data(), z_d.data(), targets.data(), N, V);
        crossentropy_backward(dz_ref.data(), z_d.data(), targets.data(), double(scale), N, V);

        DeviceBuffer<bf16> d_z(logits), d_dz(N * V);
        DeviceBuffer<uint8_t> d_t(targets);
        DeviceBuffer<float> d_loss(N);
        auto run = [&] {
            d_loss.poison(), d_dz.poison();
            gpu::crossentropy(d_loss.get(), d_dz.get(), d_z.get(), d_t.get(), scale, N, V, kStream);
            return std::make_pair(d_loss.download(), d_dz.download());
        };
        auto [loss, dz] = run();
        CHECK(rel_error(loss, loss_ref) < kTolF32);
        CHECK(rel_error(dz, dz_ref) < kTolBf16);
        auto [loss2, dz2] = run();
        CHECK(same_bits(loss, loss2));
        CHECK(same_bits(dz, dz2));

        // Losses only, and dlogits written over the logits: the same bits.
        d_loss.poison();
        gpu::crossentropy(d_loss.get(), nullptr, d_z.get(), d_t.get(), scale, N, V, kStream);
        CHECK(same_bits(d_loss.download(), loss));
        d_loss.poison();
        gpu::crossentropy(d_loss.get(), d_z.get(), d_z.get(), d_t.get(), scale, N, V, kStream);
        CHECK(same_bits(d_loss.download(), loss));
        CHECK(same_bits(d_z.download(), dz));
    }
}

TEST_CASE("GPU sums in double match the CPU and repeat exactly", "[gpu]") {
    ST_REQUIRE_GPU();
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(4099), int64_t(1000003), int64_t(20000000)}) {
        const auto x = random_floats(n + 1, 60 + n);
        for (int off : {0, 1}) {  // 16-byte loads, then the scalar path
            INFO("n " << n << " offset " << off);
            long double sum = 0, sq = 0, mag = 0;  // long double: the reference's own rounding is negligible
            for (int64_t i = 0; i < n; i++) {
                const long double v = x[i + off];
                sum += v, sq += v * v, mag += std::fabs(v);
            }
            const double sum_ref = double(sum), sq_ref = double(sq);
            DeviceBuffer<float> d_x(x);
            DeviceBuffer<double> d_out(2);
            DeviceBuffer<char> scratch(gpu::reduce_scratch(n));
            auto run = [&] {
                d_out.poison(), scratch.poison();
                gpu::sum_f64(d_out.get(), d_x.get() + off, n, scratch.get(), kStream);
                gpu::sum_squares_f64(d_out.get() + 1, d_x.get() + off, n, scratch.get(), kStream);
                return d_out.download();
            };
            const auto got = run();
            CHECK(std::fabs(got[0] - sum_ref) <= 1e-12 * double(mag));
            CHECK(std::fabs(got[1] - sq_ref) <= 1e-12 * sq_ref);
            CHECK(same_bits(got, run()));
            CHECK(std::fabs(got[1] - sum_squares(x.data() + off, n)) <= 1e-12 * sq_ref);  // the CPU trainer's
        }
    }
}

TEST_CASE("GPU AdamW matches the CPU per segment, with gradient clipping read on the device", "[gpu]") {
    ST_REQUIRE_GPU();
    // Three segments and a gap [305, 310) that no segment covers: it must stay as it was.
    const int64_t nparams = 1000;
    const std::vector<gpu::Segment> segs = {{0, 300, 1}, {300, 5, 0}, {310, 690, 1}};
    const float lr = 1e-2f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    const int64_t t = 3;
    const auto w0 = random_floats(nparams, 70), g = random_floats(nparams, 71), m0 = random_floats(nparams, 72, 0.1);
    auto v0 = random_floats(nparams, 73, 0.01);
    for (auto& v : v0) v = std::fabs(v);

    DeviceBuffer<float> d_g(g), d_w(nparams), d_m(nparams), d_v(nparams);
    DeviceBuffer<bf16> d_w16(nparams);
    DeviceBuffer<gpu::Segment> d_segs(segs);
    DeviceBuffer<double> d_sumsq(1);
    DeviceBuffer<char> scratch(gpu::reduce_scratch(nparams));
    gpu::sum_squares_f64(d_sumsq.get(), d_g.get(), nparams, scratch.get(), kStream);
    const double norm = std::sqrt(d_sumsq.download()[0]);

    for (float clip : {0.0f, float(0.5 * norm), float(10 * norm)}) {
        INFO("clip " << clip << " norm " << norm);
        // The CPU trainer's clipping (libst/train.cpp), then adamw_update per segment in double.
        const float s = clip > 0 && norm > clip ? float(clip / norm) : 1.0f;
        std::vector<double> w_ref = to_double(w0), m_ref = to_double(m0), v_ref = to_double(v0), g_ref(nparams);
        for (int64_t i = 0; i < nparams; i++) g_ref[i] = double(g[i] * s);
        for (const auto& sg : segs)
            adamw_update(w_ref.data() + sg.offset, g_ref.data() + sg.offset, m_ref.data() + sg.offset,
                         v_ref.data() + sg.offset, sg.numel, lr, beta1, beta2, eps, sg.decay ? wd : 0.0f, t);

        auto run = [&] {
            d_w.upload(w0), d_m.upload(m0), d_v.upload(v0);
            d_w16.poison();
            gpu::adamw(d_w.get(), d_w16.get(), d_g.get(), d_m.get(), d_v.get(), d_segs.get(), int(segs.size()), nparams,
                       lr, beta1, beta2, eps, wd, t, d_sumsq.get(), clip, kStream);
            return std::make_tuple(d_w.download(), d_w16.download(), d_m.download(), d_v.download());
        };
        auto [w, w16, m, v] = run();
        std::vector<double> dw_ref(nparams);  // the update, which fp32 w carries to about 1e-5 of itself
        for (int64_t i = 0; i < nparams; i++) dw_ref[i] = w_ref[i] - w0[i];
        CHECK(rel_error(minus(w, w0), dw_ref) < 1e-4);
        CHECK(rel_error(m, m_ref) < kTolF32);
        CHECK(rel_error(v, v_ref) < kTolF32);
        int w16_wrong = 0, gap_wrong = 0;
        for (int64_t i = 0; i < nparams; i++) {
            const bool in_gap = i >= 305 && i < 310;
            const uint16_t want = in_gap ? 0xFFFF : __bfloat16_as_ushort(__float2bfloat16(w[i]));
            w16_wrong += __bfloat16_as_ushort(w16[i]) != want;
            if (in_gap) gap_wrong += w[i] != w0[i] || m[i] != m0[i] || v[i] != v0[i];
        }
        CHECK(w16_wrong == 0);
        CHECK(gap_wrong == 0);
        auto [w2, w16b, m2, v2] = run();
        CHECK(same_bits(w, w2));
        CHECK(same_bits(w16, w16b));
        CHECK(same_bits(m, m2));
        CHECK(same_bits(v, v2));
    }
}

TEST_CASE("GPU fp32 <-> bf16 conversions round to nearest even, aligned or not", "[gpu]") {
    ST_REQUIRE_GPU();
    const int64_t n = 1001;
    auto x = random_floats(n + 1, 80, 100.0);
    // Ties and edges: exactly halfway between two bf16 values, the largest finite, tiny, zero, -0.
    const float special[] = {1.00390625f, 1.01171875f, -1.00390625f, 3.3895314e38f, 1e-40f, 0.0f, -0.0f};
    std::copy(std::begin(special), std::end(special), x.begin() + 3);
    for (int off : {0, 1}) {
        INFO("offset " << off);
        DeviceBuffer<float> d_x(x), d_back(n + 1);
        DeviceBuffer<bf16> d_h(n + 1);
        d_h.poison(), d_back.poison();
        gpu::f32_to_bf16(d_h.get() + off, d_x.get() + off, n, kStream);
        gpu::bf16_to_f32(d_back.get() + off, d_h.get() + off, n, kStream);
        const auto h = d_h.download();
        const auto back = d_back.download();
        int wrong = 0;
        for (int64_t i = off; i < n + off; i++) {
            wrong += __bfloat16_as_ushort(h[i]) != __bfloat16_as_ushort(__float2bfloat16(x[i]));
            float want = __bfloat162float(h[i]);
            wrong += std::memcmp(&back[i], &want, sizeof(float)) != 0;
        }
        CHECK(wrong == 0);
    }
}
