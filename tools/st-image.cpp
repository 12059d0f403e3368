// st-image: pictures to byte records and back. encode: image files, IDX (MNIST) and CIFAR-10 batches
// to records of H*W*C bytes on stdout; decode: records to PNG files or one grid of them; info: what
// picture files hold.
#include <algorithm>
#include <climits>
#include <cstdio>

#include "cli.h"
#include "error.h"
#include "io/file.h"
#include "io/image.h"

using namespace st;

static const char* const kUsage =
    "Pictures to byte records (H*W*C bytes each, row, column, channel order) and back.\n"
    "Usage:\n"
    "  st-image encode [OPTIONS] FILE...               pictures to records on stdout\n"
    "  st-image decode --size HxWxC [OPTIONS] [FILE]   records to PNG files, or one grid\n"
    "  st-image info FILE...                           what each file holds\n"
    "FILE: PNG, JPEG, BMP, PGM/PPM, IDX (MNIST, raw or .gz), CIFAR-10 .bin, or - for stdin.\n"
    "'st-image COMMAND --help' lists a command's options.\n";

static std::string dims(int h, int w) { return std::to_string(h) + "x" + std::to_string(w); }
static std::string dims(const Image& im) { return dims(im.h, im.w) + "x" + std::to_string(im.c); }
static const char* pictures(size_t n) { return n == 1 ? "picture" : "pictures"; }

// --size: "HxW", or "HxWxC" (required when NEED_C); c is 0 when not given.
struct Size {
    int h = 0, w = 0, c = 0;
};
static Size parse_size(const std::string& text, bool need_c) {
    const std::string expected =
        "--size " + text + ": expected " + (need_c ? "HxWxC, such as 28x28x1" : "HxW or HxWxC, such as 28x28");
    std::vector<std::string> parts(1);
    for (char ch : text) {
        if (ch == 'x')
            parts.emplace_back();
        else if (ch >= '0' && ch <= '9' && parts.back().size() < 6)
            parts.back() += ch;
        else
            usage_fail(expected);
    }
    if (parts.size() < (need_c ? 3u : 2u) || parts.size() > 3) usage_fail(expected);
    for (const auto& p : parts)
        if (p.empty() || std::stoi(p) == 0) usage_fail(expected);
    Size s{std::stoi(parts[0]), std::stoi(parts[1]), 0};
    if (parts.size() == 3) s.c = std::stoi(parts[2]);
    if (parts.size() == 3 && s.c != 1 && s.c != 3 && s.c != 4)
        usage_fail("--size " + text + ": C must be 1 (grey), 3 (RGB) or 4 (RGBA)");
    return s;
}

// ---- encode ----

