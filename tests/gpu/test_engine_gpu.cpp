// The GPU engine against the CPU engine: the same model, weights, batch and dropout seed give the
// same loss, gradient norm and updated weights within bf16 tolerance; the GPU step is deterministic
// (two engines, two steps, the same bits); and a step in passes of micro-batches is the step at once.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine.h"
#include "gpu.h"
#include "rng.h"

using namespace st;

namespace {

Config small_config(Pattern p, PosKind pos, int block, int n_head) {
    Config c;
    c.n_layer = 2;
    c.d_model = 64 * (n_head > 2 ? 2 : 1);
    c.n_head = n_head;
    c.n_ctx = 256;
    c.attn.pattern = p;
    c.attn.mode = HeadMode::merged;
    c.attn.stride = 64;
    c.attn.summary = 16;
    c.attn.block = block;
    c.pos = pos;
    c.dropout = 0.1f;
    return c;
}

void batch(std::vector<uint8_t>* inp, std::vector<uint8_t>* tgt, int B, int T, uint64_t seed) {
    // Text-like bytes: a skewed distribution so that some byte values repeat many times.
    Rng r(seed);
    std::vector<uint8_t> data(size_t(B) * T + 1);
    for (auto& x : data) x = uint8_t(r.uniform() < 0.2 ? ' ' : 'a' + int(r.uniform() * 26));
    inp->assign(data.begin(), data.end() - 1);
    tgt->assign(data.begin() + 1, data.end());
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& base) {
    // Distance between two updates, relative to the size of the update itself.
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        num += double(a[i] - b[i]) * double(a[i] - b[i]);
        den += double(b[i] - base[i]) * double(b[i] - base[i]);
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace

TEST_CASE("a GPU training step matches the CPU step", "[gpu]") {
    ST_REQUIRE_GPU();
    struct K {
        Pattern p;
        PosKind pos;
        int block, heads, d_model;  // d_model 0: small_config's
    };
    // --recompute in chunks of 100 tokens: 750 is not a multiple, and chunks start inside windows.
    // Head sizes 32 (the mma.sync kernels), and 64 with blocks of 64 and 128 (on a Hopper, the
    // wgmma and the warp-specialised kernels).
    for (K k : {K{Pattern::fixed, PosKind::p2d, 64, 2, 0}, K{Pattern::strided, PosKind::p1d, 128, 4, 0},
                K{Pattern::dense, PosKind::p1d, 64, 2, 0}, K{Pattern::fixed, PosKind::p2d, 64, 2, 128},
                K{Pattern::strided, PosKind::p2d, 128, 2, 128}})
        for (int64_t chunk : {0, 100}) {
            Config c = small_config(k.p, k.pos, k.block, k.heads);
            if (k.d_model) c.d_model = k.d_model;
            INFO(pattern_name(k.p) << " block " << k.block << " heads " << k.heads << " d_model " << c.d_model
                                   << " recompute chunk " << chunk);
            Model<float> cpu(c), gpu(c);
            gpu.recompute = chunk > 0;
            cpu.init_weights(5);
            // The paper starts the head at zero; random values exercise its gradient path too.
            Rng r(9);
            for (auto& x : cpu.w) x += float(0.02 * r.normal());
            gpu.w = cpu.w;
            const std::vector<float> w0 = cpu.w;
            std::vector<float> cm, cv, gm, gv;
            auto ce = make_cpu_engine(cpu, cm, cv);
            auto ge = make_gpu_engine(gpu, gm, gv, {});
            ge->set_chunk(chunk);
            const int B = 3, T = 250;  // T not a multiple of the block: partial blocks everywhere
            std::vector<uint8_t> inp, tgt;
            batch(&inp, &tgt, B, T, 1);
            AdamWStep o{1e-3f, 0.9f, 0.95f, 1e-8f, 0.01f, 1.0f, 1};
            StepStats sc = ce->train_step(inp.data(), tgt.data(), B, T, 77, o);
            StepStats sg = ge->train_step(inp.data(), tgt.data(), B, T, 77, o);
            CHECK(std::fabs(sg.loss - sc.loss) / sc.loss < 5e-3);
            CHECK(std::fabs(sg.grad_norm - sc.grad_norm) / sc.grad_norm < 3e-2);
            ge->sync_to_host();
            CHECK(rel_diff(gpu.w, cpu.w, w0) < 0.1);
            CHECK(rel_diff(gm, cm, std::vector<float>(cm.size(), 0.f)) < 5e-2);
            // Evaluation without dropout agrees too.
            double lc = ce->loss(inp.data(), tgt.data(), B, T), lg = ge->loss(inp.data(), tgt.data(), B, T);
            CHECK(std::fabs(lg - lc) / lc < 5e-3);
        }
}

TEST_CASE("GPU training steps give the same bits on every run, with the profile and with recomputation", "[gpu]") {
    ST_REQUIRE_GPU();
    Config c = small_config(Pattern::fixed, PosKind::p2d, 64, 2);
    std::vector<std::vector<float>> results;
    // Runs 0-2 keep the activations, the last of them timing its phases (ST_PROFILE=1, read when the
    // engine is made); runs 3 and 4 recompute in chunks of 96 tokens.
    struct Run {
        int64_t chunk;
        bool profile;
    };
    for (Run run : {Run{0, false}, Run{0, false}, Run{0, true}, Run{96, false}, Run{96, false}}) {
        if (run.profile) setenv("ST_PROFILE", "1", 1);
        Model<float> m(c);
        m.init_weights(3);
        m.recompute = run.chunk > 0;
        {
            std::vector<float> om, ov;
            auto e = make_gpu_engine(m, om, ov, {});
            e->set_chunk(run.chunk);
            std::vector<uint8_t> inp, tgt;
            for (int step = 0; step < 3; step++) {
                batch(&inp, &tgt, 2, 256, uint64_t(step));
                e->train_step(inp.data(), tgt.data(), 2, 256, uint64_t(step),
                              {1e-3f, 0.9f, 0.95f, 1e-8f, 0.01f, 1.0f, step + 1});
            }
            e->sync_to_host();
        }
        unsetenv("ST_PROFILE");
        results.push_back(m.w);
    }
    for (size_t i : {1, 2, 4}) {
        INFO("run " << i);
        const size_t same_as = i < 3 ? 0 : 3;
        CHECK(std::memcmp(results[same_as].data(), results[i].data(), results[0].size() * 4) == 0);
    }
    // Recomputing from bf16 layer inputs is another rounding of the same function: three steps land
    // close to the kept path's.
    Model<float> m0(c);
    m0.init_weights(3);
    CHECK(rel_diff(results[3], results[0], m0.w) < 5e-2);
}

TEST_CASE("--offload gives the bits of --recompute, with less on the card", "[gpu]") {
    ST_REQUIRE_GPU();
    Config c = small_config(Pattern::fixed, PosKind::p2d, 64, 2);
    c.n_layer = 5;  // three inputs go to the host, through both device buffers in turn
    const int B = 4, T = 256;
    struct Out {
        std::vector<float> w;
        double eval, peak;
        MemoryPlan plan;
    };
    auto run = [&](bool offload) {
        Out o;
        Model<float> m(c);
        m.init_weights(3);
        m.recompute = true;
        {
            std::vector<float> om, ov;
            auto e = make_gpu_engine(m, om, ov, {});
            e->set_chunk(96);
            e->set_offload(offload);
            e->set_micro_batch(2);  // two passes a step: the copies of one pass must not race the next's
            o.plan = e->memory_plan(B, T, true);
            std::vector<uint8_t> inp, tgt;
            for (int step = 0; step < 3; step++) {
                batch(&inp, &tgt, B, T, uint64_t(step));
                e->train_step(inp.data(), tgt.data(), B, T, uint64_t(step),
                              {1e-3f, 0.9f, 0.95f, 1e-8f, 0.01f, 1.0f, step + 1});
            }
            o.eval = e->loss(inp.data(), tgt.data(), 2, T);
            o.peak = e->peak_gib();
            e->sync_to_host();
        }
        o.w = m.w;
        return o;
    };
    const Out kept = run(false), off = run(true);
    const bool same = std::memcmp(kept.w.data(), off.w.data(), kept.w.size() * 4) == 0;
    if (!same) {  // seen once and not since: say which run moved, --offload or the recomputation itself
        const Out again = run(false);
        UNSCOPED_INFO("--recompute without --offload, run again: "
                      << (std::memcmp(kept.w.data(), again.w.data(), kept.w.size() * 4) == 0
                              ? "the same bits (so --offload moved)"
                              : "other bits (so the recomputation is not deterministic)"));
    }
    CHECK(same);
    CHECK(kept.eval == off.eval);
    CHECK(kept.plan.host == 0);
    CHECK(off.plan.host == int64_t(3) * 2 * T * c.d_model * 2);  // three inputs of a pass of 2 windows, bf16
    CHECK(off.plan.activations < kept.plan.activations);
    CHECK(std::fabs(double(off.plan.total()) / double(1 << 30) - off.peak) < 0.1 * off.peak);
}

TEST_CASE("the GPU memory plan is the peak a step reaches, within 10%, kept and recomputed", "[gpu]") {
    ST_REQUIRE_GPU();
    Config c = small_config(Pattern::fixed, PosKind::p2d, 64, 2);
    c.d_model = 256, c.n_head = 4, c.n_layer = 3, c.n_ctx = 4096, c.attn.stride = 512;
    for (int64_t chunk : {0, 1000}) {
        INFO("recompute chunk " << chunk);
        Model<float> m(c);
        m.init_weights(3);
        m.recompute = chunk > 0;
        std::vector<float> om, ov;
        auto e = make_gpu_engine(m, om, ov, {});
        e->set_chunk(chunk);
        const MemoryPlan p = e->memory_plan(2, 4096, true);
        CHECK(p.chunk == chunk);
        CHECK(p.available > p.total());
        std::vector<uint8_t> inp, tgt;
        batch(&inp, &tgt, 2, 4096, 1);
        e->train_step(inp.data(), tgt.data(), 2, 4096, 1, {1e-3f, 0.9f, 0.95f, 1e-8f, 0.01f, 1.0f, 1});
        const double planned = double(p.total()) / double(1 << 30);
        CHECK(std::fabs(planned - e->peak_gib()) < 0.1 * e->peak_gib());
    }
}

TEST_CASE("a GPU step in passes of micro-batches makes the step of the whole batch, dropout included", "[gpu]") {
    ST_REQUIRE_GPU();
    Config c = small_config(Pattern::fixed, PosKind::p2d, 64, 2);
    std::vector<uint8_t> inp, tgt;
    const int B = 4, T = 256;
    std::vector<std::vector<float>> w;
    std::vector<StepStats> st;
    for (int micro : {0, 2, 1}) {
        Model<float> m(c);
        m.init_weights(3);
        std::vector<float> om, ov;
        auto e = make_gpu_engine(m, om, ov, {});
        e->set_micro_batch(micro);
        for (int step = 0; step < 2; step++) {
            batch(&inp, &tgt, B, T, uint64_t(step));
            st.push_back(e->train_step(inp.data(), tgt.data(), B, T, uint64_t(step),
                                       {1e-3f, 0.9f, 0.95f, 1e-8f, 0.01f, 1.0f, step + 1}));
        }
        e->sync_to_host();
        w.push_back(m.w);
    }
    Model<float> m0(c);
    m0.init_weights(3);
    for (size_t k = 1; k < w.size(); k++) {
        INFO("micro-batch run " << k);
        for (size_t s = 0; s < 2; s++) {
            CHECK(std::fabs(st[2 * k + s].loss - st[s].loss) / st[s].loss < 1e-5);
            CHECK(std::fabs(st[2 * k + s].grad_norm - st[s].grad_norm) / st[s].grad_norm < 1e-3);
        }
        CHECK(rel_diff(w[k], w[0], m0.w) < 1e-2);  // the sums differ only in their order
    }
}
