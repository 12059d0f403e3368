// Pictures in and out: IDX (raw or gzip), CIFAR-10 and the stb_image formats in; PNG out; channel
// conversion, resizing, cropping and grids.
#include "io/image.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>

#include "error.h"
#include "io/file.h"

// stb is compiled here and only here, its functions static so that they stay out of libst.a's symbols.
// Only the formats image.h promises: TGA has no magic number, so stray bytes could pass for one.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_NO_STDIO
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_PNM
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

namespace st {

static std::string dims(int h, int w) { return std::to_string(h) + "x" + std::to_string(w); }
static std::string dims(const Image& im) { return dims(im.h, im.w) + "x" + std::to_string(im.c); }

// The pictures the library makes are consistent; one put together by hand may not be.
static void check_image(const Image& im, const char* what) {
    if (im.h <= 0 || im.w <= 0 || im.c < 1 || im.c > 4 || im.px.size() != size_t(im.h) * size_t(im.w) * size_t(im.c))
        fail(std::string(what) + ": a " + dims(im) + " picture with " + std::to_string(im.px.size()) + " bytes of pixels");
}

// ---- gzip ----

static bool is_gzip(const std::vector<uint8_t>& b) { return b.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b; }

// zlib, not stb's inflate: stb reads zlib streams only, which would leave the gzip header, its CRC
// and concatenated members to us; zlib's inflate does all three (windowBits 15 + 16).
static std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& name) {
    if (in.size() < 18) fail(name + ": truncated gzip stream");  // a header and a trailer take 18 bytes
    z_stream z{};
    if (inflateInit2(&z, 15 + 16) != Z_OK) throw std::bad_alloc();
    std::unique_ptr<z_stream, decltype(&inflateEnd)> guard(&z, inflateEnd);
    // The trailer's size (modulo 4 GiB) sizes the output, within deflate's greatest ratio (1032:1).
    const uint8_t* trailer = &in[in.size() - 4];
    size_t isize = size_t(trailer[3]) << 24 | size_t(trailer[2]) << 16 | size_t(trailer[1]) << 8 | trailer[0];
    std::vector<uint8_t> out(std::max<size_t>(std::min(isize, in.size() * 1032), 1 << 16));
    const size_t chunk = 1 << 30;  // zlib counts in 32-bit uInt
    const uint8_t* next = in.data();
    size_t left = in.size(), used = 0;
    for (;;) {
        if (z.avail_in == 0) {
            z.next_in = const_cast<Bytef*>(next);
            z.avail_in = uInt(std::min(left, chunk));
            next += z.avail_in;
            left -= z.avail_in;
        }
        if (used == out.size()) out.resize(out.size() * 2);
        const uInt room = uInt(std::min(out.size() - used, chunk));
        z.next_out = out.data() + used;
        z.avail_out = room;
        int r = inflate(&z, Z_NO_FLUSH);
        used += room - z.avail_out;
        if (r == Z_STREAM_END) {
            if (z.avail_in == 0 && left == 0) break;
            inflateReset(&z);  // another gzip member follows, as gzip itself allows
        } else if (r == Z_MEM_ERROR) {
            throw std::bad_alloc();
        } else if (r == Z_DATA_ERROR || r == Z_NEED_DICT) {
            fail(name + ": corrupted gzip stream (" + (z.msg ? z.msg : "bad data") + ")");
        } else if (r == Z_BUF_ERROR && z.avail_in == 0 && left == 0) {
            fail(name + ": truncated gzip stream");
        }
    }
    out.resize(used);
    return out;
}

// ---- IDX ----

static uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

// The element type an IDX file's third byte names; null for a byte that names none.
static const char* idx_type(uint8_t code) {
    switch (code) {
    case 0x08: return "unsigned bytes";
    case 0x09: return "signed bytes";
    case 0x0B: return "16-bit integers";
    case 0x0C: return "32-bit integers";
    case 0x0D: return "floats";
    case 0x0E: return "doubles";
    default: return nullptr;
    }
}

// Two zero bytes, a type, a number of dimensions: the start of an IDX file.
static bool looks_like_idx(const std::vector<uint8_t>& b) {
    return b.size() >= 4 && b[0] == 0 && b[1] == 0 && idx_type(b[2]) && b[3] >= 1;
}

