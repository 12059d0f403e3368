// Tests for libst/io/image: reading every format (PNG, JPEG, BMP, PGM/PPM, IDX raw and gzip, CIFAR-10),
// PNG out, channel conversion, resizing, cropping, grids, records, and the errors on bad files:
// pictures cut short, headers that claim more than their file holds, pictures beyond the limits.
#include <zlib.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <tuple>

#include "error.h"
#include "io/image.h"
#include "temp_dir.h"

// The JPEG case needs a JPEG: stb_image_write makes one here (static, so apart from libst's copy).
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>

using Dir = st::test::TempDir;

namespace {

void put(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}
std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::vector<uint8_t> concat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// A picture whose every byte differs from its neighbours'.
st::Image picture(int h, int w, int c, uint32_t seed = 1) {
    st::Image im{h, w, c, std::vector<uint8_t>(size_t(h * w * c))};
    for (size_t i = 0; i < im.px.size(); i++) im.px[i] = uint8_t((i * 37 + seed * 101) % 251);
    return im;
}
st::Image constant(int h, int w, int c, uint8_t value) {
    return {h, w, c, std::vector<uint8_t>(size_t(h * w * c), value)};
}

void check_same(const st::Image& a, const st::Image& b) {
    CHECK(a.h == b.h);
    CHECK(a.w == b.w);
    CHECK(a.c == b.c);
    CHECK(a.px == b.px);
}

// An IDX file: magic 0x0000TTDD, DIMS as big-endian 32-bit numbers, then DATA.
std::vector<uint8_t> idx(uint8_t type, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> out = {0, 0, type, uint8_t(dims.size())};
    for (uint32_t d : dims)
        for (int shift = 24; shift >= 0; shift -= 8) out.push_back(uint8_t(d >> shift));
    return concat(out, data);
}

std::vector<uint8_t> gzip(const std::vector<uint8_t>& data) {
    z_stream z{};
    REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::vector<uint8_t> out(deflateBound(&z, uLong(data.size())) + 64);
    z.next_in = const_cast<Bytef*>(data.data());
    z.avail_in = uInt(data.size());
    z.next_out = out.data();
    z.avail_out = uInt(out.size());
    REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

// A 24-bit BMP: bottom-up rows of blue, green, red, each padded to 4 bytes.
std::vector<uint8_t> bmp(const st::Image& im) {
    const uint32_t row = uint32_t(im.w * 3 + 3) / 4 * 4, size = row * uint32_t(im.h);
    std::vector<uint8_t> out = bytes_of("BM");
    auto u32 = [&](uint32_t v) {
        for (int k = 0; k < 4; k++) out.push_back(uint8_t(v >> (8 * k)));
    };
    auto u16 = [&](uint16_t v) { out.push_back(uint8_t(v)), out.push_back(uint8_t(v >> 8)); };
    u32(54 + size), u32(0), u32(54);                                     // file header
    u32(40), u32(uint32_t(im.w)), u32(uint32_t(im.h)), u16(1), u16(24);  // info header
    u32(0), u32(size), u32(2835), u32(2835), u32(0), u32(0);
    for (int y = im.h - 1; y >= 0; y--) {
        for (int x = 0; x < im.w; x++)
            for (int k = 2; k >= 0; k--) out.push_back(im.px[size_t((y * im.w + x) * 3 + k)]);
        out.resize(out.size() + row - uint32_t(im.w * 3), 0);
    }
    return out;
}

// PGM (1 channel) or PPM (3): a text header, then the pixels as they are.
std::vector<uint8_t> pnm(const st::Image& im) {
    std::string header = (im.c == 1 ? "P5\n" : "P6\n") + std::to_string(im.w) + " " + std::to_string(im.h) + "\n255\n";
    return concat(bytes_of(header), im.px);
}

std::vector<uint8_t> first(const std::vector<uint8_t>& b, size_t n) { return {b.begin(), b.begin() + ptrdiff_t(n)}; }

// A PNG or JPEG of IM by stb_image_write (apart from write_png, which refuses what these tests need).
std::vector<uint8_t> encoded(const st::Image& im, bool jpeg) {
    std::vector<uint8_t> out;
    auto append = [](void* to, void* data, int n) {
        auto v = static_cast<std::vector<uint8_t>*>(to);
        v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + n);
    };
    const int ok = jpeg ? stbi_write_jpg_to_func(append, &out, im.w, im.h, im.c, im.px.data(), 90)
                        : stbi_write_png_to_func(append, &out, im.w, im.h, im.c, im.px.data(), im.w * im.c);
    REQUIRE(ok);
    return out;
}

void put_be(std::vector<uint8_t>& b, size_t at, uint32_t v, int bytes) {
    for (int k = 0; k < bytes; k++) b[at + size_t(k)] = uint8_t(v >> (8 * (bytes - 1 - k)));
}

// A grey 8x8 JPEG by hand: quantisation by ones, a DC table of one 1-bit code (a difference of 0)
// and DC_CODES - 1 more of 15 and 16 bits, an AC table of one 1-bit code (end of block), and a scan that
// takes tables SCAN_TABLES (DC << 4 | AC): its one block is two bits.
std::vector<uint8_t> tiny_jpeg(size_t dc_codes = 1, uint8_t scan_tables = 0x00) {
    std::vector<uint8_t> j;
    auto add = [&](std::initializer_list<size_t> bytes, size_t repeat = 1) {
        for (size_t r = 0; r < repeat; r++)
            for (size_t b : bytes) j.push_back(uint8_t(b));
    };
    const size_t dht = 2 + 17 + dc_codes,
                 more = dc_codes - 1;  // half of them 15 bits long, half 16: a count is one byte
    add({0xFF, 0xD8, 0xFF, 0xDB, 0, 67, 0});
    add({1}, 64);
    add({0xFF, 0xC0, 0, 11, 8, 0, 8, 0, 8, 1, 1, 0x11, 0});
    add({0xFF, 0xC4, dht >> 8, dht & 255, 0x00, 1});
    add({0}, 13);
    add({more - more / 2, more / 2});
    add({0}, dc_codes);
    add({0xFF, 0xC4, 0, 20, 0x10, 1});
    add({0}, 16);
    add({0xFF, 0xDA, 0, 8, 1, 1, scan_tables, 0, 63, 0, 0x3F, 0xFF, 0xD9});
    return j;
}

}  // namespace

