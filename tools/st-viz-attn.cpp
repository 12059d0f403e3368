// st-viz-attn: pictures of attention, as PNG. Without --input: the attention sets of every layer and
// head, of a model or of a pattern given by st-train's options. With --input: what a model's heads
// attend to from one query position of that input, computed on the CPU by the Decoder.
#include <algorithm>
#include <cstdio>

#include "checkpoint.h"
#include "cli.h"
#include "cpu/decoder.h"
#include "error.h"
#include "io/file.h"
#include "io/image.h"
#include "sample.h"
#include "viz.h"

using namespace st;

// With MODEL these pick the layers and heads to draw; without, they are st-train's model options.
static constexpr std::string_view kPickOptions[] = {"layers", "heads"};

static std::vector<int> indices(int n) {
    std::vector<int> out(static_cast<size_t>(n));
    for (int k = 0; k < n; k++) out[size_t(k)] = k;
    return out;
}

// The layers or heads of n that --NAME names: "all" (the default) or indices such as 0,3.
static std::vector<int> pick(const cxxopts::ParseResult& r, const char* name, int n) {
    const std::string text = r.count(name) ? r[name].as<std::string>() : "all";
    if (text == "all") return indices(n);
    std::vector<int> out;
    for (size_t at = 0; at <= text.size();) {
        const size_t end = std::min(text.find(',', at), text.size());
        out.push_back(int(cli::to_int(std::string("--") + name, text.substr(at, end - at), 0, n - 1)));
        at = end + 1;
    }
    return out;
}

static std::string arg(const cxxopts::ParseResult& r, const char* name, const std::string& fallback) {
    return r.count(name) ? r[name].as<std::string>() : fallback;
}

static std::string spec_title(const AttnSpec& s, int n) {
    std::string t = std::string(pattern_name(s.pattern)) + ", " + head_mode_name(s.mode);
    if (s.pattern != Pattern::dense) t += ", stride " + std::to_string(s.stride);
    if (s.pattern == Pattern::fixed) t += ", summary " + std::to_string(s.summary);
    return t + ": positions 0 to " + std::to_string(n - 1) + " (row = query, column = key)";
}

static std::string panel_label(int layer, int head) {
    return "layer " + std::to_string(layer) + " head " + std::to_string(head);
}

// The image a model looks at: record R of raw records of H*W*C bytes when the input's size is a
// whole number of them, else picture R of a file that read_images knows (PNG, JPEG, IDX, CIFAR...).
static std::vector<uint8_t> input_image(const std::string& path, const Config& c, long long record) {
    const std::string name = input_name(path);
    std::vector<uint8_t> bytes = read_file(path);
    const size_t n = size_t(c.n_ctx);
    if (!bytes.empty() && bytes.size() % n == 0) {
        if (size_t(record) >= bytes.size() / n)
            fail(name + ": " + std::to_string(bytes.size() / n) + " records of " + std::to_string(n) +
                 " bytes; --record " + std::to_string(record) + " is beyond them");
        return std::vector<uint8_t>(bytes.begin() + std::ptrdiff_t(size_t(record) * n),
                                    bytes.begin() + std::ptrdiff_t(size_t(record + 1) * n));
    }
    if (path == "-")
        fail(name + ": " + std::to_string(bytes.size()) + " bytes is not a whole number of " + std::to_string(n) +
             "-byte records");
    std::vector<Image> ims = read_images(path);
    if (size_t(record) >= ims.size())
        fail(name + ": " + std::to_string(ims.size()) + " pictures; --record " + std::to_string(record) +
             " is beyond them");
    Image im = convert_channels(ims[size_t(record)], c.image_c);
    if (im.h != c.image_h || im.w != c.image_w)
        fail(name + ": a " + std::to_string(im.w) + "x" + std::to_string(im.h) + " picture, the model takes " +
             std::to_string(c.image_w) + "x" + std::to_string(c.image_h) +
             " (width x height); resize or crop it first");
    return im.px;
}

