// Pictures of attention (libst/viz) and the Decoder's kept attention weights: drawn sets against
// attn_allowed, weights against a float64 forward written out here, the overlay on the picture, the
// colour map, panel sizes.
#include <catch2/catch.hpp>

#include <cmath>
#include <tuple>

#include "cpu/decoder.h"
#include "cpu/ops.h"
#include "model.h"
#include "rng.h"
#include "sample.h"
#include "tiny_config.h"
#include "viz.h"

using namespace st;

namespace {

Rgb pixel(const Image& im, int y, int x) {
    const uint8_t* p = &im.px[(size_t(y) * size_t(im.w) + size_t(x)) * 3];
    return {p[0], p[1], p[2]};
}

bool same(Rgb a, Rgb b) { return a.r == b.r && a.g == b.g && a.b == b.b; }

double luminance(Rgb c) { return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b; }

Config tiny(Pattern p, HeadMode mode, PosKind pos) { return st::test::tiny_config(p, mode, pos, 12, 3); }

// probs[l][h][j]: the attention of query t over keys j <= t in layer l, head h, from a float64
// forward of inp[0..t] with the dense causal mask of attn_allowed (Child et al. 2019, section 5, written out).
std::vector<std::vector<std::vector<double>>> reference_probs(const Model<float>& mf, const std::vector<uint8_t>& inp,
                                                              int t) {
    const Config& c = mf.cfg;
    Model<double> m(c);
    m.w.assign(mf.w.begin(), mf.w.end());
    const int N = t + 1, C = c.d_model, F = c.ff_dim(), NH = c.n_head, Dh = c.head_dim();
    std::vector<const double*> pos;
    std::vector<const int32_t*> pos_index;
    for (size_t k = 0; k < m.pos_index().size(); k++) {
        pos.push_back(m.w.data() + m.offsets.wpe[k]);
        pos_index.push_back(m.pos_index()[k].data());
    }
    const size_t NC = size_t(N) * size_t(C);
    std::vector<double> x(NC), ln(NC), att(NC), br(NC), qkv(3 * NC), fc(size_t(N) * F);  // (N, C), (N, 3C), (N, F)
    std::vector<double> mean(NC / C), rstd(NC / C);                                      // (N)
    const double* wte = m.w.data() + m.offsets.wte;
    embedding_forward(x.data(), inp.data(), wte, pos.data(), pos_index.data(), int(pos.size()), N, N, C);
    std::vector<std::vector<std::vector<double>>> out(size_t(c.n_layer), std::vector<std::vector<double>>(size_t(NH)));
    for (int l = 0; l < c.n_layer; l++) {
        const auto lw = at(m.w.data(), m.offsets.layers[size_t(l)]);
        layernorm_forward(ln.data(), mean.data(), rstd.data(), x.data(), lw.ln1_w, lw.ln1_b, N, C);
        linear_forward(qkv.data(), ln.data(), lw.qkv_w, lw.qkv_b, N, C, 3 * C);
        for (int i = 0; i < N; i++)
            for (int h = 0; h < NH; h++) {
                std::vector<double> p(size_t(i) + 1, 0.0);
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    if (!attn_allowed(c.attn, NH, l, h, i, j)) continue;
                    double s = 0;
                    for (int d = 0; d < Dh; d++)
                        s += qkv[size_t(i) * 3 * C + h * Dh + d] * qkv[size_t(j) * 3 * C + C + h * Dh + d];
                    p[size_t(j)] = s / std::sqrt(double(Dh));
                    mx = std::max(mx, p[size_t(j)]);
                }
                for (int j = 0; j <= i; j++)
                    sum += p[size_t(j)] = attn_allowed(c.attn, NH, l, h, i, j) ? std::exp(p[size_t(j)] - mx) : 0.0;
                for (int d = 0; d < Dh; d++) {
                    double o = 0;
                    for (int j = 0; j <= i; j++) o += p[size_t(j)] / sum * qkv[size_t(j) * 3 * C + 2 * C + h * Dh + d];
                    att[size_t(i) * C + h * Dh + d] = o;
                }
                if (i == t) {
                    for (double& v : p) v /= sum;
                    out[size_t(l)][size_t(h)] = p;
                }
            }
        linear_forward(br.data(), att.data(), lw.proj_w, lw.proj_b, N, C, C);
        for (size_t k = 0; k < x.size(); k++) x[k] += br[k];
        layernorm_forward(ln.data(), mean.data(), rstd.data(), x.data(), lw.ln2_w, lw.ln2_b, N, C);
        linear_forward(fc.data(), ln.data(), lw.fc_w, lw.fc_b, N, C, F);
        gelu_forward(fc.data(), fc.data(), int64_t(N) * F);
        linear_forward(br.data(), fc.data(), lw.fp_w, lw.fp_b, N, F, C);
        for (size_t k = 0; k < x.size(); k++) x[k] += br[k];
    }
    return out;
}

}  // namespace