// The call throws st::Error, starting "PATH: " and containing WHAT.
#define CHECK_IMAGE_ERROR(call, path, what)                                                            \
    do {                                                                                               \
        CHECK_THROWS_AS(call, st::Error);                                                              \
        CHECK_THROWS_WITH(call, Catch::StartsWith(std::string(path) + ": ") && Catch::Contains(what)); \
    } while (0)

TEST_CASE("write_png and read_images round trip grey, RGB and RGBA exactly", "[image]") {
    Dir dir;
    for (int c : {1, 3, 4}) {
        INFO(c << " channels");
        st::Image im = picture(5, 7, c, uint32_t(c));
        st::write_png(dir / "x.png", im);
        std::string format;
        std::vector<st::Image> got = st::read_images(dir / "x.png", &format);
        REQUIRE(got.size() == 1);
        check_same(got[0], im);
        CHECK(format == "PNG");
    }
    CHECK(dir.names().size() == 1);
}

TEST_CASE("write_png: a failed write leaves nothing", "[image]") {
    Dir dir;
    CHECK_IMAGE_ERROR(st::write_png(dir / "no/such/x.png", picture(2, 2, 1)), dir / "no/such/x.png", "No such file");
    CHECK_THROWS_AS(st::write_png(dir / "bad.png", st::Image{2, 2, 1, {1, 2, 3}}), st::Error);
    CHECK(dir.names().size() == 0);
}

TEST_CASE("write_png and image_grid refuse a picture beyond the limits, before any work", "[image]") {
    Dir dir;
    CHECK_IMAGE_ERROR(st::write_png(dir / "wide.png", constant(1, 65536, 1, 0)), dir / "wide.png",
                      "a 1x65536x1 picture is more than st handles: at most 65535 pixels a side and 536870912 bytes");
    st::write_png(dir / "widest.png", constant(1, 65535, 1, 0));
    CHECK(dir.names() == std::vector<std::string>{"widest.png"});
    // 65540 x 65540 x 4: 17 GB that image_grid must not try to allocate.
    CHECK_THROWS_WITH(st::image_grid({picture(64, 64, 4)}, 1, 2, 1024),
                      Catch::Contains("a 65540x65540x4 picture is more than st handles"));
}