// What keeps B from being an IDX file of N x H x W unsigned bytes ("" when nothing); sets N, H, W.
static std::string idx_problem(const std::vector<uint8_t>& b, uint32_t* n, uint32_t* h, uint32_t* w) {
    if (b[2] != 0x08) return std::string("an IDX file of ") + idx_type(b[2]) + ", not of unsigned bytes";
    if (b[3] == 1) return "an IDX file of labels (1 dimension), not of images";
    if (b[3] != 3) return "an IDX file of " + std::to_string(b[3]) + " dimensions; images have 3 (count, height, width)";
    if (b.size() < 16) return "truncated IDX file: the header is cut short";
    *n = be32(&b[4]), *h = be32(&b[8]), *w = be32(&b[12]);
    if (*n == 0) return "the IDX header says 0 images";
    if (*h == 0 || *w == 0 || *h > 65535 || *w > 65535)
        return "the IDX header says images of " + std::to_string(*h) + "x" + std::to_string(*w);
    const uint64_t want = uint64_t(*n) * *h * *w, got = b.size() - 16;
    const std::string says = "header says " + std::to_string(*n) + " images of " + std::to_string(*h) + "x" + std::to_string(*w) +
                             ", " + std::to_string(got) + " bytes follow";
    if (got < want) return "truncated IDX file: " + says;
    if (got > want) return "IDX file longer than its header says: " + says;
    return "";
}

static std::vector<Image> idx_images(const std::vector<uint8_t>& b, size_t n, int h, int w) {
    std::vector<Image> out(n, Image{h, w, 1, {}});
    const size_t size = size_t(h) * size_t(w);
    for (size_t i = 0; i < out.size(); i++)
        out[i].px.assign(b.begin() + ptrdiff_t(16 + i * size), b.begin() + ptrdiff_t(16 + (i + 1) * size));
    return out;
}

// ---- CIFAR-10 ----

// A record: a label byte (0..9), then the red, green and blue planes of 32 x 32.
constexpr size_t kCifarPlane = 32 * 32, kCifarRecord = 1 + 3 * kCifarPlane;

static bool is_cifar(const std::vector<uint8_t>& b) {
    if (b.empty() || b.size() % kCifarRecord != 0) return false;
    for (size_t i = 0; i < b.size(); i += kCifarRecord)
        if (b[i] > 9) return false;
    return true;
}

static std::vector<Image> cifar_images(const std::vector<uint8_t>& b) {
    std::vector<Image> out(b.size() / kCifarRecord, Image{32, 32, 3, std::vector<uint8_t>(3 * kCifarPlane)});
    for (size_t i = 0; i < out.size(); i++) {
        const uint8_t* planes = &b[i * kCifarRecord + 1];
        for (size_t p = 0; p < kCifarPlane; p++)
            for (size_t k = 0; k < 3; k++)
                out[i].px[p * 3 + k] = planes[k * kCifarPlane + p];
    }
    return out;
}

// ---- stb_image ----

static std::string stb_format(const std::vector<uint8_t>& b) {
    auto starts = [&](const std::string& magic) { return b.size() >= magic.size() && std::memcmp(b.data(), magic.data(), magic.size()) == 0; };
    if (starts("\x89PNG")) return "PNG";
    if (starts("\xff\xd8")) return "JPEG";
    if (starts("BM")) return "BMP";
    if (starts("P5")) return "PGM";
    if (starts("P6")) return "PPM";
    return "image";
}

static Image stb_picture(const std::vector<uint8_t>& b, const std::string& name) {
    int w = 0, h = 0, c = 0;
    if (b.size() > INT_MAX || !stbi_info_from_memory(b.data(), int(b.size()), &w, &h, &c))
        fail(name + ": not an image: neither PNG, JPEG, BMP, PGM/PPM, IDX (raw or gzip) nor CIFAR-10");
    // Grey with alpha becomes RGBA: an Image has 1, 3 or 4 channels.
    const int want = c == 2 ? 4 : c;
    uint8_t* px = stbi_load_from_memory(b.data(), int(b.size()), &w, &h, &c, want);
    if (!px) fail(name + ": corrupted or truncated " + stb_format(b) + " (" + stbi_failure_reason() + ")");
    Image im{h, w, want, std::vector<uint8_t>(px, px + size_t(h) * size_t(w) * size_t(want))};
    stbi_image_free(px);
    return im;
}

// ---- reading ----