TEST_CASE("a drawn attention set is attn_allowed, pixel by pixel", "[viz]") {
    const Rgb white{255, 255, 255}, black{0, 0, 0};
    for (Pattern p : {Pattern::fixed, Pattern::strided, Pattern::dense, Pattern::local})
        for (HeadMode mode : {HeadMode::merged, HeadMode::interleaved, HeadMode::multihead}) {
            AttnSpec s;
            s.pattern = p;
            s.mode = mode;
            s.stride = 8;
            s.summary = 2;
            const int n_head = 5, n = 45;
            for (int layer = 0; layer < 2; layer++)
                for (int head = 0; head < n_head; head++) {
                    Image im = draw_attn_set(s, n_head, layer, head, n);
                    REQUIRE(im.h == n);
                    REQUIRE(im.w == n);
                    int wrong = 0;
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < n; j++) {
                            Rgb c = pixel(im, i, j);
                            bool ok = attn_allowed(s, n_head, layer, head, i, j) ? same(c, white)
                                      : j <= i                                   ? same(c, black)
                                                                                 : !same(c, white) && !same(c, black);
                            wrong += !ok;
                        }
                    INFO(pattern_name(p) << " " << head_mode_name(mode) << " layer " << layer << " head " << head);
                    CHECK(wrong == 0);
                }
        }
}

TEST_CASE("the Decoder keeps softmax weights over exactly attn_keys, as a float64 forward gives them",
          "[viz][sample]") {
    struct Case {
        Pattern p;
        HeadMode m;
        PosKind pos;
    };
    for (Case k :
         {Case{Pattern::fixed, HeadMode::merged, PosKind::p2d},
          Case{Pattern::strided, HeadMode::interleaved, PosKind::image},
          Case{Pattern::fixed, HeadMode::multihead, PosKind::p1d}, Case{Pattern::local, HeadMode::merged, PosKind::p2d},
          Case{Pattern::dense, HeadMode::merged, PosKind::p1d}}) {
        Config c = tiny(k.p, k.m, k.pos);
        Model<float> m(c);
        Rng r(11);
        for (float& w : m.w) w = float(0.5 * r.normal());  // large enough that the weights are far from uniform
        std::vector<uint8_t> inp;
        for (int t = 0; t < c.n_ctx; t++) inp.push_back(uint8_t(r.next() % uint64_t(c.vocab)));
        Decoder dec(m);
        dec.keep_attention(true);
        std::vector<int64_t> keys;
        double worst = 0, spread = 0;
        for (int t = 0; t < c.n_ctx; t++) {
            dec.push(inp[size_t(t)]);
            if (t % 5 != 4 && t != c.n_ctx - 1) continue;  // the float64 forward is O(t^2): a few queries suffice
            auto ref = reference_probs(m, inp, t);
            for (int l = 0; l < c.n_layer; l++)
                for (int h = 0; h < c.n_head; h++) {
                    const Decoder::Attention& a = dec.attention(l, h);
                    attn_keys(c.attn, c.n_head, l, h, t, &keys);
                    INFO(pattern_name(k.p)
                         << " " << head_mode_name(k.m) << " t " << t << " layer " << l << " head " << h);
                    REQUIRE(a.keys == keys);
                    REQUIRE(a.probs.size() == keys.size());
                    double sum = 0, in_set = 0, lo = 1, hi = 0;
                    for (size_t i = 0; i < keys.size(); i++) {
                        sum += a.probs[i];
                        in_set += ref[size_t(l)][size_t(h)][size_t(keys[i])];
                        worst = std::max(worst, std::fabs(a.probs[i] - ref[size_t(l)][size_t(h)][size_t(keys[i])]));
                        lo = std::min(lo, double(a.probs[i]));
                        hi = std::max(hi, double(a.probs[i]));
                    }
                    CHECK(sum == Approx(1).epsilon(1e-5));
                    CHECK(in_set == Approx(1).epsilon(1e-12));  // the reference puts nothing outside attn_keys
                    spread = std::max(spread, hi - lo);
                }
        }
        INFO(pattern_name(k.p) << " " << head_mode_name(k.m));
        CHECK(worst < 1e-5);
        CHECK(spread > 0.1);  // a test on uniform weights would prove little
    }
}

