// Pictures of attention: sets, weights, the input image and the labelled grid they go in.
#include "viz.h"

#include <stb/stb_easy_font.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "error.h"

namespace st {

namespace {

constexpr Rgb kWhite{255, 255, 255}, kBlack{0, 0, 0}, kAbove{72, 72, 72}, kFuture{208, 208, 208}, kMark{255, 32, 32};
constexpr int kFontScale = 2;  // stb_easy_font's glyphs are about 5 x 7 units: doubled, they read at a glance
// draw_attn_overlay's opacity of the least weight
constexpr double kOverlayFloor = 0.25;

void put(Image* im, int64_t y, int64_t x, Rgb c) {
    uint8_t* p = &im->px[(size_t(y) * size_t(im->w) + size_t(x)) * 3];
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
}

// The weight of each of `cells` cells, position t in cell t / group: the sum of its keys' weights over
// the largest such sum, or -1 for a cell with no key of the set.
std::vector<double> cell_weights(const std::vector<int64_t>& keys, const std::vector<float>& probs, int group,
                                 size_t cells) {
    std::vector<double> sum(cells, -1.0);
    for (size_t a = 0; a < keys.size(); a++) {
        double& s = sum[size_t(keys[a] / group)];
        s = std::max(s, 0.0) + probs[a];
    }
    // Relative to the largest: a head's weights spread over many keys would otherwise all look dark.
    const double top = std::max(*std::max_element(sum.begin(), sum.end()), 1e-30);
    for (double& s : sum)
        if (s >= 0) s /= top;
    return sum;
}

// stb_easy_font has glyphs for printable ASCII alone, and reads its table out of bounds for any
// other byte.
std::string printable(const std::string& s) {
    std::string out = s;
    for (char& ch : out)
        if (ch < 32 || ch > 126) ch = '?';
    return out;
}

}  // namespace

Image rgb_image(int h, int w, Rgb fill) {
    Image im;
    im.h = h;
    im.w = w;
    im.c = 3;
    im.px.resize(size_t(h) * size_t(w) * 3);
    for (size_t i = 0; i < im.px.size(); i += 3) {
        im.px[i] = fill.r;
        im.px[i + 1] = fill.g;
        im.px[i + 2] = fill.b;
    }
    return im;
}

void fill_rect(Image* im, int64_t y0, int64_t x0, int64_t y1, int64_t x1, Rgb c) {
    for (int64_t y = std::max<int64_t>(y0, 0); y < std::min<int64_t>(y1, im->h); y++)
        for (int64_t x = std::max<int64_t>(x0, 0); x < std::min<int64_t>(x1, im->w); x++) put(im, y, x, c);
}

// stb_easy_font describes text as quads (4 vertices of 16 bytes: x, y, z floats and a colour) on a
// unit grid; each quad is a rectangle of whole units.
void draw_text(Image* im, int y0, int x0, const std::string& s, Rgb c) {
    std::string text = printable(s);
    // A quad a stroke, and up to 11 strokes a glyph ('X'): with stb_easy_font's documented average
    // (~270 bytes a character) a line of digits such as "2000" lost its last strokes.
    std::vector<char> buf(64 * 11 * (s.size() + 1));
    int quads = stb_easy_font_print(0, 0, text.data(), nullptr, buf.data(), int(buf.size()));
    for (int q = 0; q < quads; q++) {
        const char* v = buf.data() + size_t(q) * 64;
        float x[2], y[2];  // vertices 0 and 2: opposite corners
        std::memcpy(&x[0], v, sizeof(float));
        std::memcpy(&y[0], v + 4, sizeof(float));
        std::memcpy(&x[1], v + 32, sizeof(float));
        std::memcpy(&y[1], v + 36, sizeof(float));
        auto at = [](float u) { return int64_t(std::lround(u)) * kFontScale; };
        fill_rect(im, y0 + at(y[0]), x0 + at(x[0]), y0 + at(y[1]), x0 + at(x[1]), c);
    }
}

Rgb viridis(double x) {
    // matplotlib's table at x = 0, 1/8, ..., 1; between them, linear (luminance is linear in RGB, so
    // it stays monotone between rising anchors).
    static constexpr std::array<Rgb, 9> anchors{{{68, 1, 84},
                                                 {71, 44, 122},
                                                 {59, 81, 139},
                                                 {44, 113, 142},
                                                 {33, 144, 141},
                                                 {39, 173, 129},
                                                 {92, 200, 99},
                                                 {170, 220, 50},
                                                 {253, 231, 37}}};
    const double u = std::clamp(x, 0.0, 1.0) * 8;
    const int k = std::min(int(u), 7);
    const double f = u - k;
    auto mix = [&](uint8_t a, uint8_t b) { return uint8_t(std::lround(a + (b - a) * f)); };
    return {mix(anchors[k].r, anchors[k + 1].r), mix(anchors[k].g, anchors[k + 1].g),
            mix(anchors[k].b, anchors[k + 1].b)};
}

Image draw_attn_set(const AttnSpec& spec, int n_head, int layer, int head, int n) {
    Image im = rgb_image(n, n, kBlack);
    std::vector<int64_t> keys;
    for (int i = 0; i < n; i++) {
        fill_rect(&im, i, i + 1, i + 1, n, kAbove);
        // attn_keys costs O(|set|) a row where attn_allowed would cost O(n); the test holds them equal.
        attn_keys(spec, n_head, layer, head, i, &keys);
        for (int64_t j : keys) put(&im, i, j, kWhite);
    }
    return im;
}

Image draw_attn_weights(const std::vector<int64_t>& keys, const std::vector<float>& probs, int64_t query, int group,
                        int width, int rows) {
    const size_t cells = size_t(width) * size_t(rows);
    const std::vector<double> weight = cell_weights(keys, probs, group, cells);
    Image im = rgb_image(rows, width, kFuture);
    for (size_t cell = 0; cell < cells; cell++)
        if (int64_t(cell) * group <= query)
            put(&im, int64_t(cell) / width, int64_t(cell) % width, weight[cell] >= 0 ? viridis(weight[cell]) : kBlack);
    return im;
}

Image draw_seen_image(const uint8_t* px, int h, int w, int c, int64_t seen) {
    Image im = rgb_image(h, w, kBlack);
    for (int64_t k = 0; k < int64_t(h) * w; k++) {
        const uint8_t* p = px + k * c;
        int v = c >= 3 ? (299 * p[0] + 587 * p[1] + 114 * p[2]) / 1000 : p[0];
        if ((k + 1) * c > seen) v /= 3;
        put(&im, k / w, k % w, {uint8_t(v), uint8_t(v), uint8_t(v)});
    }
    return im;
}

Image draw_attn_overlay(const uint8_t* px, int h, int w, int c, const std::vector<int64_t>& keys,
                        const std::vector<float>& probs, int64_t query) {
    Image im = draw_seen_image(px, h, w, c, query);
    const std::vector<double> weight = cell_weights(keys, probs, c, size_t(h) * size_t(w));
    for (size_t cell = 0; cell < weight.size(); cell++) {
        if (weight[cell] < 0) continue;
        // A floor under the opacity: a key of little weight still tints its pixel, so that the head's set
        // (a strided head's row to the left and column above) shows beside the few keys that carry the weight.
        const double alpha = kOverlayFloor + (1 - kOverlayFloor) * weight[cell];
        const Rgb top = viridis(weight[cell]);
        const uint8_t over[3] = {top.r, top.g, top.b};
        uint8_t* p = &im.px[cell * 3];
        for (int k = 0; k < 3; k++) p[k] = uint8_t(std::lround(p[k] + (over[k] - p[k]) * alpha));
    }
    return im;
}

int label_height() { return 10 * kFontScale + 4; }  // glyphs with descenders reach 10 units down

int text_width(const std::string& s) {
    std::string text = printable(s);
    return stb_easy_font_width(text.data()) * kFontScale;
}

ImageSize panel_grid_size(size_t n, int h, int w, int label_w, int cols, int scale, const std::string& title) {
    // A place past the largest side makes the grid too large whatever else: clamped there, the
    // products below stay far inside 64 bits.
    const int64_t most = int64_t(kMaxImageSide) + 1;
    const int64_t cell_w =
        std::min(std::max<int64_t>(int64_t(w) * scale, label_w + kGridPad), most);  // labels of neighbours apart
    const int64_t cell_h = std::min(int64_t(h) * scale, most);
    const int64_t columns = std::max(cols, 1), rows = int64_t((n + size_t(columns) - 1) / size_t(columns));
    const int64_t top = kGridPad + (title.empty() ? 0 : label_height());
    const int64_t width = std::max(kGridPad + columns * (cell_w + kGridPad), int64_t(2 * kGridPad + text_width(title)));
    return {uint64_t(top + rows * (label_height() + cell_h + kGridPad)), uint64_t(width)};
}

Image panel_grid(const std::vector<Panel>& panels, int cols, int scale, const std::string& title) {
    int panel_h = 0, panel_w = 0, label_w = 0;
    for (const Panel& p : panels) {
        panel_h = std::max(panel_h, p.im.h);
        panel_w = std::max(panel_w, p.im.w);
        label_w = std::max(label_w, text_width(p.label));
    }
    const ImageSize size = panel_grid_size(panels.size(), panel_h, panel_w, label_w, cols, scale, title);
    if (std::string problem = image_size_problem(size.h, size.w, 3); !problem.empty()) fail("panel_grid: " + problem);
    const int cell_w = std::max(panel_w * scale, label_w + kGridPad), cell_h = panel_h * scale;
    const int top = kGridPad + (title.empty() ? 0 : label_height());
    Image out = rgb_image(int(size.h), int(size.w), kWhite);
    if (!title.empty()) draw_text(&out, kGridPad, kGridPad, title, kBlack);
    for (size_t k = 0; k < panels.size(); k++) {
        const Panel& p = panels[k];
        const int x0 = kGridPad + int(k % size_t(cols)) * (cell_w + kGridPad);
        const int y0 = top + int(k / size_t(cols)) * (label_height() + cell_h + kGridPad);
        draw_text(&out, y0, x0, p.label, kBlack);
        const int py = y0 + label_height();
        for (int y = 0; y < p.im.h * scale; y++)
            for (int x = 0; x < p.im.w * scale; x++) {
                const uint8_t* s = &p.im.px[(size_t(y / scale) * size_t(p.im.w) + size_t(x / scale)) * 3];
                put(&out, py + y, x0 + x, {s[0], s[1], s[2]});
            }
        if (p.mark_y >= 0) {
            // A frame around the marked cell, outside it, so that its own colour stays visible.
            const int t = std::clamp(scale / 4, 1, 3);  // thin enough to stay off the next panel
            const int64_t y = py + int64_t(p.mark_y) * scale, x = x0 + int64_t(p.mark_x) * scale;
            fill_rect(&out, y - t, x - t, y, x + scale + t, kMark);
            fill_rect(&out, y + scale, x - t, y + scale + t, x + scale + t, kMark);
            fill_rect(&out, y, x - t, y + scale, x, kMark);
            fill_rect(&out, y, x + scale, y + scale, x + scale + t, kMark);
        }
    }
    return out;
}

}  // namespace st
