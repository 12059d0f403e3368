// GPU decoding against the CPU Decoder: for every pattern and head mode, batches of different byte
// sequences (1 and 3: the four kernels a layer, and the one-launch step under ST_DECODE=one; 9:
// cuBLASLt's products), head sizes 32 and 128, run past the context so that the window slides;
// every step's logits agree within bf16 tolerance; and the mean log-likelihood the GPU decoder gives
// windows of bytes is the GPU engine's (st-eval --decoder against st-eval).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <vector>

#include "cpu/decoder.h"
#include "engine.h"
#include "evaluate.h"
#include "gpu.h"
#include "rng.h"
#include "sample.h"

using namespace st;

// Two layers, d 128, 4 heads (or d_model, heads), context 64, chunks of 16.
static Config decoding_config(Pattern p, HeadMode mode, int d_model = 128, int heads = 4) {
    Config c;
    c.n_layer = 2;
    c.d_model = d_model;
    c.n_head = heads;
    c.n_ctx = 64;
    c.attn.pattern = p;
    c.attn.mode = mode;
    c.attn.stride = 16;
    c.attn.summary = 4;
    c.pos = p == Pattern::dense || p == Pattern::local ? PosKind::p1d : PosKind::p2d;
    return c;
}

TEST_CASE("GPU sampling gives the CPU decoder's logits, sliding included", "[gpu]") {
    ST_REQUIRE_GPU();
    struct Shape {
        int d_model, heads;
    };
    for (const char* path : {"", "one"})
        for (Shape sh : {Shape{128, 4}, Shape{256, 2}})
            for (Pattern p : {Pattern::dense, Pattern::local, Pattern::fixed, Pattern::strided})
                for (HeadMode mode : {HeadMode::interleaved, HeadMode::merged, HeadMode::multihead})
                    for (int B : {1, 3, 9}) {
                        if (p == Pattern::dense && mode != HeadMode::merged) continue;
                        if (B == 9 && *path) continue;  // the same cuBLASLt step either way
                        setenv("ST_DECODE", path, 1);
                        const Config c = decoding_config(p, mode, sh.d_model, sh.heads);
                        INFO(pattern_name(p) << " " << head_mode_name(mode) << " batch " << B << " d "
                                             << sh.d_model << " heads " << sh.heads << " ST_DECODE=" << path);
                        Model<float> m(c);
                        m.init_weights(11);
                        Rng r(4);
                        for (auto& x : m.w) x += float(0.05 * r.normal());  // a head that is not zero: logits that vary
                        const int steps = 100;
                        auto cpu = make_cpu_sampler(m, B);
                        auto gpu = make_gpu_sampler(m, B, 0);
                        std::vector<uint8_t> bytes(B);
                        double worst = 0;
                        for (int t = 0; t < steps; t++) {
                            for (auto& b : bytes) b = uint8_t(r.next() % 256);
                            const float* lc = cpu->push(bytes.data());
                            std::vector<float> keep(lc, lc + size_t(B) * c.vocab);
                            const float* lg = gpu->push(bytes.data());
                            double num = 0, den = 0;
                            for (size_t i = 0; i < keep.size(); i++) {
                                num += (double(lg[i]) - keep[i]) * (double(lg[i]) - keep[i]);
                                den += double(keep[i]) * keep[i];
                            }
                            worst = std::max(worst, std::sqrt(num / den));
                        }
                        CHECK(worst < 2e-2);
                    }
    unsetenv("ST_DECODE");
}

TEST_CASE("the GPU decoder scores a sequence as the GPU engine's windows do, within 0.1%", "[gpu]") {
    ST_REQUIRE_GPU();
    for (Pattern p : {Pattern::dense, Pattern::local, Pattern::fixed, Pattern::strided})
        for (HeadMode mode : {HeadMode::interleaved, HeadMode::merged, HeadMode::multihead}) {
            if (p == Pattern::dense && mode != HeadMode::merged) continue;
            const Config c = decoding_config(p, mode);
            INFO(pattern_name(p) << " " << head_mode_name(mode));
            Model<float> m(c);
            m.init_weights(11);
            Rng r(5);
            for (auto& x : m.w) x += float(0.05 * r.normal());
            std::vector<uint8_t> data(6 * 64 + 1);
            for (auto& b : data) b = uint8_t(r.next() % 256);
            const std::vector<int64_t> offs = {0, 64, 128, 192, 256, 320};
            std::vector<float> om, ov;
            auto engine = make_engine("cuda", m, om, ov);
            const double windows = eval_windows(*engine, data.data(), offs, c.n_ctx, 3);
            const double decoded = decode_windows("cuda", m, data.data(), offs, c.n_ctx, 3);
            CHECK(std::fabs(decoded - windows) <= 1e-3 * windows);
        }
}