TEST_CASE("viridis rises in luminance from violet to yellow", "[viz]") {
    // Rounding to 8 bits may take back up to half a level per channel between close neighbours;
    // further apart, luminance must rise.
    double last = -1;
    for (int k = 0; k <= 1000; k++) {
        double y = luminance(viridis(k / 1000.0));
        CHECK(y >= last - 1.0);
        last = std::max(last, y);
    }
    for (int k = 1; k <= 64; k++) CHECK(luminance(viridis(k / 64.0)) > luminance(viridis((k - 1) / 64.0)));
    CHECK(same(viridis(0), Rgb{68, 1, 84}));
    CHECK(same(viridis(1), Rgb{253, 231, 37}));
    CHECK(same(viridis(-3), viridis(0)));
    CHECK(luminance(viridis(1)) - luminance(viridis(0)) > 150);
}

TEST_CASE("weights are drawn per cell, relative to the largest", "[viz]") {
    const Rgb black{0, 0, 0};
    // Text: positions 0..5 in rows of 4; keys 0, 3 and 5.
    Image t = draw_attn_weights({0, 3, 5}, {0.25f, 0.5f, 0.25f}, 5, 1, 4, 2);
    REQUIRE((t.h == 2 && t.w == 4));
    CHECK(same(pixel(t, 0, 3), viridis(1)));
    CHECK(same(pixel(t, 0, 0), viridis(0.5)));
    CHECK(same(pixel(t, 1, 1), viridis(0.5)));
    for (auto [y, x] : {std::pair{0, 1}, {0, 2}, {1, 0}}) CHECK(same(pixel(t, y, x), black));
    for (int x : {2, 3}) CHECK(!same(pixel(t, 1, x), black));  // after the query
    CHECK(same(pixel(t, 1, 2), pixel(t, 1, 3)));
    // Images: 2 channels a pixel summed, 2 x 2 pixels; keys 0 and 1 (pixel 0), 2 (pixel 1).
    Image im = draw_attn_weights({0, 1, 2}, {0.2f, 0.2f, 0.6f}, 2, 2, 2, 2);
    REQUIRE((im.h == 2 && im.w == 2));
    CHECK(same(pixel(im, 0, 1), viridis(1)));
    CHECK(same(pixel(im, 0, 0), viridis(0.4 / 0.6)));
    CHECK(same(pixel(im, 1, 0), pixel(t, 1, 3)));
}

