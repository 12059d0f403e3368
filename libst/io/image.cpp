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
// stb_image's asserts check its decoder's own state, which a corrupt JPEG can reach (and whose
// expressions then shift by nonsense): st answers bad input with an error, never an abort.
#define STBI_ASSERT(x) ((void)0)
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

static std::string dims(uint64_t h, uint64_t w) { return std::to_string(h) + "x" + std::to_string(w); }
static std::string dims(uint64_t h, uint64_t w, int c) { return dims(h, w) + "x" + std::to_string(c); }
static std::string dims(const Image& im) { return dims(uint64_t(im.h), uint64_t(im.w), im.c); }

// Products and sums of sizes that may come from a hostile header: past 2^64 they stay at 2^64 - 1.
static uint64_t mul(uint64_t a, uint64_t b) { return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b; }
static uint64_t add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

std::string image_size_problem(uint64_t h, uint64_t w, int c) {
    const uint64_t bytes = mul(mul(h, w), uint64_t(std::max(c, 1)));
    if (h <= kMaxImageSide && w <= kMaxImageSide && bytes <= kMaxImageBytes) return "";
    const std::string size = h <= kMaxImageSide && w <= kMaxImageSide ? " (" + std::to_string(bytes) + " bytes)" : "";
    return "a " + dims(h, w, c) + " picture" + size + " is more than st handles: at most " +
           std::to_string(kMaxImageSide) + " pixels a side and " + std::to_string(kMaxImageBytes) + " bytes (" +
           std::to_string(kMaxImageBytes >> 20) + " MiB) of pixels";
}