static std::vector<Image> decode(const std::vector<uint8_t>& b, const std::string& name, std::string* format) {
    if (b.empty()) fail(name + ": empty file");
    if (is_gzip(b)) {
        std::vector<Image> out = decode(gunzip(b, name), name, format);
        *format += " (gzip)";
        return out;
    }
    // An IDX header that its size confirms wins; CIFAR-10 records (whose first label and pixels can
    // look like an IDX header) come next; an IDX header that its size does not confirm is an error.
    if (looks_like_idx(b)) {
        uint32_t n = 0, h = 0, w = 0;
        std::string problem = idx_problem(b, &n, &h, &w);
        if (problem.empty()) {
            *format = "IDX";
            return idx_images(b, n, int(h), int(w));
        }
        if (!is_cifar(b)) fail(name + ": " + problem);
    }
    if (is_cifar(b)) {
        *format = "CIFAR-10";
        return cifar_images(b);
    }
    Image im = stb_picture(b, name);
    *format = stb_format(b);
    return {std::move(im)};
}

std::vector<Image> read_images(const std::string& path, std::string* format) {
    std::string ignored;
    return decode(read_file(path), path == "-" ? "stdin" : path, format ? format : &ignored);
}

std::vector<Image> read_images(const std::string& path) { return read_images(path, nullptr); }

std::vector<Image> images_from_records(const uint8_t* data, size_t n, int h, int w, int c, const std::string& name) {
    if (h <= 0 || w <= 0 || (c != 1 && c != 3 && c != 4)) fail(name + ": bad record size " + dims(Image{h, w, c, {}}));
    const size_t size = size_t(h) * size_t(w) * size_t(c);
    if (n % size != 0)
        fail(name + ": " + std::to_string(n) + " bytes is not a whole number of " + dims(Image{h, w, c, {}}) + " records (" +
             std::to_string(size) + " bytes each)");
    std::vector<Image> out(n / size, Image{h, w, c, {}});
    for (size_t i = 0; i < out.size(); i++)
        out[i].px.assign(data + i * size, data + (i + 1) * size);
    return out;
}

// ---- writing ----

void write_png(const std::string& path, const Image& im) {
    check_image(im, path.c_str());
    std::vector<uint8_t> png;
    auto append = [](void* to, void* data, int n) {
        auto p = static_cast<const uint8_t*>(data);
        static_cast<std::vector<uint8_t>*>(to)->insert(static_cast<std::vector<uint8_t>*>(to)->end(), p, p + n);
    };
    if (!stbi_write_png_to_func(append, &png, im.w, im.h, im.c, im.px.data(), im.w * im.c))
        fail(path + ": cannot encode a " + dims(im) + " picture as PNG");
    write_file_atomic(path, png.data(), png.size());
}

// ---- transforms ----

Image convert_channels(const Image& im, int c) {
    check_image(im, "convert_channels");
    if (c != 1 && c != 3 && c != 4) fail("convert_channels: " + std::to_string(c) + " channels; expected 1, 3 or 4");
    if (c == im.c) return im;
    Image out{im.h, im.w, c, std::vector<uint8_t>(size_t(im.h) * size_t(im.w) * size_t(c))};
    for (size_t p = 0; p < size_t(im.h) * size_t(im.w); p++) {
        const uint8_t* s = &im.px[p * size_t(im.c)];
        uint8_t* d = &out.px[p * size_t(c)];
        uint8_t rgb[3] = {s[0], s[0], s[0]};
        if (im.c >= 3) std::memcpy(rgb, s, 3);
        if (c == 1) {
            // ITU-R BT.601 luma in integers; the weights sum to 1000, so grey stays exactly grey.
            d[0] = uint8_t((299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2] + 500) / 1000);
        } else {
            std::memcpy(d, rgb, 3);
            if (c == 4) d[3] = 255;
        }
    }
    return out;
}

namespace {
struct Tap {
    int src;
    float weight;
};
}  // namespace

// For each output index along one axis, the source indices and weights that make it: shrinking, the
// share of each source pixel in the output pixel's interval (area average); growing, the two nearest
// source pixels (bilinear, pixel centres aligned, edges clamped).
static std::vector<std::vector<Tap>> axis_taps(int n_in, int n_out) {
    std::vector<std::vector<Tap>> taps(static_cast<size_t>(n_out));
    for (int i = 0; i < n_out; i++) {
        auto& t = taps[size_t(i)];
        if (n_out <= n_in) {
            const double lo = double(i) * n_in / n_out, hi = double(i + 1) * n_in / n_out;
            for (int s = int(lo); s < hi; s++) {
                double cover = std::min(hi, s + 1.0) - std::max(lo, double(s));
                if (cover > 0) t.push_back({s, float(cover / (hi - lo))});
            }
        } else {
            const double x = std::clamp((i + 0.5) * n_in / n_out - 0.5, 0.0, double(n_in - 1));
            const int s = int(x);
            const double f = x - s;
            t.push_back({s, float(1 - f)});
            if (f > 0) t.push_back({s + 1, float(f)});
        }
    }
    return taps;
}

