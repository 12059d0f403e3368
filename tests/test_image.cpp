// Tests for libst/io/image: reading every format (PNG, JPEG, BMP, PGM/PPM, IDX raw and gzip, CIFAR-10),
// PNG out, channel conversion, resizing, cropping, grids, records, and the errors on bad files.
#include <zlib.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>

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
    for (size_t i = 0; i < im.px.size(); i++)
        im.px[i] = uint8_t((i * 37 + seed * 101) % 251);
    return im;
}
st::Image constant(int h, int w, int c, uint8_t value) { return {h, w, c, std::vector<uint8_t>(size_t(h * w * c), value)}; }

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
    auto u32 = [&](uint32_t v) { for (int k = 0; k < 4; k++) out.push_back(uint8_t(v >> (8 * k))); };
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

}  // namespace

// The call throws st::Error, starting "PATH: " and containing WHAT.
#define CHECK_IMAGE_ERROR(call, path, what)  \
    do {                                     \
        CHECK_THROWS_AS(call, st::Error);    \
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

TEST_CASE("read_images reads IDX files, raw, gzip and gzip of several members", "[image]") {
    Dir dir;
    std::vector<uint8_t> px = picture(1, 100 * 28 * 28, 1).px;
    std::vector<uint8_t> file = idx(0x08, {100, 28, 28}, px);
    // Two members: the output outgrows the size the last member's trailer announces.
    std::vector<uint8_t> members = concat(gzip({file.begin(), file.begin() + 30000}), gzip({file.begin() + 30000, file.end()}));
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
    st::Image photo = picture(16, 24, 3);
    std::vector<uint8_t> jpeg;
    auto append = [](void* to, void* data, int n) {
        auto v = static_cast<std::vector<uint8_t>*>(to);
        v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + n);
    };
    REQUIRE(stbi_write_jpg_to_func(append, &jpeg, photo.w, photo.h, 3, photo.px.data(), 90));
    put(dir / "a.jpg", jpeg);
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

TEST_CASE("images_from_records cuts records and refuses a partial one", "[image]") {
    std::vector<uint8_t> bytes = picture(1, 2 * 3 * 4 * 3, 1).px;
    std::vector<st::Image> ims = st::images_from_records(bytes.data(), bytes.size(), 2, 3, 4, "in");
    REQUIRE(ims.size() == 3);
    check_same(ims[2], st::Image{2, 3, 4, std::vector<uint8_t>(bytes.begin() + 48, bytes.end())});
    CHECK(st::images_from_records(bytes.data(), 0, 2, 3, 4, "in").empty());
    CHECK_IMAGE_ERROR(st::images_from_records(bytes.data(), 70, 2, 3, 4, "in"), "in", "70 bytes is not a whole number of 2x3x4 records");
    CHECK_THROWS_AS(st::images_from_records(bytes.data(), 12, 2, 3, 2, "in"), st::Error);
}

TEST_CASE("convert_channels: luma, repeated grey, alpha dropped or opaque", "[image]") {
    st::Image rgb{1, 4, 3, {255, 0, 0, 0, 255, 0, 0, 0, 255, 90, 90, 90}};
    check_same(st::convert_channels(rgb, 1), st::Image{1, 4, 1, {76, 150, 29, 90}});
    check_same(st::convert_channels(rgb, 4), st::Image{1, 4, 4, {255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 90, 90, 90, 255}});
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