// Panels in a grid, before scaling.
struct Drawing {
    std::vector<Panel> panels;
    int cols = 1, scale = 1;
    std::string title;
};

// --scale, or FALLBACK: a size that reads well for the drawing.
static int drawing_scale(const cxxopts::ParseResult& r, int fallback) {
    return r.count("scale") ? int(cli::to_int("--scale", r["scale"].as<std::string>(), 1, 64)) : fallback;
}

// Refuses, before the work of drawing, a picture larger than write_png takes: N panels of H x W in
// D's columns at its scale, labelled by "layer L head H" of LAYERS and HEADS (and "input").
static void check_size(const cxxopts::ParseResult& r, const Drawing& d, size_t n, int h, int w,
                       const std::vector<int>& layers, const std::vector<int>& heads) {
    int label_w = text_width("input");
    for (int l : layers)
        for (int k : heads) label_w = std::max(label_w, text_width(panel_label(l, k)));
    const ImageSize size = panel_grid_size(n, h, w, label_w, d.cols, d.scale, d.title);
    if (std::string problem = image_size_problem(size.h, size.w, 3); !problem.empty()) {
        const std::string out = r["output"].as<std::string>();
        fail(output_name(out) + ": " + problem + "; use a smaller --scale or fewer --layers or --heads" +
             (r.count("input") ? "" : ", or a smaller --window"));
    }
}

// An image model's attention of one pixel: the input beside a panel per layer and head, the weights
// over the picture (OVERLAY) or alone.
static Drawing image_attention(const cxxopts::ParseResult& r, Decoder& dec, const Config& c,
                               const std::vector<int>& layers, const std::vector<int>& heads, int64_t at, bool overlay,
                               const std::string& model_name) {
    const int H = c.image_h, W = c.image_w, C = c.image_c;
    const long long record = cli::to_int("--record", arg(r, "record", "0"), 0, 1ll << 40);
    int row = H / 2, col = W / 2;
    if (r.count("pixel")) {
        const std::string s = r["pixel"].as<std::string>();
        int used = 0;
        if (std::sscanf(s.c_str(), "%d,%d%n", &row, &col, &used) != 2 || size_t(used) != s.size() || row < 0 ||
            row >= H || col < 0 || col >= W)
            usage_fail("--pixel " + s + ": expected ROW,COL with ROW below " + std::to_string(H) + " and COL below " +
                       std::to_string(W));
    }
    const int64_t query = at >= 0 ? at : (int64_t(row) * W + col) * C;
    // Keys are drawn where they predict, position t at pixel t / C, so that the query's own pixel and
    // (strided) the column above it line up with the picture.
    const int my = int(query / C / W), mx = int(query / C % W);
    Drawing d;
    d.cols = int(heads.size()) + 1;
    d.scale = drawing_scale(r, std::max(1, 128 / std::max(H, W)));
    d.title = model_name + ": attention of pixel " + std::to_string(my) + "," + std::to_string(mx) + " (position " +
              std::to_string(query) + ")";
    check_size(r, d, layers.size() * size_t(d.cols), H, W, layers, heads);
    const std::vector<uint8_t> px = input_image(r["input"].as<std::string>(), c, record);
    // The model was trained with a start byte 0 before each image: input position 0 holds that 0,
    // position t holds byte t - 1 and predicts byte t. So the query that predicts byte `query` is
    // position `query`, after pushing 0 and the bytes before it.
    dec.push(0);
    for (int64_t t = 0; t < query; t++) dec.push(px[size_t(t)]);
    for (size_t li = 0; li < layers.size(); li++) {
        d.panels.push_back(li == 0 ? Panel{draw_seen_image(px.data(), H, W, C, query), "input", my, mx} : Panel{});
        for (int h : heads) {
            const Decoder::Attention& a = dec.attention(layers[li], h);
            d.panels.push_back({overlay ? draw_attn_overlay(px.data(), H, W, C, a.keys, a.probs, query)
                                        : draw_attn_weights(a.keys, a.probs, query, C, W, H),
                                panel_label(layers[li], h), my, mx});
        }
    }
    return d;
}