TEST_CASE("grid_size is image_grid's size; image_size_problem says what passes the limits", "[image]") {
    for (auto [n, cols, pad, scale] : {std::tuple{5, 2, 1, 2}, std::tuple{1, 3, 0, 1}, std::tuple{7, 7, 4, 3}}) {
        const st::Image g = st::image_grid(std::vector<st::Image>(size_t(n), picture(3, 2, 1)), cols, pad, scale);
        const st::ImageSize size = st::grid_size(size_t(n), 3, 2, cols, pad, scale);
        CHECK((size.h == uint64_t(g.h) && size.w == uint64_t(g.w)));
    }
    // 4096 pictures of 64x64x4, 64 columns, 8 times larger: 4.3 GB, past what stb_image_write counts.
    const st::ImageSize big = st::grid_size(4096, 64, 64, 64, 2, 8);
    CHECK((big.h == 32898 && big.w == 32898));
    CHECK(st::image_size_problem(big.h, big.w, 4) ==
          "a 32898x32898x4 picture (4329113616 bytes) is more than st handles: at most 65535 pixels a side and "
          "536870912 bytes (512 MiB) of pixels");
    CHECK(st::image_size_problem(65535, 2048, 4) == "");
    CHECK(st::image_size_problem(65535, 2049, 4) != "");
    CHECK(st::image_size_problem(uint64_t(1) << 40, uint64_t(1) << 40, 4) != "");
}

TEST_CASE("read_images reads IDX files, raw, gzip and gzip of several members", "[image]") {
    Dir dir;
    std::vector<uint8_t> px = picture(1, 100 * 28 * 28, 1).px;
    std::vector<uint8_t> file = idx(0x08, {100, 28, 28}, px);
    // Two members: the output outgrows the size the last member's trailer announces.
    std::vector<uint8_t> members =
        concat(gzip({file.begin(), file.begin() + 30000}), gzip({file.begin() + 30000, file.end()}));
    const std::vector<std::pair<std::string, std::vector<uint8_t>>> cases = {
        {"IDX", file}, {"IDX (gzip)", gzip(file)}, {"IDX (gzip)", members}};
    for (const auto& [want_format, bytes] : cases) {
        put(dir / "images", bytes);
        std::string format;
        std::vector<st::Image> got = st::read_images(dir / "images", &format);
        CHECK(format == want_format);
        REQUIRE(got.size() == 100);
        for (size_t i : {size_t(0), size_t(57), size_t(99)}) {
            auto first = px.begin() + ptrdiff_t(i * 784);
            check_same(got[i], st::Image{28, 28, 1, std::vector<uint8_t>(first, first + 784)});
        }
    }
}

TEST_CASE("read_images reads CIFAR-10 records as interleaved RGB", "[image]") {
    Dir dir;
    std::vector<uint8_t> file;
    for (int n = 0; n < 3; n++) {
        file.push_back(uint8_t(n * 4));  // label
        for (int k = 0; k < 3; k++)
            for (int p = 0; p < 1024; p++) file.push_back(uint8_t(p * (k + 1) + n));
    }
    put(dir / "data_batch_1.bin", file);
    std::string format;
    std::vector<st::Image> got = st::read_images(dir / "data_batch_1.bin", &format);
    CHECK(format == "CIFAR-10");
    REQUIRE(got.size() == 3);
    for (int n = 0; n < 3; n++) {
        REQUIRE((got[size_t(n)].h == 32 && got[size_t(n)].w == 32 && got[size_t(n)].c == 3));
        for (int p : {0, 1, 33, 1023})
            for (int k = 0; k < 3; k++) CHECK(got[size_t(n)].px[size_t(p * 3 + k)] == uint8_t(p * (k + 1) + n));
    }
}

