// The whole model: gradient against finite differences in float64, recomputation, incremental
// decoding against the full forward, the model file round trip, and the named parameter offsets.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <map>

#include "checkpoint.h"
#include "cpu/decoder.h"
#include "fd.h"
#include "model.h"
#include "sample.h"
#include "tiny_config.h"

using namespace st;
using namespace st::test;

static Config tiny(Pattern p, HeadMode mode, PosKind pos) { return st::test::tiny_config(p, mode, pos, 8, 2); }

// Random weights everywhere (the paper's init zeroes the head, which would hide most gradients).
template <class T> static void randomize(Model<T>& m, uint64_t seed) {
    Rng r(seed);
    for (auto& x : m.w) x = T(0.3 * r.normal());
}

static std::vector<uint8_t> tokens(int n, int vocab, uint64_t seed) {
    Rng r(seed);
    std::vector<uint8_t> t(n);
    for (auto& x : t) x = uint8_t(r.next() % uint64_t(vocab));
    return t;
}

TEST_CASE("model gradient matches finite differences in float64", "[model]") {
    struct Case {
        Pattern p;
        HeadMode m;
        PosKind pos;
        float dropout;
    };
    Case cases[] = {{Pattern::fixed, HeadMode::merged, PosKind::p2d, 0.0f},
                    {Pattern::strided, HeadMode::multihead, PosKind::p1d, 0.0f},
                    {Pattern::strided, HeadMode::merged, PosKind::image, 0.0f},
                    {Pattern::fixed, HeadMode::interleaved, PosKind::p2d, 0.2f},
                    {Pattern::dense, HeadMode::merged, PosKind::p1d, 0.0f},
                    {Pattern::local, HeadMode::merged, PosKind::p2d, 0.0f}};
    for (const Case& k : cases) {
        Config c = tiny(k.p, k.m, k.pos);
        c.dropout = k.dropout;
        Model<double> m(c);
        randomize(m, 7);
        m.dropout_seed = 99;
        const int B = 2, T = 24;
        auto inp = tokens(B * T, c.vocab, 3), tgt = tokens(B * T, c.vocab, 4);
        m.forward(inp.data(), tgt.data(), B, T, true);
        m.backward();
        // Check every tensor at a spread of coordinates (all of the small ones).
        std::vector<size_t> idx;
        for (const auto& p : m.params)
            for (int64_t i = 0; i < p.numel; i += std::max<int64_t>(1, p.numel / 6))
                idx.push_back(size_t(p.offset + i));
        std::vector<double> analytic(m.g.begin(), m.g.end());
        double err = fd_rel_error(
            m.w, analytic, [&] { return m.forward(inp.data(), tgt.data(), B, T, true); }, idx);
        INFO("pattern " << pattern_name(k.p) << " mode " << head_mode_name(k.m) << " pos " << pos_name(k.pos)
                        << " dropout " << k.dropout);
        CHECK(err < 1e-6);
    }
}

TEST_CASE("recomputation gives the same gradients, bit for bit", "[model]") {
    Config c = tiny(Pattern::fixed, HeadMode::merged, PosKind::p2d);
    c.dropout = 0.1f;
    const int B = 3, T = 24;
    auto inp = tokens(B * T, c.vocab, 5), tgt = tokens(B * T, c.vocab, 6);
    std::vector<float> grads[2];
    double losses[2];
    for (int rc = 0; rc < 2; rc++) {
        Model<float> m(c);
        randomize(m, 8);
        m.recompute = rc == 1;
        m.dropout_seed = 5;
        losses[rc] = m.forward(inp.data(), tgt.data(), B, T, true);
        m.backward();
        grads[rc] = m.g;
    }
    CHECK(losses[0] == losses[1]);
    CHECK(grads[0] == grads[1]);
}

TEST_CASE("incremental decoding gives the full forward's logits", "[model][sample]") {
    for (Pattern p : {Pattern::fixed, Pattern::strided, Pattern::dense, Pattern::local})
        for (HeadMode mode : {HeadMode::merged, HeadMode::interleaved, HeadMode::multihead}) {
            Config c = tiny(p, mode, PosKind::p2d);
            Model<float> m(c);
            randomize(m, 9);
            const int T = 24;
            auto inp = tokens(T, c.vocab, 10);
            const float* full = m.logits(inp.data(), 1, T);
            std::vector<float> ref(full, full + T * c.vocab);
            Decoder dec(m);
            double worst = 0;
            for (int t = 0; t < T; t++) {
                const float* lg = dec.push(inp[t]);
                for (int v = 0; v < c.vocab; v++)
                    worst = std::max(worst, double(std::fabs(lg[v] - ref[t * c.vocab + v])));
            }
            INFO("pattern " << pattern_name(p) << " mode " << head_mode_name(mode));
            CHECK(worst < 1e-4);
        }
}