TEST_CASE("an overlay colours the attended pixels of the picture and leaves the others grey", "[viz]") {
    // A 3 x 3 RGB picture; the query is pixel 1,1's first channel (position 12). Keys 0..2 are pixel 0,
    // key 9 pixel 3, key 12 the query's own pixel; pixels 1 and 2 are seen but not attended.
    const int h = 3, w = 3, c = 3;
    std::vector<uint8_t> px;
    for (int k = 0; k < h * w; k++) px.insert(px.end(), {uint8_t(200 - 20 * k), uint8_t(30 + 25 * k), uint8_t(90)});
    const int64_t query = 12;
    const Image im = draw_attn_overlay(px.data(), h, w, c, {0, 1, 2, 9, 12}, {0.1f, 0.1f, 0.1f, 0.5f, 0.2f}, query);
    REQUIRE((im.h == h && im.w == w && im.c == 3));
    auto grey = [&](int k) {
        const uint8_t* p = &px[size_t(k) * c];
        const int v = (299 * p[0] + 587 * p[1] + 114 * p[2]) / 1000;
        return k >= 4 ? v / 3 : v;  // pixels 4.. are not wholly read before the query: dimmed
    };
    auto coloured = [](Rgb p) { return p.r != p.g || p.g != p.b; };
    for (int k : {1, 2, 5, 6, 7, 8}) {
        INFO("pixel " << k);
        const Rgb p = pixel(im, k / w, k % w);
        CHECK((p.r == grey(k) && p.g == grey(k) && p.b == grey(k)));
    }
    // The dimming shows: pixel 6 is brighter than pixel 1 in the picture, darker drawn.
    CHECK(grey(6) < grey(1));
    CHECK(same(pixel(im, 1, 0), viridis(1)));  // the largest weight, wholly opaque
    for (int k : {0, 4}) {
        INFO("pixel " << k);
        CHECK(coloured(pixel(im, k / w, k % w)));
    }
    // A larger weight is more opaque: pixel 0 (0.6 of the largest) has gone further from its grey
    // towards its viridis colour than the query's own pixel (0.4) from its dimmed grey; both past the
    // floor of a quarter that keeps the least weight visible.
    const Rgb p0 = pixel(im, 0, 0), p4 = pixel(im, 1, 1);
    const Rgb v0 = viridis(0.6), v4 = viridis(0.4);
    const double a0 = double(p0.g - grey(0)) / (v0.g - grey(0)), a4 = double(p4.g - grey(4)) / (v4.g - grey(4));
    CHECK(a0 > a4);
    CHECK(a4 > 0.25);
    // The grey underneath is draw_seen_image's.
    const Image seen = draw_seen_image(px.data(), h, w, c, query);
    for (int k : {1, 2, 5, 6, 7, 8}) CHECK(same(pixel(im, k / w, k % w), pixel(seen, k / w, k % w)));
}

TEST_CASE("the panel grid has the asked sizes and holds the scaled panels", "[viz]") {
    AttnSpec s;
    s.pattern = Pattern::strided;
    s.stride = 4;
    const int n = 16, scale = 3;
    std::vector<Panel> panels;
    for (int h = 0; h < 4; h++) panels.push_back({draw_attn_set(s, 4, 0, h, n), "layer 0 head " + std::to_string(h)});
    const int cell_w = std::max(n * scale, text_width("layer 0 head 0") + kGridPad);
    Image g = panel_grid(panels, 2, scale, "");
    CHECK(g.w == kGridPad + 2 * (cell_w + kGridPad));
    CHECK(g.h == kGridPad + 2 * (label_height() + n * scale + kGridPad));
    Image titled = panel_grid(panels, 2, scale, "a title");
    CHECK(titled.h == g.h + label_height());
    // The second panel of the second row, pixel by pixel.
    const int x0 = kGridPad + cell_w + kGridPad,
              y0 = kGridPad + (label_height() + n * scale + kGridPad) + label_height();
    int wrong = 0;
    for (int y = 0; y < n * scale; y++)
        for (int x = 0; x < n * scale; x++)
            wrong += !same(pixel(g, y0 + y, x0 + x), pixel(panels[3].im, y / scale, x / scale));
    CHECK(wrong == 0);
}

TEST_CASE("panel_grid_size is the panel grid's size; a grid past the limits is refused before it is drawn", "[viz]") {
    AttnSpec s;
    s.pattern = Pattern::strided;
    s.stride = 4;
    std::vector<Panel> panels;
    for (int h = 0; h < 3; h++) panels.push_back({draw_attn_set(s, 4, 0, h, 16), "layer 0 head " + std::to_string(h)});
    const int label_w = text_width("layer 0 head 0");
    for (auto [cols, scale, title] :
         {std::tuple{2, 3, ""}, std::tuple{3, 1, "a title wider than the three panels are together"},
          std::tuple{1, 5, "t"}}) {
        INFO(cols << " columns, scale " << scale << ", title \"" << title << "\"");
        const Image g = panel_grid(panels, cols, scale, title);
        const ImageSize size = panel_grid_size(panels.size(), 16, 16, label_w, cols, scale, title);
        CHECK((size.h == uint64_t(g.h) && size.w == uint64_t(g.w)));
    }
    // A panel of 40000 x 40000 (its pixels never made): a grid of 4.8 GB, refused before it is allocated.
    const std::vector<Panel> huge = {{Image{40000, 40000, 3, {}}, "layer 0 head 0"}};
    CHECK_THROWS_WITH(panel_grid(huge, 1, 1, ""),
                      Catch::Contains("picture (4806") && Catch::Contains("is more than st handles"));
    CHECK(panel_grid_size(1, 40000, 40000, label_w, 1, 64, "").w > kMaxImageSide);
}