TEST_CASE("read_images reads PGM, PPM, BMP and JPEG", "[image]") {
    Dir dir;
    st::Image grey = picture(3, 5, 1), rgb = picture(4, 3, 3);
    put(dir / "a.pgm", pnm(grey));
    put(dir / "a.ppm", pnm(rgb));
    put(dir / "a.bmp", bmp(rgb));
    std::string format;
    check_same(st::read_images(dir / "a.pgm", &format).at(0), grey);
    CHECK(format == "PGM");
    check_same(st::read_images(dir / "a.ppm", &format).at(0), rgb);
    CHECK(format == "PPM");
    check_same(st::read_images(dir / "a.bmp", &format).at(0), rgb);
    CHECK(format == "BMP");

    // JPEG is lossy: only the size is exact.
    put(dir / "a.jpg", encoded(picture(16, 24, 3), true));
    st::Image got = st::read_images(dir / "a.jpg", &format).at(0);
    CHECK((got.h == 16 && got.w == 24 && got.c == 3));
    CHECK(format == "JPEG");
}

TEST_CASE("read_images errors name the file and what is wrong", "[image]") {
    Dir dir;
    const std::string p = dir / "f";
    put(p, {});
    CHECK_IMAGE_ERROR(st::read_images(p), p, "empty file");
    put(p, bytes_of("just some text, not a picture\n"));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "not an image");
    put(p, idx(0x08, {10, 28, 28}, std::vector<uint8_t>(5000)));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "truncated IDX file: header says 10 images of 28x28, 5000 bytes follow");
    put(p, idx(0x08, {2, 2, 2}, std::vector<uint8_t>(9)));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "longer than its header says");
    put(p, {0, 0, 8, 3, 0, 0});
    CHECK_IMAGE_ERROR(st::read_images(p), p, "header is cut short");
    put(p, idx(0x08, {10}, std::vector<uint8_t>(10)));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "IDX file of labels");
    put(p, idx(0x0D, {1, 2, 2}, std::vector<uint8_t>(16)));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "IDX file of floats");
    put(p, gzip(idx(0x08, {10}, std::vector<uint8_t>(10))));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "IDX file of labels");

    std::vector<uint8_t> gz = gzip(idx(0x08, {10, 28, 28}, picture(1, 7840, 1).px));
    put(p, std::vector<uint8_t>(gz.begin(), gz.end() - 20));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "truncated gzip stream");
    put(p, std::vector<uint8_t>(gz.begin(), gz.begin() + 5));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "truncated gzip stream");
    std::vector<uint8_t> bad = gz;
    bad[gz.size() / 2] ^= 0xff;
    bad[gz.size() / 2 + 1] ^= 0x55;
    put(p, bad);
    CHECK_IMAGE_ERROR(st::read_images(p), p, "corrupted gzip stream");

    st::write_png(dir / "x.png", picture(20, 20, 3));
    std::vector<uint8_t> png;
    {
        std::ifstream f(dir / "x.png", std::ios::binary);
        png.assign(std::istreambuf_iterator<char>(f), {});
    }
    put(p, std::vector<uint8_t>(png.begin(), png.begin() + ptrdiff_t(png.size() / 2)));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "corrupted or truncated PNG");
    CHECK_IMAGE_ERROR(st::read_images(dir / "missing"), dir / "missing", "No such file or directory");
}

TEST_CASE("read_images refuses a PGM, PPM or BMP cut short instead of making up its missing pixels", "[image]") {
    Dir dir;
    const std::string p = dir / "f";
    put(p, first(pnm(picture(20, 20, 3)), 13 + 57));  // "P6\n20 20\n255\n" is 13 bytes
    CHECK_IMAGE_ERROR(st::read_images(p), p, "truncated PPM: 20x20x3 needs 1200 bytes of pixels, 57 follow");
    put(p, first(pnm(picture(3, 5, 1)), 11 + 14));  // "P5\n5 3\n255\n" is 11
    CHECK_IMAGE_ERROR(st::read_images(p), p, "truncated PGM: 3x5x1 needs 15 bytes of pixels, 14 follow");
    // 16-bit samples: two bytes each.
    put(p, concat(bytes_of("P5\n4 2\n65535\n"), std::vector<uint8_t>(15, 7)));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "truncated PGM: 2x4x1 needs 16 bytes of pixels, 15 follow");
    put(p, concat(bytes_of("P5\n4 2\n65535\n"), std::vector<uint8_t>(16, 7)));
    CHECK(st::read_images(p).at(0).px == std::vector<uint8_t>(8, 7));
    // A BMP's rows are padded to 4 bytes; only the last row's padding may be missing.
    const std::vector<uint8_t> b = bmp(picture(4, 3, 3));  // rows of 9 bytes and 3 of padding
    put(p, first(b, b.size() - 3));
    CHECK(st::read_images(p).size() == 1);
    put(p, first(b, b.size() - 4));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "truncated BMP: 4x3x3 needs 45 bytes of pixels, 44 follow");
}