TEST_CASE("model files round trip, with and without optimizer state", "[model][io]") {
    Config c = tiny(Pattern::strided, HeadMode::interleaved, PosKind::image);
    Model<float> m(c);
    m.init_weights(3);
    std::vector<float> om(m.num_params, 0.5f), ov(m.num_params, 0.25f);
    char dir[] = "/tmp/st-test-XXXXXX";
    REQUIRE(mkdtemp(dir));
    for (const char* name : {"/m.st", "/m.st.zst"}) {
        std::string path = std::string(dir) + name;
        checkpoint_save(path, m, om.data(), ov.data(), 17, {{"note", "x"}});
        Checkpoint ck = checkpoint_load(path);
        CHECK(ck.step == 17);
        CHECK(ck.metadata.at("note") == "x");
        CHECK(ck.model->w == m.w);
        CHECK(ck.opt_m == om);
        CHECK(ck.opt_v == ov);
        CHECK(config_to_json(ck.model->cfg) == config_to_json(c));
        std::remove(path.c_str());
    }
    std::string path = std::string(dir) + "/plain.st";
    checkpoint_save(path, m, nullptr, nullptr, 0, {});
    CHECK(checkpoint_load(path).opt_m.empty());
    std::remove(path.c_str());
    rmdir(dir);
}

TEST_CASE("every named offset is where its safetensors name starts, and the names cover the buffer", "[model]") {
    for (PosKind pos : {PosKind::p1d, PosKind::p2d, PosKind::image}) {
        Config c = tiny(Pattern::fixed, HeadMode::merged, pos);
        Model<float> m(c);
        const ParamOffsets& o = m.offsets;
        std::map<std::string, const ParamInfo*> by_name;
        for (const auto& p : m.params) by_name[p.name] = &p;
        std::vector<std::pair<std::string, int64_t>> named = {
            {"wte", o.wte}, {"ln_f.weight", o.lnf_w}, {"ln_f.bias", o.lnf_b}, {"head.weight", o.head}};
        std::vector<std::string> tables = {"wpe"};
        if (pos == PosKind::p2d) tables = {"wpe.row", "wpe.col"};
        if (pos == PosKind::image) tables = {"wpe.row", "wpe.col", "wpe.chan"};
        REQUIRE(o.wpe.size() == tables.size());
        REQUIRE(o.wpe_rows.size() == tables.size());
        for (size_t k = 0; k < tables.size(); k++) {
            named.push_back({tables[k], o.wpe[k]});
            CHECK(o.wpe_rows[k] == by_name.at(tables[k])->shape[0]);
            CHECK(o.wpe_rows[k] == *std::max_element(m.pos_index()[k].begin(), m.pos_index()[k].end()) + 1);
        }
        REQUIRE(o.layers.size() == size_t(c.n_layer));
        for (int l = 0; l < c.n_layer; l++) {
            const LayerTensors<int64_t>& t = o.layers[size_t(l)];
            const std::string h = "h." + std::to_string(l) + ".";
            for (const auto& [suffix, off] : {std::pair{"ln1.weight", t.ln1_w},
                                              {"ln1.bias", t.ln1_b},
                                              {"attn.qkv.weight", t.qkv_w},
                                              {"attn.qkv.bias", t.qkv_b},
                                              {"attn.proj.weight", t.proj_w},
                                              {"attn.proj.bias", t.proj_b},
                                              {"ln2.weight", t.ln2_w},
                                              {"ln2.bias", t.ln2_b},
                                              {"mlp.fc.weight", t.fc_w},
                                              {"mlp.fc.bias", t.fc_b},
                                              {"mlp.proj.weight", t.fp_w},
                                              {"mlp.proj.bias", t.fp_b}})
                named.push_back({h + suffix, off});
            const ParamInfo& first = *by_name.at(h + "ln1.weight");
            const ParamInfo& last = *by_name.at(h + "mlp.proj.bias");
            CHECK(o.layer_begin(l) == first.offset);
            CHECK(o.layer_end(l) == last.offset + last.numel);
        }
        CHECK(o.layer_begin(0) == by_name.at(tables.back())->offset + by_name.at(tables.back())->numel);
        CHECK(o.layer_end(c.n_layer - 1) == o.lnf_w);
        CHECK(named.size() == m.params.size());  // and every name below is a tensor: each tensor has its field
        for (const auto& [name, off] : named) {
            INFO(pos_name(pos) << " " << name);
            REQUIRE(by_name.count(name) == 1);
            CHECK(by_name.at(name)->offset == off);
        }
    }
}

TEST_CASE("initialisation follows the paper", "[model]") {
    Config c = tiny(Pattern::fixed, HeadMode::merged, PosKind::p2d);
    c.d_model = 64;
    c.n_head = 4;
    c.n_ctx = 256;
    c.attn.stride = 16;
    Model<double> m(c);
    m.init_weights(1);
    auto sd = [&](const std::string& name) {
        for (const auto& p : m.params)
            if (p.name == name) {
                double s = 0;
                for (int64_t i = 0; i < p.numel; i++) s += m.w[p.offset + i] * m.w[p.offset + i];
                return std::sqrt(s / p.numel);
            }
        return -1.0;
    };
    CHECK(sd("head.weight") == 0.0);
    CHECK(sd("wte") == Approx(0.125 / 8).epsilon(0.1));
    CHECK(sd("h.0.attn.qkv.weight") == Approx(0.125 / 8).epsilon(0.05));
    CHECK(sd("h.0.attn.proj.weight") == Approx(0.125 / 8 / 2).epsilon(0.1));                // 1/sqrt(2N), N = 2
    CHECK(sd("h.1.mlp.proj.weight") == Approx(0.125 / std::sqrt(128.0) / 2).epsilon(0.1));  // d_in = ff_mult * d
    CHECK(sd("wpe.col") == Approx(0.125 / std::sqrt(64.0 * 2)).epsilon(0.25));
    CHECK(sd("h.0.ln1.bias") == 0.0);
    CHECK(m.w[size_t(m.offsets.layers[0].ln1_w)] == 1.0);
}