static int encode_main(int argc, char** argv) {
    cxxopts::Options o = cli::command_options(
        "st-image", "encode",
        "Pictures to records of H*W*C bytes (row, column, channel order) on stdout: every picture of every FILE "
        "(PNG, JPEG, BMP, PGM/PPM, IDX raw or .gz, CIFAR-10 .bin; - for stdin).",
        "FILE...");
    // clang-format off
    o.add_options()
        ("files", "picture files", cxxopts::value<std::vector<std::string>>())
        ("size", "the records' size, HxW or HxWxC (default: the first picture's); other sizes are errors "
                 "without --resize or --crop", cxxopts::value<std::string>(), "HxW")
        ("resize", "resize pictures of another size to --size")
        ("crop", "cut pictures of another size to --size at their centre")
        ("channels", "1 (grey), 3 (RGB) or 4 (RGBA): convert every picture (default: the first picture's)",
         cxxopts::value<std::string>(), "C")
        ("limit", "encode the first N pictures only", cxxopts::value<std::string>(), "N");
    // clang-format on
    cli::add_basic(o);
    o.parse_positional({"files"});
    cxxopts::ParseResult r;
    if (cli::parse(o, argc, argv, &r)) return 0;
    if (!r.count("files")) usage_fail("missing FILE: the pictures to encode (- for standard input)");
    Size want;  // what is not given comes from the first picture
    if (r.count("size")) want = parse_size(r["size"].as<std::string>(), false);
    if (r.count("channels")) {
        const int c = int(cli::to_int("--channels", r["channels"].as<std::string>(), 1, 4));
        if (c == 2) usage_fail("--channels 2: expected 1 (grey), 3 (RGB) or 4 (RGBA)");
        if (want.c && want.c != c)
            usage_fail("--channels " + std::to_string(c) + " disagrees with --size " + r["size"].as<std::string>());
        want.c = c;
    }
    const bool convert = want.c != 0, resize = r.count("resize") > 0, crop = r.count("crop") > 0;
    if (resize && crop) usage_fail("--resize and --crop: choose one");
    if ((resize || crop) && !want.h) usage_fail(std::string(resize ? "--resize" : "--crop") + " needs --size HxW");
    const size_t limit =
        r.count("limit") ? size_t(cli::to_int("--limit", r["limit"].as<std::string>(), 1, LLONG_MAX)) : SIZE_MAX;
    cli::refuse_terminal_stdout("image records");

    // Everything is converted before a byte goes out, so that a bad file leaves stdout empty.
    std::vector<uint8_t> out;
    size_t count = 0;
    for (const std::string& path : r["files"].as<std::vector<std::string>>()) {
        if (count == limit) break;
        const std::string name = input_name(path);
        for (Image& im : read_images(path)) {
            if (count == limit) break;
            if (convert) im = convert_channels(im, want.c);
            if (!want.h) want.h = im.h, want.w = im.w;
            if (!want.c) want.c = im.c;
            if (im.c != want.c)
                fail(name + ": a picture of " + std::to_string(im.c) + " channels, the first had " +
                     std::to_string(want.c) + " (--channels converts)");
            if (im.h != want.h || im.w != want.w) {
                const std::string sizes = name + ": a " + dims(im.h, im.w) + " picture, ",
                                  target = dims(want.h, want.w);
                if (resize)
                    im = resize_image(im, want.h, want.w);
                else if (crop && (im.h < want.h || im.w < want.w))
                    fail(sizes + "smaller than --size " + target + " (--resize instead of --crop)");
                else if (crop)
                    im = crop_center(im, want.h, want.w);
                else if (r.count("size"))
                    fail(sizes + "--size is " + target + " (add --resize or --crop)");
                else
                    fail(sizes + "the first was " + target +
                         " (--size HxW with --resize or --crop makes them one size)");
            }
            out.insert(out.end(), im.px.begin(), im.px.end());
            count++;
        }
    }
    write_file_atomic("-", out.data(), out.size());
    if (!r.count("quiet"))
        std::fprintf(stderr, "st-image: %zu %s of %dx%dx%d (%zu bytes)\n", count, pictures(count), want.h, want.w,
                     want.c, out.size());
    return 0;
}

// ---- decode ----

// -o without --grid: a name with one %d or %0Nd that numbers the files from 0.
struct NamePattern {
    std::string head, tail;
    size_t width = 0;
    std::string name(size_t i) const {
        std::string n = std::to_string(i);
        return head + std::string(n.size() < width ? width - n.size() : 0, '0') + n + tail;
    }
};
static NamePattern parse_pattern(const std::string& text) {
    const size_t at = text.find('%');
    const size_t end = at == std::string::npos ? at : text.find_first_not_of("0123456789", at + 1);
    const std::string flags = end == std::string::npos ? "" : text.substr(at + 1, end - at - 1);
    if (end == std::string::npos || text[end] != 'd' || text.find('%', end) != std::string::npos ||
        !(flags.empty() || (flags[0] == '0' && flags.size() <= 2)))
        usage_fail("-o " + text +
                   ": expected a name with one %d or %0Nd to number the files, such as image-%05d.png (or --grid)");
    return {text.substr(0, at), text.substr(end + 1), flags.empty() ? 0 : size_t(std::stoi(flags))};
}

// Refuses, before any work, a PNG larger than write_png takes, with what would make it smaller.
static void check_output_size(const std::string& out, const ImageSize& size, int c, bool grid) {
    const std::string problem = image_size_problem(size.h, size.w, c);
    if (problem.empty()) return;
    const std::string fix = !grid                    ? "use a smaller --scale"
                            : size.w > kMaxImageSide ? "use fewer --grid columns or a smaller --scale"
                            : size.h > kMaxImageSide ? "use more --grid columns, a smaller --scale or --limit"
                                                     : "use a smaller --scale or --limit";
    fail(output_name(out) + ": " + problem + "; " + fix);
}