TEST_CASE("read_images refuses a header that claims more pixels than its file can hold, before decoding", "[image]") {
    Dir dir;
    const std::string p = dir / "f";
    // 47 bytes that claim 20000 x 20000 RGB pixels: stb_image would allocate 1.2 GB and fill none of it.
    std::vector<uint8_t> ppm = concat(bytes_of("P6\n20000 20000\n255\n"), std::vector<uint8_t>(28, 1));
    REQUIRE(ppm.size() == 47);
    put(p, ppm);
    CHECK_IMAGE_ERROR(st::read_images(p), p,
                      "truncated PPM: 20000x20000x3 needs 1200000000 bytes of pixels, 28 follow");
    put(p, bytes_of("P5\n99999999999999999999 2\n255\n"));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "is more than st handles");
    put(p, bytes_of("P5\n2 2\n99999999999999999999\n1234"));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "corrupted PGM: its largest value passes 65535");
    put(p, bytes_of("P5\n0 2\n255\n"));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "corrupted PGM: its header says 2x0 pixels");

    // A BMP header of 30000 x 30000 (negative: top-down) with 8 bytes of pixels.
    std::vector<uint8_t> b = bmp(picture(2, 2, 3));
    for (int k = 0; k < 4; k++)
        b[18 + size_t(k)] = uint8_t(30000 >> (8 * k)), b[22 + size_t(k)] = uint8_t(uint32_t(-30000) >> (8 * k));
    put(p, b);
    CHECK_IMAGE_ERROR(st::read_images(p), p,
                      "truncated BMP: 30000x30000x3 needs 2700000000 bytes of pixels, 16 follow");

    // A PNG whose header says 20000 x 20000 (its checksum made good): deflate cannot hold that in the file.
    std::vector<uint8_t> png = encoded(picture(2, 2, 1), false);
    put_be(png, 16, 20000, 4);
    put_be(png, 20, 20000, 4);
    put_be(png, 29, uint32_t(crc32(0, &png[12], 17)), 4);
    put(p, png);
    CHECK_IMAGE_ERROR(st::read_images(p), p,
                      "corrupted PNG: its header says 20000x20000 pixels, more than " + std::to_string(png.size()) +
                          " bytes of PNG can hold");
    // A chunk that claims more bytes than follow it.
    png = encoded(picture(2, 2, 1), false);
    put_be(png, 33, 1u << 30, 4);
    put(p, png);
    CHECK_IMAGE_ERROR(st::read_images(p), p, "corrupted or truncated PNG (a chunk claims 1073741824 bytes");

    // A JPEG whose frame header says 60000 x 60000.
    std::vector<uint8_t> jpeg = encoded(picture(16, 16, 3), true);
    size_t sof = 2;
    while (sof + 9 < jpeg.size() && !(jpeg[sof] == 0xFF && jpeg[sof + 1] == 0xC0)) sof++;
    REQUIRE(sof + 9 < jpeg.size());
    put_be(jpeg, sof + 5, 60000, 2);
    put_be(jpeg, sof + 7, 60000, 2);
    put(p, jpeg);
    CHECK_IMAGE_ERROR(st::read_images(p), p, "corrupted JPEG: its header says 60000x60000 pixels, more than");

    // Whole, but wider than st reads.
    put(p, encoded(constant(1, 70000, 1, 9), false));
    CHECK_IMAGE_ERROR(st::read_images(p), p,
                      "a 1x70000x1 picture is more than st handles: at most 65535 pixels a side");
    // One gzip stream inside another is no format: the second could inflate a thousandfold again.
    put(p, gzip(gzip(idx(0x08, {1, 2, 2}, {1, 2, 3, 4}))));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "not an image");
}