// A model of bytes: the attention of one position, a band of the positions before it per layer and head.
static Drawing text_attention(const cxxopts::ParseResult& r, Decoder& dec, const Config& c,
                              const std::vector<int>& layers, const std::vector<int>& heads, int64_t at,
                              const std::string& model_name) {
    const std::string path = r["input"].as<std::string>(), name = input_name(path);
    const std::vector<uint8_t> bytes = read_file(path);
    if (bytes.empty()) fail(name + ": no data (empty)");
    const int64_t query = at >= 0 ? at : std::min<int64_t>(int64_t(bytes.size()), c.n_ctx) - 1;
    if (query >= int64_t(bytes.size()))
        fail(name + ": " + std::to_string(bytes.size()) + " bytes; --at " + std::to_string(query) + " needs at least " +
             std::to_string(query + 1));
    // Rows of the stride, so that a strided column or a fixed chunk's summary stands out; a stride
    // under 8 is widened by whole multiples, which keeps the columns in line.
    const int l = c.attn.stride, width = l * std::max(1, (8 + l - 1) / l);
    const int rows = int(query / width) + 1;
    Drawing d;
    d.cols = int(heads.size());
    d.scale = drawing_scale(r, std::max(2, 384 / width));
    d.title = model_name + ": attention of position " + std::to_string(query) + ", rows of " + std::to_string(width);
    check_size(r, d, layers.size() * heads.size(), rows, width, layers, heads);
    for (int64_t t = 0; t <= query; t++) dec.push(bytes[size_t(t)]);
    for (int layer : layers)
        for (int h : heads) {
            const Decoder::Attention& a = dec.attention(layer, h);
            d.panels.push_back({draw_attn_weights(a.keys, a.probs, query, 1, width, rows), panel_label(layer, h),
                                int(query / width), int(query % width)});
        }
    return d;
}

// The learned attention of one query of --input, computed by the Decoder on the CPU.
static Drawing learned_attention(const cxxopts::ParseResult& r, const Model<float>& m, const std::string& model_name) {
    const Config& c = m.cfg;
    const bool image = c.pos == PosKind::image;
    if (r.count("pixel") && !image)
        usage_fail("--pixel: only for image models (this one reads text or other bytes; use --at)");
    if (r.count("pixel") && r.count("at")) usage_fail("--pixel and --at: give one of them");
    const std::string style = arg(r, "style", image ? "overlay" : "weights");
    if (style != "overlay" && style != "weights") usage_fail("--style " + style + ": expected overlay or weights");
    if (style == "overlay" && !image)
        usage_fail("--style overlay: only for image models (this one reads text or other bytes)");
    const std::vector<int> layers = pick(r, "layers", c.n_layer), heads = pick(r, "heads", c.n_head);
    const int64_t at = r.count("at") ? cli::to_int("--at", r["at"].as<std::string>(), 0, c.n_ctx - 1) : -1;
    Decoder dec(m);
    dec.keep_attention(true);
    return image ? image_attention(r, dec, c, layers, heads, at, style == "overlay", model_name)
                 : text_attention(r, dec, c, layers, heads, at, model_name);
}

// The attention sets of the chosen layers and heads over the first --window positions.
static Drawing attention_sets(const cxxopts::ParseResult& r, const Config& c, const std::vector<int>& layers,
                              const std::vector<int>& heads) {
    const int n = int(cli::to_int("--window", arg(r, "window", std::to_string(std::min(c.n_ctx, 256))), 1, c.n_ctx));
    Drawing d;
    d.cols = int(heads.size());
    d.scale = drawing_scale(r, std::max(1, 256 / n));  // a window of 64 gets 4 pixels a position
    d.title = spec_title(c.attn, n);
    check_size(r, d, layers.size() * heads.size(), n, n, layers, heads);
    for (int l : layers)
        for (int h : heads) d.panels.push_back({draw_attn_set(c.attn, c.n_head, l, h, n), panel_label(l, h)});
    return d;
}