// The pictures the library makes are consistent; one put together by hand may not be.
static void check_image(const Image& im, const char* what) {
    if (im.h <= 0 || im.w <= 0 || im.c < 1 || im.c > 4 || im.px.size() != size_t(im.h) * size_t(im.w) * size_t(im.c))
        fail(std::string(what) + ": a " + dims(im) + " picture with " + std::to_string(im.px.size()) +
             " bytes of pixels");
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

static uint32_t be32(const uint8_t* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

// The element type an IDX file's third byte names; null for a byte that names none.
static const char* idx_type(uint8_t code) {
    switch (code) {
        case 0x08:
            return "unsigned bytes";
        case 0x09:
            return "signed bytes";
        case 0x0B:
            return "16-bit integers";
        case 0x0C:
            return "32-bit integers";
        case 0x0D:
            return "floats";
        case 0x0E:
            return "doubles";
        default:
            return nullptr;
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
    if (b[3] != 3)
        return "an IDX file of " + std::to_string(b[3]) + " dimensions; images have 3 (count, height, width)";
    if (b.size() < 16) return "truncated IDX file: the header is cut short";
    *n = be32(&b[4]), *h = be32(&b[8]), *w = be32(&b[12]);
    if (*n == 0) return "the IDX header says 0 images";
    if (*h == 0 || *w == 0 || *h > 65535 || *w > 65535)
        return "the IDX header says images of " + std::to_string(*h) + "x" + std::to_string(*w);
    const uint64_t want = uint64_t(*n) * *h * *w, got = b.size() - 16;
    const std::string says = "header says " + std::to_string(*n) + " images of " + std::to_string(*h) + "x" +
                             std::to_string(*w) + ", " + std::to_string(got) + " bytes follow";
    if (got < want) return "truncated IDX file: " + says;
    if (got > want) return "IDX file longer than its header says: " + says;
    return image_size_problem(*h, *w, 1);
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
            for (size_t k = 0; k < 3; k++) out[i].px[p * 3 + k] = planes[k * kCifarPlane + p];
    }
    return out;
}

// ---- stb_image ----

// stb_image trusts a header: it allocates what the header claims before it reads a pixel, reads a
// PGM/PPM cut short into a buffer it never fills, and a BMP cut short as black. So each header is
// checked against the bytes that follow it first.

// Where a JPEG's start marker ends: stb_image takes any number of 0xFF before its 0xD8. 0 for none.
static size_t jpeg_start(const std::vector<uint8_t>& b) {
    size_t at = 0;
    while (at < b.size() && b[at] == 0xFF) at++;
    return at > 0 && at < b.size() && b[at] == 0xD8 ? at + 1 : 0;
}

static std::string stb_format(const std::vector<uint8_t>& b) {
    auto starts = [&](const std::string& magic) {
        return b.size() >= magic.size() && std::memcmp(b.data(), magic.data(), magic.size()) == 0;
    };
    if (starts("\x89PNG")) return "PNG";
    if (jpeg_start(b)) return "JPEG";
    if (starts("BM")) return "BMP";
    if (starts("P5")) return "PGM";
    if (starts("P6")) return "PPM";
    return "image";
}

static uint32_t le32(const uint8_t* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
static uint16_t le16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }

// A header's claim of h x w pixels (c channels) and the bytes of pixels that must follow it.
struct Claim {
    uint64_t h = 0, w = 0;
    int c = 1;
    uint64_t need = 0, have = 0;
};

// Sides past stb_image's own limit (2^24) are refused before their products are taken.
constexpr uint64_t kAbsurdSide = uint64_t(1) << 24;

static void check_claim(const Claim& k, const std::string& name, const std::string& format) {
    if (k.h > kAbsurdSide || k.w > kAbsurdSide) fail(name + ": " + image_size_problem(k.h, k.w, k.c));
    if (k.h == 0 || k.w == 0) fail(name + ": corrupted " + format + ": its header says " + dims(k.h, k.w) + " pixels");
    if (k.have < k.need)
        fail(name + ": truncated " + format + ": " + dims(k.h, k.w, k.c) + " needs " + std::to_string(k.need) +
             " bytes of pixels, " + std::to_string(k.have) + " follow");
    if (std::string problem = image_size_problem(k.h, k.w, k.c); !problem.empty()) fail(name + ": " + problem);
}

// A PGM or PPM header read as stb_image reads it: "P5" or "P6", then the width, the height and the
// largest value, each after whitespace and '#' comments; the pixels start one byte after the last
// digit, two bytes a sample when the largest value passes 255.
static Claim pnm_claim(const std::vector<uint8_t>& b, const std::string& name, const std::string& format) {
    const size_t n = b.size();
    size_t i = 2;
    auto next = [&]() -> char { return i < n ? char(b[i++]) : '\0'; };
    auto space = [](char ch) {
        return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
    };
    char ch = next();
    auto skip = [&] {
        for (;;) {
            while (i < n && space(ch)) ch = next();
            if (i >= n || ch != '#') break;
            while (i < n && ch != '\n' && ch != '\r') ch = next();
        }
    };
    // Saturating: stb_image's int would overflow on a long run of digits, so such a header never reaches it.
    auto number = [&] {
        uint64_t v = 0;
        for (; i < n && ch >= '0' && ch <= '9'; ch = next()) v = std::min(v * 10 + uint64_t(ch - '0'), kAbsurdSide + 1);
        return v;
    };
    Claim k;
    k.c = b[1] == '6' ? 3 : 1;
    skip();
    k.w = number();
    skip();
    k.h = number();
    skip();
    const uint64_t maxval = number();
    if (maxval > 65535) fail(name + ": corrupted " + format + ": its largest value passes 65535");
    k.need = mul(mul(mul(k.h, k.w), uint64_t(k.c)), maxval > 255 ? 2 : 1);
    k.have = n - i;
    return k;
}

// The BMP header fields that size its pixels; none (h == 0, need == 0) for a header stb_image
// refuses by itself (an unknown header size, run-length or other compression).
static Claim bmp_claim(const std::vector<uint8_t>& b, const std::string& name) {
    Claim k;
    if (b.size() < 18) return k;
    const uint32_t header = le32(&b[14]);
    if (header != 12 && header != 40 && header != 56 && header != 108 && header != 124) return k;
    if (b.size() < 14 + size_t(header)) fail(name + ": truncated BMP: its header is cut short");
    int64_t w, h;
    uint32_t bits;
    int32_t compression = 0;  // signed, as stb_image reads it: it takes a negative one for none
    if (header == 12) {
        w = le16(&b[18]), h = le16(&b[20]), bits = le16(&b[24]);
    } else {
        w = int32_t(le32(&b[18])), h = int32_t(le32(&b[22])), bits = le16(&b[28]), compression = int32_t(le32(&b[30]));
    }
    if (compression == 1 || compression == 2 || compression >= 4) return k;
    // A negative height is a picture stored top-down; a negative width is nonsense.
    if (w < 0) fail(name + ": corrupted BMP: its header says a width of " + std::to_string(w));
    k.w = uint64_t(w);
    k.h = uint64_t(h < 0 ? -h : h);
    k.c = bits == 32 ? 4 : 3;
    if (k.w > kAbsurdSide || k.h > kAbsurdSide || k.w == 0 || k.h == 0) return k;
    // Rows padded to 4 bytes; the last row's padding may be left out. stb_image reads at most 32 bits a pixel.
    bits = std::clamp(bits, 1u, 32u);
    const uint64_t row = (k.w * bits + 31) / 32 * 4;
    k.need = (k.h - 1) * row + (k.w * bits + 7) / 8;
    const uint64_t offset = le32(&b[10]);
    k.have = b.size() > offset ? b.size() - offset : 0;
    return k;
}

// A PNG's chunks: stb_image grows its buffer to the length a chunk claims before it reads it, and
// copies an empty IDAT chunk to a null buffer when no data came before it.
static void check_png_chunks(const std::vector<uint8_t>& b, const std::string& name) {
    bool data = false;
    for (size_t at = 8; at + 8 <= b.size();) {
        const uint64_t length = be32(&b[at]), left = b.size() - at - 8;
        const std::string type(reinterpret_cast<const char*>(&b[at + 4]), 4);
        if (length + 4 > left)
            fail(name + ": corrupted or truncated PNG (a chunk claims " + std::to_string(length) +
                 " bytes and its checksum, " + std::to_string(left) + " follow)");
        if (type == "IDAT" && length == 0 && !data)
            fail(name + ": corrupted PNG (an empty IDAT chunk before the first pixels)");
        if (type == "IDAT") data = true;
        if (type == "IEND") return;
        at += 12 + size_t(length);
    }
}

// A JPEG's Huffman tables, found as stb_image finds them (markers between segments, and after the
// entropy-coded data of a scan) and read as it reads them: stb_image 2.27 writes past its arrays for
// a table of more than 256 codes, and decodes a scan with a table no segment defined from
// uninitialised memory, indexing with whatever it finds there.
static void check_jpeg_tables(const std::vector<uint8_t>& b, const std::string& name) {
    const size_t n = b.size();
    bool defined[2][4] = {}, progressive = false;  // [DC, AC][table]
    for (size_t at = jpeg_start(b); at + 1 < n;) {
        if (b[at] != 0xFF || b[at + 1] == 0xFF) {
            at++;
            continue;
        }
        const uint8_t marker = b[at + 1];
        // A stuffed zero or a restart in entropy-coded data, or a marker without a segment.
        if (marker == 0x00 || (marker >= 0xD0 && marker <= 0xD9) || marker == 0x01) {
            at += 2;
            continue;
        }
        if (at + 4 > n) return;
        const size_t length = size_t(b[at + 2]) << 8 | b[at + 3];
        if (length < 2) return;  // stb_image skips to the end of the file
        size_t p = at + 4;
        auto next = [&]() -> size_t { return p < n ? b[p++] : (p++, 0); };
        if (marker == 0xC2) progressive = true;
        if (marker == 0xC4) {
            for (int64_t left = int64_t(length) - 2; left > 0;) {
                const size_t table = next();
                size_t codes = 0;
                for (int i = 0; i < 16; i++) codes += next();
                if (codes > 256)
                    fail(name + ": corrupted JPEG (a Huffman table of " + std::to_string(codes) +
                         " codes; at most 256)");
                if (table >> 4 > 1 || (table & 15) > 3) return;  // stb_image stops there
                defined[table >> 4][table & 15] = true;
                p += codes;
                left -= int64_t(17 + codes);
            }
        }
        if (marker == 0xDA) {
            const size_t components = next();
            std::vector<size_t> tables;
            for (size_t c = 0; c < components && c < 4; c++) next(), tables.push_back(next());
            const size_t start = next();
            // A sequential scan takes both tables; a progressive one, the DC table for coefficient 0
            // (the first scans) and the AC table for the rest.
            const bool dc = !progressive || start == 0, ac = !progressive || start != 0;
            for (size_t t : tables)
                if ((dc && (t >> 4) < 4 && !defined[0][t >> 4]) || (ac && (t & 15) < 4 && !defined[1][t & 15]))
                    fail(name + ": corrupted JPEG (a scan uses a Huffman table that no DHT segment defines)");
        }
        at += 2 + length;
    }
}

// The most pixels N bytes of a compressed format can hold: deflate inflates a byte to at most
// 1032, and a pixel takes at least one bit (PNG); an 8x8 block takes at least one bit of Huffman
// code in some scan (JPEG).
static uint64_t most_pixels(const std::string& format, uint64_t n) {
    return format == "PNG" ? mul(n, 1032 * 8) : mul(n, 64 * 8);
}

static Image stb_picture(const std::vector<uint8_t>& b, const std::string& name) {
    const std::string format = stb_format(b);
    if (format == "PGM" || format == "PPM") check_claim(pnm_claim(b, name, format), name, format);
    if (format == "BMP") {
        const Claim k = bmp_claim(b, name);
        if (k.h != 0 || k.w != 0) check_claim(k, name, format);
    }
    if (format == "PNG") check_png_chunks(b, name);
    if (format == "JPEG") check_jpeg_tables(b, name);
    int w = 0, h = 0, c = 0;
    if (b.size() > INT_MAX || !stbi_info_from_memory(b.data(), int(b.size()), &w, &h, &c))
        fail(name + ": not an image: neither PNG, JPEG, BMP, PGM/PPM, IDX (raw or gzip) nor CIFAR-10");
    // Grey with alpha becomes RGBA: an Image has 1, 3 or 4 channels.
    const int want = c == 2 ? 4 : c;
    if (w <= 0 || h <= 0)
        fail(name + ": corrupted " + format + ": its header says " + std::to_string(h) + "x" + std::to_string(w) +
             " pixels");
    if ((format == "PNG" || format == "JPEG") && uint64_t(h) * uint64_t(w) > most_pixels(format, b.size()))
        fail(name + ": corrupted " + format + ": its header says " + dims(uint64_t(h), uint64_t(w)) +
             " pixels, more than " + std::to_string(b.size()) + " bytes of " + format + " can hold");
    if (std::string problem = image_size_problem(uint64_t(h), uint64_t(w), want); !problem.empty())
        fail(name + ": " + problem);
    uint8_t* px = stbi_load_from_memory(b.data(), int(b.size()), &w, &h, &c, want);
    if (!px) fail(name + ": corrupted or truncated " + format + " (" + stbi_failure_reason() + ")");
    Image im{h, w, want, std::vector<uint8_t>(px, px + size_t(h) * size_t(w) * size_t(want))};
    stbi_image_free(px);
    return im;
}

// ---- reading ----

static std::vector<Image> decode_plain(const std::vector<uint8_t>& b, const std::string& name, std::string* format) {
    if (b.empty()) fail(name + ": empty file");
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

std::vector<Image> images_from_bytes(const std::vector<uint8_t>& bytes, const std::string& name, std::string* format) {
    std::string ignored;
    if (!format) format = &ignored;
    if (bytes.empty()) fail(name + ": empty file");
    // One level of gzip only: a gzip stream inside another could inflate a millionfold.
    if (!is_gzip(bytes)) return decode_plain(bytes, name, format);
    std::vector<Image> out = decode_plain(gunzip(bytes, name), name, format);
    *format += " (gzip)";
    return out;
}

std::vector<Image> read_images(const std::string& path, std::string* format) {
    return images_from_bytes(read_file(path), input_name(path), format);
}

std::vector<Image> read_images(const std::string& path) { return read_images(path, nullptr); }

std::vector<Image> images_from_records(const uint8_t* data, size_t n, int h, int w, int c, const std::string& name) {
    if (h <= 0 || w <= 0 || (c != 1 && c != 3 && c != 4)) fail(name + ": bad record size " + dims(Image{h, w, c, {}}));
    const size_t size = size_t(h) * size_t(w) * size_t(c);
    if (n % size != 0)
        fail(name + ": " + std::to_string(n) + " bytes is not a whole number of " + dims(Image{h, w, c, {}}) +
             " records (" + std::to_string(size) + " bytes each)");
    std::vector<Image> out(n / size, Image{h, w, c, {}});
    for (size_t i = 0; i < out.size(); i++) out[i].px.assign(data + i * size, data + (i + 1) * size);
    return out;
}

// ---- writing ----

void write_png(const std::string& path, const Image& im) {
    check_image(im, path.c_str());
    if (std::string problem = image_size_problem(uint64_t(im.h), uint64_t(im.w), im.c); !problem.empty())
        fail(output_name(path) + ": " + problem);
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
            for (size_t i = 0; i < acc.size(); i++) acc[i] += t.weight * rows[size_t(t.src) * acc.size() + i];
        for (size_t i = 0; i < acc.size(); i++)
            out.px[y * acc.size() + i] = uint8_t(std::clamp(std::lround(acc[i]), 0l, 255l));
    }
    return out;
}

Image crop_center(const Image& im, int h, int w) {
    check_image(im, "crop_center");
    if (h <= 0 || w <= 0 || h > im.h || w > im.w)
        fail("cannot crop a " + dims(im.h, im.w) + " picture to " + dims(h, w));
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
        fail("image_grid: columns " + std::to_string(cols) + ", pad " + std::to_string(pad) + ", scale " +
             std::to_string(scale) + ": expected at least 1, 0 and 1");
    const Image& first = ims[0];
    for (const Image& im : ims) {
        check_image(im, "image_grid");
        if (im.h != first.h || im.w != first.w || im.c != first.c)
            fail("image_grid: a " + dims(im) + " picture among " + dims(first) + " ones");
    }
    const ImageSize size = grid_size(ims.size(), first.h, first.w, cols, pad, scale);
    if (std::string problem = image_size_problem(size.h, size.w, first.c); !problem.empty())
        fail("image_grid: " + problem);
    const size_t ch = size_t(first.h) * size_t(scale), cw = size_t(first.w) * size_t(scale), c = size_t(first.c);
    const size_t H = size_t(size.h), W = size_t(size.w);
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

ImageSize grid_size(size_t n, int h, int w, int cols, int pad, int scale) {
    const uint64_t columns = uint64_t(std::max(cols, 1)), rows = (uint64_t(n) + columns - 1) / columns,
                   gap = uint64_t(std::max(pad, 0));
    const uint64_t k = uint64_t(std::max(scale, 1)), ch = mul(uint64_t(std::max(h, 0)), k),
                   cw = mul(uint64_t(std::max(w, 0)), k);
    return {add(mul(rows, ch), mul(rows + 1, gap)), add(mul(columns, cw), mul(columns + 1, gap))};
}

}  // namespace st