TEST_CASE("read_images refuses the JPEG and PNG structures that stb_image 2.27 mishandles", "[image]") {
    Dir dir;
    const std::string p = dir / "f";
    put(p, tiny_jpeg());
    CHECK(st::read_images(p).at(0).px == std::vector<uint8_t>(64, 128));
    // 257 codes: stb_image writes past its table; 256 fit.
    put(p, tiny_jpeg(257));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "corrupted JPEG (a Huffman table of 257 codes; at most 256)");
    put(p, tiny_jpeg(256));
    CHECK(st::read_images(p).size() == 1);
    // Tables 1, never defined: stb_image would decode with what its memory held. Fill bytes before
    // the start marker do not hide a JPEG from the checks (stb_image reads it all the same).
    put(p, tiny_jpeg(1, 0x11));
    CHECK_IMAGE_ERROR(st::read_images(p), p,
                      "corrupted JPEG (a scan uses a Huffman table that no DHT segment defines)");
    put(p, concat({0xFF, 0xFF}, tiny_jpeg(1, 0x11)));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "corrupted JPEG (a scan uses a Huffman table");
    // An empty IDAT chunk before any data: stb_image copies it to a null pointer.
    std::vector<uint8_t> png = encoded(picture(2, 2, 1), false);
    const std::vector<uint8_t> empty_idat = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E};
    png.insert(png.begin() + 33, empty_idat.begin(), empty_idat.end());
    put(p, png);
    CHECK_IMAGE_ERROR(st::read_images(p), p, "corrupted PNG (an empty IDAT chunk before the first pixels)");
    // A BMP whose compression field is negative: stb_image reads it as uncompressed, so it is checked as one.
    std::vector<uint8_t> b = bmp(picture(4, 3, 3));
    for (size_t i = 30; i < 34; i++) b[i] = 0xFF;
    put(p, first(b, b.size() - 4));
    CHECK_IMAGE_ERROR(st::read_images(p), p, "truncated BMP: 4x3x3 needs 45 bytes of pixels, 44 follow");
}

TEST_CASE("images_from_records cuts records and refuses a partial one", "[image]") {
    std::vector<uint8_t> bytes = picture(1, 2 * 3 * 4 * 3, 1).px;
    std::vector<st::Image> ims = st::images_from_records(bytes.data(), bytes.size(), 2, 3, 4, "in");
    REQUIRE(ims.size() == 3);
    check_same(ims[2], st::Image{2, 3, 4, std::vector<uint8_t>(bytes.begin() + 48, bytes.end())});
    CHECK(st::images_from_records(bytes.data(), 0, 2, 3, 4, "in").empty());
    CHECK_IMAGE_ERROR(st::images_from_records(bytes.data(), 70, 2, 3, 4, "in"), "in",
                      "70 bytes is not a whole number of 2x3x4 records");
    CHECK_THROWS_AS(st::images_from_records(bytes.data(), 12, 2, 3, 2, "in"), st::Error);
}

TEST_CASE("convert_channels: luma, repeated grey, alpha dropped or opaque", "[image]") {
    st::Image rgb{1, 4, 3, {255, 0, 0, 0, 255, 0, 0, 0, 255, 90, 90, 90}};
    check_same(st::convert_channels(rgb, 1), st::Image{1, 4, 1, {76, 150, 29, 90}});
    check_same(st::convert_channels(rgb, 4),
               st::Image{1, 4, 4, {255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 90, 90, 90, 255}});
    st::Image grey{1, 2, 1, {7, 200}};
    check_same(st::convert_channels(grey, 3), st::Image{1, 2, 3, {7, 7, 7, 200, 200, 200}});
    check_same(st::convert_channels(grey, 4), st::Image{1, 2, 4, {7, 7, 7, 255, 200, 200, 200, 255}});
    st::Image rgba{1, 2, 4, {10, 20, 30, 0, 40, 40, 40, 128}};
    check_same(st::convert_channels(rgba, 3), st::Image{1, 2, 3, {10, 20, 30, 40, 40, 40}});
    check_same(st::convert_channels(rgba, 1), st::Image{1, 2, 1, {18, 40}});
    check_same(st::convert_channels(rgb, 3), rgb);
    CHECK_THROWS_AS(st::convert_channels(rgb, 2), st::Error);
}