static int viz_main(int argc, char** argv) {
    cxxopts::Options o(
        "st-viz-attn",
        "Draw attention as a PNG: the sets of a pattern, or a model's learned attention of one query (--input).");
    o.positional_help("[MODEL]").custom_help("[OPTIONS] -o FILE.png");
    // clang-format off
    o.add_options()
        ("o,output", "PNG file to write (- for stdout)", cxxopts::value<std::string>())
        ("model", "model file", cxxopts::value<std::string>())
        ("layers", "with MODEL: the layers to draw, e.g. 0,3 (default all); without: how many, as st-train's --layers",
            cxxopts::value<std::string>())
        ("heads", "with MODEL: the heads to draw, e.g. 1 (default all); without: how many, as st-train's --heads",
            cxxopts::value<std::string>())
        ("scale", "pixels per position (default: a size that reads well)", cxxopts::value<std::string>());
    o.add_options("attention sets (no --input)")
        ("window", "draw the first N positions (default: the context, at most 256)", cxxopts::value<std::string>());
    // clang-format on
    cli::add_model_options(o, "attention sets without MODEL: st-train's model", kPickOptions);
    // clang-format off
    o.add_options("learned attention")
        ("input", "the bytes the model reads (an image model: raw records or a picture file)",
            cxxopts::value<std::string>())
        ("at", "the query position (default: the last of the input, or the image's centre pixel)",
            cxxopts::value<std::string>())
        ("pixel", "image models: the query pixel ROW,COL", cxxopts::value<std::string>())
        ("record", "image models: which image of the input (default 0)", cxxopts::value<std::string>())
        ("style", "image models: overlay (the default: the weights in colour over the picture in grey) "
            "or weights (the weights alone)", cxxopts::value<std::string>());
    // clang-format on
    cli::add_common(o);
    o.parse_positional({"model"});
    cxxopts::ParseResult r;
    if (cli::parse(o, argc, argv, &r)) return 0;
    cli::setup(r);  // --threads; the work is on the CPU whatever --device says
    if (!r.count("output")) usage_fail("missing -o FILE: where to write the PNG");
    const bool learned = r.count("input") > 0, with_model = r.count("model") > 0;
    for (const char* n : {"at", "pixel", "record", "style"})
        if (r.count(n) && !learned) usage_fail(std::string("--") + n + ": only with --input (learned attention)");
    if (learned && r.count("window")) usage_fail("--window: only without --input (attention sets)");
    if (learned && !with_model) usage_fail("--input needs MODEL: the model whose attention to draw");
    if (const std::string given = cli::model_option_given(r, kPickOptions); with_model && !given.empty())
        usage_fail(given + ": not with MODEL (the model has its own)");
    const std::string out = r["output"].as<std::string>();
    if (out == "-") cli::refuse_terminal_stdout("a PNG");
    std::vector<std::pair<std::string, std::string>> inputs;
    if (with_model) inputs.push_back({"MODEL", r["model"].as<std::string>()});
    if (learned) inputs.push_back({"--input", r["input"].as<std::string>()});
    refuse_input_as_output("-o", out, inputs);

    Drawing d;
    if (with_model) {
        const std::string path = r["model"].as<std::string>();
        Checkpoint ck = checkpoint_load(path);
        const Config& c = ck.model->cfg;
        d = learned ? learned_attention(r, *ck.model, path.substr(path.find_last_of('/') + 1))
                    : attention_sets(r, c, pick(r, "layers", c.n_layer), pick(r, "heads", c.n_head));
    } else {
        const Config c = cli::config_from_options(r);
        d = attention_sets(r, c, indices(c.n_layer), indices(c.n_head));
    }
    const Image picture = panel_grid(d.panels, d.cols, d.scale, d.title);
    write_png(out, picture);
    return 0;
}

int main(int argc, char** argv) { return cli::run("st-viz-attn", argc, argv, viz_main); }
