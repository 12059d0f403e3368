// Pictures in and out: image files (PNG, JPEG, BMP, PGM/PPM through stb_image), the IDX files of
// MNIST and Fashion-MNIST (raw or gzip), the CIFAR-10 binary format, and raw records of H*W*C bytes;
// PNG out (stb_image_write), and grids of many pictures in one PNG.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace st {

// The largest picture st reads or writes: 65535 pixels a side and 2^29 bytes (512 MiB) of pixels,
// h * w * c. stb_image_write counts a PNG's bytes in int and overruns its buffers past 2^31; the
// limit keeps it well inside, and keeps a picture's header from asking for gigabytes.
inline constexpr uint64_t kMaxImageSide = 65535;
inline constexpr uint64_t kMaxImageBytes = uint64_t(1) << 29;

// "" when a picture of h x w x c is within those limits, else what is wrong with it, to follow
// "NAME: ": "a 32898x32898x4 picture (4329113616 bytes) is more than st handles: at most 65535
// pixels a side and 536870912 bytes (512 MiB) of pixels".
std::string image_size_problem(uint64_t h, uint64_t w, int c);

// Pixels in row, column, channel order: px[(y * w + x) * c + k]. c is 1 (grey), 3 (RGB) or 4 (RGBA).
struct Image {
    int h = 0, w = 0, c = 0;
    std::vector<uint8_t> px;
};

// Every picture in PATH ("-" for stdin), told apart by content, not by name: an IDX file of unsigned
// bytes (magic 0x00000803 for N x H x W, 0x00000801 is labels and refused), gzip-compressed or not;
// a CIFAR-10 batch (30,730,000 / 10,000 = 3073-byte records: label + 3 x 32 x 32 planes, given back
// as 32x32x3 interleaved); else one image through stb_image. Throws st::Error naming PATH and what is
// wrong ("PATH: truncated IDX file: header says 60000 images of 28x28, 1234567 bytes follow").
std::vector<Image> read_images(const std::string& path);
// The same, and in FORMAT what PATH holds: "IDX", "CIFAR-10", "PNG", "JPEG", "BMP", "PGM" or "PPM",
// with " (gzip)" after it for a gzip-compressed file.
std::vector<Image> read_images(const std::string& path, std::string* format);
// The same from BYTES in memory, named NAME in errors. Before anything is decoded, a header's
// claims are checked against the bytes that follow it: a PGM, PPM or BMP must hold every pixel
// ("NAME: truncated PPM: 20x20x3 needs 1200 bytes of pixels, 57 follow"), a PNG or JPEG cannot
// hold more pixels than its compression allows in its size, and every picture is within
// kMaxImageSide and kMaxImageBytes. A gzip stream is undone once: gzip inside gzip is no picture.
std::vector<Image> images_from_bytes(const std::vector<uint8_t>& bytes, const std::string& name,
                                     std::string* format = nullptr);

// Converts to c channels (1: luma of RGB, 3: grey repeated, alpha dropped or set to 255).
Image convert_channels(const Image& im, int c);
// Resizes to h x w (area-averaging when shrinking, bilinear when growing).
Image resize_image(const Image& im, int h, int w);
// The h x w rectangle at the centre (the same size or smaller; st::Error when larger).
Image crop_center(const Image& im, int h, int w);

// Raw records: n * h * w * c bytes cut into pictures of h x w x c (st::Error naming the count when
// the size is not a whole number of records).
std::vector<Image> images_from_records(const uint8_t* data, size_t n, int h, int w, int c, const std::string& name);

// One PNG, written atomically (write_file_atomic): "-" writes to stdout. A picture beyond
// kMaxImageSide or kMaxImageBytes is an st::Error naming PATH.
void write_png(const std::string& path, const Image& im);

// The height and width of a picture that may be too large to make.
struct ImageSize {
    uint64_t h = 0, w = 0;
};

// Pictures of one size side by side in a grid of `cols` columns, `pad` pixels of `background`
// between them and around the edge, each scaled up by the whole number `scale` (nearest neighbour).
// A grid beyond the limits is an st::Error before anything is allocated.
Image image_grid(const std::vector<Image>& ims, int cols, int pad = 2, int scale = 1, uint8_t background = 255);
// The size of image_grid's picture of n pictures of h x w: for a tool to check it before long work.
ImageSize grid_size(size_t n, int h, int w, int cols, int pad, int scale);

}  // namespace st