TEST_CASE("resize_image: constants stay constant, 2x down averages blocks, growing interpolates", "[image]") {
    for (auto [h, w] : {std::pair{3, 4}, std::pair{7, 9}, std::pair{5, 20}, std::pair{13, 3}}) {
        INFO(h << "x" << w);
        check_same(st::resize_image(constant(7, 9, 3, 200), h, w), constant(h, w, 3, 200));
    }
    // 2x2 blocks of (a, b, c, d) whose means are whole numbers.
    st::Image blocks{2, 4, 1, {10, 30, 0, 0, 50, 70, 4, 8}};
    check_same(st::resize_image(blocks, 1, 2), st::Image{1, 2, 1, {40, 3}});
    st::Image rgb{2, 2, 3, {0, 100, 8, 4, 100, 8, 8, 100, 8, 12, 100, 0}};
    check_same(st::resize_image(rgb, 1, 1), st::Image{1, 1, 3, {6, 100, 6}});
    // Growing 2 -> 4: source positions -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    check_same(st::resize_image(st::Image{1, 2, 1, {0, 100}}, 1, 4), st::Image{1, 4, 1, {0, 25, 75, 100}});
    st::Image im = picture(6, 5, 4);
    check_same(st::resize_image(im, 6, 5), im);
    CHECK_THROWS_AS(st::resize_image(im, 0, 5), st::Error);
}

TEST_CASE("crop_center keeps the middle", "[image]") {
    st::Image im{5, 6, 1, {}};
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 6; x++) im.px.push_back(uint8_t(y * 10 + x));
    check_same(st::crop_center(im, 3, 2), st::Image{3, 2, 1, {12, 13, 22, 23, 32, 33}});
    check_same(st::crop_center(im, 5, 6), im);
    CHECK_THROWS_AS(st::crop_center(im, 6, 6), st::Error);
    CHECK_THROWS_AS(st::crop_center(im, 5, 7), st::Error);
}

TEST_CASE("image_grid: size, placement, padding and scale", "[image]") {
    std::vector<st::Image> ims;
    for (int i = 0; i < 5; i++) ims.push_back(constant(2, 3, 1, uint8_t(10 * (i + 1))));
    ims[4].px[5] = 99;  // bottom right pixel of the last picture
    st::Image g = st::image_grid(ims, 2, 1, 2, 255);
    // 3 rows of 4-pixel pictures and 4 pads; 2 columns of 6-pixel pictures and 3 pads.
    REQUIRE((g.h == 16 && g.w == 15 && g.c == 1));
    auto at = [&](int y, int x) { return g.px[size_t(y * g.w + x)]; };
    for (int i = 0; i < 5; i++) {
        int top = 1 + (i / 2) * 5, left = 1 + (i % 2) * 7;
        INFO("picture " << i);
        CHECK(at(top, left) == 10 * (i + 1));
        CHECK(at(top - 1, left) == 255);
        CHECK(at(top, left - 1) == 255);
    }
    CHECK(at(11 + 3, 1 + 5) == 99);  // scaled twice: the last 2x2 of the picture
    CHECK(at(11 + 2, 1 + 4) == 99);
    CHECK(at(11 + 2, 1 + 3) == 50);
    CHECK(at(11, 8) == 255);  // the empty sixth place
    CHECK(at(15, 14) == 255);

    st::Image rgb = st::image_grid({picture(4, 4, 3)}, 3, 0);
    CHECK((rgb.h == 4 && rgb.w == 12 && rgb.c == 3));
    check_same(st::crop_center(st::image_grid({picture(4, 4, 3)}, 1, 2, 1, 0), 4, 4), picture(4, 4, 3));
    CHECK_THROWS_AS(st::image_grid({picture(2, 2, 1), picture(2, 3, 1)}, 2), st::Error);
    CHECK_THROWS_AS(st::image_grid({}, 2), st::Error);
}