static int decode_main(int argc, char** argv) {
    cxxopts::Options o = cli::command_options(
        "st-image", "decode", "Records of H*W*C bytes (from FILE, or stdin) to PNG files: one per record, or one grid.",
        "--size HxWxC [FILE]");
    // clang-format off
    o.add_options()
        ("input", "records", cxxopts::value<std::string>())
        ("size", "the size of a record (C: 1 grey, 3 RGB, 4 RGBA)", cxxopts::value<std::string>(), "HxWxC")
        ("o,output", "with --grid, the PNG file (- for stdout; default grid.png); else a name with %d or %0Nd "
                     "that numbers the files from 0 (default image-%05d.png)", cxxopts::value<std::string>(), "OUT")
        ("grid", "one PNG with the pictures in COLS columns", cxxopts::value<std::string>(), "COLS")
        ("scale", "enlarge every picture K times (nearest neighbour)",
            cxxopts::value<std::string>()->default_value("1"), "K")
        ("limit", "decode the first N records only", cxxopts::value<std::string>(), "N");
    // clang-format on
    cli::add_basic(o);
    o.parse_positional({"input"});
    cxxopts::ParseResult r;
    if (cli::parse(o, argc, argv, &r)) return 0;
    if (!r.count("size")) usage_fail("missing --size HxWxC: the size of a record");
    const Size s = parse_size(r["size"].as<std::string>(), true);
    const int cols = r.count("grid") ? int(cli::to_int("--grid", r["grid"].as<std::string>(), 1, 1 << 16)) : 0;
    const int scale = int(cli::to_int("--scale", r["scale"].as<std::string>(), 1, 1 << 10));
    const size_t limit =
        r.count("limit") ? size_t(cli::to_int("--limit", r["limit"].as<std::string>(), 1, LLONG_MAX)) : SIZE_MAX;
    const std::string out = r.count("output") ? r["output"].as<std::string>() : cols ? "grid.png" : "image-%05d.png";
    NamePattern pattern;
    if (!cols) pattern = parse_pattern(out);
    if (out == "-") cli::refuse_terminal_stdout("a PNG");

    const std::string path = r.count("input") ? r["input"].as<std::string>() : "-";
    if (cols) refuse_input_as_output("-o", out, {{"the records", path}});
    const std::vector<uint8_t> data = read_file(path);
    if (data.empty()) fail(input_name(path) + ": no records (empty input)");
    const size_t records = std::min(data.size() / (size_t(s.h) * size_t(s.w) * size_t(s.c)), limit);
    if (cols)
        check_output_size(out, grid_size(records, s.h, s.w, cols, 2, scale), s.c, true);
    else
        check_output_size(pattern.name(0), grid_size(1, s.h, s.w, 1, 0, scale), s.c, false);
    std::vector<Image> ims = images_from_records(data.data(), data.size(), s.h, s.w, s.c, input_name(path));
    if (ims.size() > limit) ims.resize(limit);
    const bool quiet = r.count("quiet") > 0;
    if (cols) {
        write_png(out, image_grid(ims, cols, 2, scale));
        if (!quiet)
            std::fprintf(stderr, "st-image: %s: %zu %s of %s in %d column%s\n", output_name(out).c_str(), ims.size(),
                         pictures(ims.size()), dims(ims[0]).c_str(), cols, cols == 1 ? "" : "s");
        return 0;
    }
    // A failed run takes back the files it wrote (each is written whole or not at all).
    std::vector<std::string> written;
    try {
        for (size_t i = 0; i < ims.size(); i++) {
            const std::string file = pattern.name(i);
            write_png(file, scale > 1 ? image_grid({ims[i]}, 1, 0, scale) : ims[i]);
            written.push_back(file);
        }
    } catch (...) {
        for (const std::string& f : written) std::remove(f.c_str());
        throw;
    }
    const std::string names = written.size() == 1 ? written[0] : written.front() + " .. " + written.back();
    if (!quiet)
        std::fprintf(stderr, "st-image: %zu %s of %s: %s\n", ims.size(), pictures(ims.size()), dims(ims[0]).c_str(),
                     names.c_str());
    return 0;
}

// ---- info ----

static int info_main(int argc, char** argv) {
    cxxopts::Options o = cli::command_options(
        "st-image", "info", "What each picture file holds: its format, how many pictures, their size.", "FILE...");
    o.add_options()("files", "picture files", cxxopts::value<std::vector<std::string>>());
    cli::add_basic(o);
    o.parse_positional({"files"});
    cxxopts::ParseResult r;
    if (cli::parse(o, argc, argv, &r)) return 0;
    if (!r.count("files")) usage_fail("missing FILE: the pictures to describe (- for standard input)");
    for (const std::string& path : r["files"].as<std::vector<std::string>>()) {
        std::string format;
        const std::vector<Image> ims = read_images(path, &format);
        std::printf("%s: %s, %zu %s of %s\n", input_name(path).c_str(), format.c_str(), ims.size(),
                    pictures(ims.size()), dims(ims[0]).c_str());
    }
    return 0;
}

static int image_main(int argc, char** argv) {
    static constexpr cli::Command commands[] = {{"encode", encode_main}, {"decode", decode_main}, {"info", info_main}};
    return cli::run_command("st-image", kUsage, commands, argc, argv);
}

int main(int argc, char** argv) { return cli::run("st-image", argc, argv, image_main); }
