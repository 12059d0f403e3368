// Pictures of attention (st-viz-attn): the element sets of a pattern (Child et al. 2019, section 4) and the
// learned weights of one query, as RGB panels in a labelled grid.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/image.h"
#include "layout.h"

namespace st {

struct Rgb {
    uint8_t r, g, b;
};

// Matplotlib's viridis (violet, blue, green, yellow) at x in [0, 1] (clamped): perceptually even,
// with luminance rising with x, so a weight reads the same in colour and in grey.
Rgb viridis(double x);

// The set of one layer and head over the first n positions, row i = query, column j = key: white
// where i attends to j, black where it does not, dark grey above the diagonal (j > i, never seen).
Image draw_attn_set(const AttnSpec& spec, int n_head, int layer, int head, int n);

// One query's attention weights (keys and probs as Decoder::attention gives them) on a grid of
// `rows` x `width` cells, position t in cell t / group. A cell shows the sum of its keys' weights
// over the largest such sum (viridis); a cell with no key of the set is black, a cell after the
// query light grey.
//   text:   group 1, width the stride, so that the pattern's columns line up
//   images: group c (the channels of a pixel together), width w, rows h
Image draw_attn_weights(const std::vector<int64_t>& keys, const std::vector<float>& probs, int64_t query, int group,
                        int width, int rows);

// An image of h x w x c bytes in grey (luma when c >= 3), with the pixels not wholly among the
// first `seen` bytes dimmed: what the model has read before the query.
Image draw_seen_image(const uint8_t* px, int h, int w, int c, int64_t seen);

// The picture of draw_seen_image(px, h, w, c, query) with one query's attention weights (as
// draw_attn_weights draws an image's, a pixel showing its channels' keys together) blended on top:
// viridis of the pixel's weight, its opacity rising from a quarter for the least weight to whole for
// the largest. Pixels with no key of the set stay as draw_seen_image draws them, in grey.
Image draw_attn_overlay(const uint8_t* px, int h, int w, int c, const std::vector<int64_t>& keys,
                        const std::vector<float>& probs, int64_t query);

struct Panel {
    Image im;                      // RGB; an empty one (h == 0) leaves its place blank
    std::string label;             // drawn above it
    int mark_y = -1, mark_x = -1;  // a pixel (before scaling) framed in red: the query
};

inline constexpr int kGridPad = 8;  // pixels between panels and around the grid
int label_height();                 // pixels of a line of text with the gap below it
int text_width(const std::string& s);

// The drawing that panel_grid does, for other pictures (plot.h's curves) to share.
Image rgb_image(int h, int w, Rgb fill);
// Fills the rectangle [y0, y1) x [x0, x1), clipped to the image.
void fill_rect(Image* im, int64_t y0, int64_t x0, int64_t y1, int64_t x1, Rgb c);
// Draws s in stb_easy_font's glyphs at twice their size, its top left corner at (y0, x0), clipped to the
// image. A byte the font has no glyph for (outside printable ASCII) is drawn, and measured, as '?'.
void draw_text(Image* im, int y0, int x0, const std::string& s, Rgb c);

// Panels in a grid of `cols` columns, filled row by row, each scaled up by `scale` (nearest
// neighbour) under its label, on white, with `title` (when not empty) on a line above them all.
// Every place is as large as the largest panel and wider than the widest label. A grid beyond
// image.h's limits is an st::Error before anything is allocated.
Image panel_grid(const std::vector<Panel>& panels, int cols, int scale, const std::string& title);
// The size of panel_grid's picture of n panels of at most h x w pixels (before scaling) whose labels
// are at most label_w pixels wide: for a tool to check (image_size_problem) before it draws.
ImageSize panel_grid_size(size_t n, int h, int w, int label_w, int cols, int scale, const std::string& title);

}  // namespace st