Image resize_image(const Image& im, int h, int w) {
    check_image(im, "resize_image");
    if (h <= 0 || w <= 0) fail("resize_image: cannot resize to " + dims(h, w));
    const size_t c = size_t(im.c);
    const auto xt = axis_taps(im.w, w), yt = axis_taps(im.h, h);
    // Rows first, into floats (im.h, w, c), then columns, rounding once at the end.
    std::vector<float> rows(size_t(im.h) * size_t(w) * c, 0.f);
    for (size_t y = 0; y < size_t(im.h); y++)
        for (size_t x = 0; x < size_t(w); x++)
            for (const Tap& t : xt[x])
                for (size_t k = 0; k < c; k++)
                    rows[(y * size_t(w) + x) * c + k] += t.weight * im.px[(y * size_t(im.w) + size_t(t.src)) * c + k];
    Image out{h, w, im.c, std::vector<uint8_t>(size_t(h) * size_t(w) * c)};
    std::vector<float> acc(size_t(w) * c);
    for (size_t y = 0; y < size_t(h); y++) {
        std::fill(acc.begin(), acc.end(), 0.f);
        for (const Tap& t : yt[y])
            for (size_t i = 0; i < acc.size(); i++)
                acc[i] += t.weight * rows[size_t(t.src) * acc.size() + i];
        for (size_t i = 0; i < acc.size(); i++)
            out.px[y * acc.size() + i] = uint8_t(std::clamp(std::lround(acc[i]), 0l, 255l));
    }
    return out;
}

Image crop_center(const Image& im, int h, int w) {
    check_image(im, "crop_center");
    if (h <= 0 || w <= 0 || h > im.h || w > im.w) fail("cannot crop a " + dims(im.h, im.w) + " picture to " + dims(h, w));
    const size_t y0 = size_t(im.h - h) / 2, x0 = size_t(im.w - w) / 2, c = size_t(im.c);
    Image out{h, w, im.c, {}};
    out.px.reserve(size_t(h) * size_t(w) * c);
    for (size_t y = y0; y < y0 + size_t(h); y++) {
        auto row = im.px.begin() + ptrdiff_t((y * size_t(im.w) + x0) * c);
        out.px.insert(out.px.end(), row, row + ptrdiff_t(size_t(w) * c));
    }
    return out;
}

Image image_grid(const std::vector<Image>& ims, int cols, int pad, int scale, uint8_t background) {
    if (ims.empty()) fail("image_grid: no pictures");
    if (cols < 1 || pad < 0 || scale < 1)
        fail("image_grid: columns " + std::to_string(cols) + ", pad " + std::to_string(pad) + ", scale " + std::to_string(scale) +
             ": expected at least 1, 0 and 1");
    const Image& first = ims[0];
    for (const Image& im : ims) {
        check_image(im, "image_grid");
        if (im.h != first.h || im.w != first.w || im.c != first.c)
            fail("image_grid: a " + dims(im) + " picture among " + dims(first) + " ones");
    }
    const size_t rows = (ims.size() + size_t(cols) - 1) / size_t(cols);
    const size_t ch = size_t(first.h) * size_t(scale), cw = size_t(first.w) * size_t(scale), c = size_t(first.c);
    const size_t H = rows * ch + (rows + 1) * size_t(pad), W = size_t(cols) * cw + size_t(cols + 1) * size_t(pad);
    if (H > INT_MAX / 4 || W > INT_MAX / 4) fail("image_grid: a grid of " + std::to_string(H) + "x" + std::to_string(W) + " is too large");
    Image out{int(H), int(W), first.c, std::vector<uint8_t>(H * W * c, background)};
    for (size_t i = 0; i < ims.size(); i++) {
        const size_t top = size_t(pad) + (i / size_t(cols)) * (ch + size_t(pad));
        const size_t left = size_t(pad) + (i % size_t(cols)) * (cw + size_t(pad));
        for (size_t y = 0; y < ch; y++)
            for (size_t x = 0; x < cw; x++)
                std::memcpy(&out.px[((top + y) * W + left + x) * c],
                            &ims[i].px[((y / size_t(scale)) * size_t(first.w) + x / size_t(scale)) * c], c);
    }
    return out;
}

}  // namespace st
