// Tests for libst/io/file (read_file, write_file_atomic, crc32) and libst/io/safetensors.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>

#include "error.h"
#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "temp_dir.h"
#include "tensor.h"

using st::test::TempDir;

namespace {

// Plain std::fstream I/O, independent of the code under test.
void put(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}
std::vector<uint8_t> get(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}
std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::vector<uint8_t> concat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// Bytes that compress somewhat but not trivially.
std::vector<uint8_t> pattern(size_t n, uint32_t seed = 1) {
    std::vector<uint8_t> out(n);
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        out[i] = uint8_t((x >> 24) % 16 + 'a');
    }
    return out;
}

// One zstd frame of DATA; WITH_SIZE says whether the frame header records the content size.
std::vector<uint8_t> zstd_frame(const std::vector<uint8_t>& data, bool with_size) {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, with_size ? 1 : 0);
    std::vector<uint8_t> out(ZSTD_compressBound(data.size()));
    size_t n = ZSTD_compress2(c, out.data(), out.size(), data.data(), data.size());
    ZSTD_freeCCtx(c);
    REQUIRE(!ZSTD_isError(n));
    out.resize(n);
    return out;
}

// The message of the st::Error that F throws; "" when it throws none.
template <class F> std::string error_of(F f) {
    try {
        f();
    } catch (const st::Error& e) {
        return e.what();
    }
    return "";
}

// The call throws st::Error, one line, starting "PATH: " and containing WHAT.
#define CHECK_ERROR(call, path, what)                        \
    do {                                                     \
        std::string msg_ = error_of([&] { (void)(call); });  \
        INFO("message: " << msg_);                           \
        CHECK(msg_.rfind(std::string(path) + ": ", 0) == 0); \
        CHECK(msg_.find(what) != std::string::npos);         \
        CHECK(msg_.find('\n') == std::string::npos);         \
    } while (0)

// A safetensors file from a header text and a data section, padded as the format wants.
std::vector<uint8_t> safetensors_bytes(std::string header, const std::vector<uint8_t>& data) {
    header.append((8 - header.size() % 8) % 8, ' ');
    uint64_t n = header.size();
    std::vector<uint8_t> out(8);
    std::memcpy(out.data(), &n, 8);
    return concat(concat(out, bytes_of(header)), data);
}

// Runs F with file descriptor FD (0 or 1) redirected to PATH.
template <class F> void with_fd_redirected(int fd, const std::string& path, int flags, F f) {
    int saved = dup(fd);
    int file = open(path.c_str(), flags, 0644);
    REQUIRE(file >= 0);
    dup2(file, fd);
    close(file);
    std::string err = error_of(f);
    dup2(saved, fd);
    close(saved);
    CHECK(err == "");
}

// Bit-at-a-time CRC-32, the definition the table-driven one must match.
uint32_t crc32_reference(const uint8_t* p, size_t n, uint32_t crc) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}

}  // namespace

TEST_CASE("crc32 gives the IEEE check value, matches the bitwise definition and chains", "[io]") {
    CHECK(st::crc32("123456789", 9) == 0xCBF43926u);
    CHECK(st::crc32(nullptr, 0) == 0);
    std::vector<uint8_t> buf = pattern(300, 7);
    for (size_t i = 0; i < buf.size(); i++) buf[i] ^= uint8_t(i * 31);
    for (size_t start = 0; start < 9; start++)
        for (size_t n : {0, 1, 7, 8, 9, 63, 64, 65, 200}) {
            INFO("start " << start << " n " << n);
            CHECK(st::crc32(buf.data() + start, n) == crc32_reference(buf.data() + start, n, 0));
        }
    for (size_t cut : {0, 1, 5, 8, 13, 150, 300})
        CHECK(st::crc32(buf.data() + cut, 300 - cut, st::crc32(buf.data(), cut)) == st::crc32(buf.data(), 300));
}

TEST_CASE("ends_with", "[io]") {
    CHECK(st::ends_with("model.st.zst", ".zst"));
    CHECK(!st::ends_with("model.st", ".zst"));
    CHECK(!st::ends_with("zst", ".zst"));
    CHECK(st::ends_with("", ""));
}

TEST_CASE("read_file reads plain files, empty files and stdin", "[io]") {
    TempDir dir;
    std::vector<uint8_t> data = pattern(3 << 20);
    put(dir / "plain.bin", data);
    CHECK(st::read_file(dir / "plain.bin") == data);
    put(dir / "empty", {});
    CHECK(st::read_file(dir / "empty").empty());

    std::vector<uint8_t> got;
    with_fd_redirected(0, dir / "plain.bin", O_RDONLY, [&] { got = st::read_file("-"); });
    CHECK(got == data);
}

TEST_CASE("FileBytes maps plain files and reads the rest as read_file does", "[io]") {
    TempDir dir;
    std::vector<uint8_t> data = pattern(3 << 20);
    auto same = [](std::span<const uint8_t> a, const std::vector<uint8_t>& b) {
        return std::equal(a.begin(), a.end(), b.begin(), b.end());
    };
    put(dir / "plain.bin", data);
    CHECK(same(st::FileBytes(dir / "plain.bin").bytes(), data));
    put(dir / "empty", {});
    CHECK(st::FileBytes(dir / "empty").bytes().empty());
    put(dir / "data.zst", zstd_frame(data, true));
    CHECK(same(st::FileBytes(dir / "data.zst").bytes(), data));
    std::vector<uint8_t> got;
    with_fd_redirected(0, dir / "plain.bin", O_RDONLY, [&] {
        const st::FileBytes in("-");
        got.assign(in.bytes().begin(), in.bytes().end());
    });
    CHECK(got == data);
    CHECK_ERROR(st::FileBytes(dir / "missing"), dir / "missing", "No such file or directory");
    CHECK_ERROR(st::FileBytes(dir.path), dir.path, "Is a directory");
}

TEST_CASE("safetensors_load reads stdin and names it so in errors", "[io]") {
    TempDir dir;
    uint8_t x[3] = {1, 2, 3};
    st::safetensors_save(dir / "m.st", {{"x", st::DType::u8, {3}, x}}, {});
    st::SafeTensors got;
    with_fd_redirected(0, dir / "m.st", O_RDONLY, [&] { got = st::safetensors_load("-"); });
    REQUIRE(got.entries.size() == 1);
    CHECK(std::memcmp(got.data(got.entries[0]), x, 3) == 0);

    put(dir / "garbage", bytes_of("not a model at all"));
    std::string msg;
    with_fd_redirected(0, dir / "garbage", O_RDONLY, [&] { msg = error_of([] { st::safetensors_load("-"); }); });
    CHECK(msg.rfind("stdin: not a safetensors file", 0) == 0);
}

TEST_CASE("read_file decompresses .zst: one frame, no content size, several frames, skippable frames", "[io]") {
    TempDir dir;
    std::vector<uint8_t> a = pattern(5 << 20, 1), b = pattern(12345, 2);

    put(dir / "one.zst", zstd_frame(a, true));
    CHECK(st::read_file(dir / "one.zst") == a);

    std::vector<uint8_t> unsized = zstd_frame(a, false);
    REQUIRE(ZSTD_getFrameContentSize(unsized.data(), unsized.size()) == ZSTD_CONTENTSIZE_UNKNOWN);
    put(dir / "unsized.zst", unsized);
    CHECK(st::read_file(dir / "unsized.zst") == a);

    put(dir / "two.zst", concat(zstd_frame(a, true), zstd_frame(b, false)));
    CHECK(st::read_file(dir / "two.zst") == concat(a, b));

    // A skippable frame: magic 0x184D2A50, 4-byte length, that many bytes that readers ignore.
    std::vector<uint8_t> skip = {0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 'x', 'y', 'z'};
    put(dir / "skip.zst", concat(concat(skip, zstd_frame(b, true)), skip));
    CHECK(st::read_file(dir / "skip.zst") == b);

    put(dir / "empty-content.zst", zstd_frame({}, true));
    CHECK(st::read_file(dir / "empty-content.zst").empty());
}

TEST_CASE("read_file errors name the path", "[io]") {
    TempDir dir;
    CHECK_ERROR(st::read_file(dir / "missing"), dir / "missing", "No such file or directory");
    CHECK_ERROR(st::read_file(dir / "missing.zst"), dir / "missing.zst", "No such file or directory");
    CHECK_ERROR(st::read_file(dir.path), dir.path, "Is a directory");

    put(dir / "garbage.zst", bytes_of("this is plain text, not zstd"));
    CHECK_ERROR(st::read_file(dir / "garbage.zst"), dir / "garbage.zst", "not a zstd stream");
    put(dir / "empty.zst", {});
    CHECK_ERROR(st::read_file(dir / "empty.zst"), dir / "empty.zst", "not a zstd stream");

    std::vector<uint8_t> frame = zstd_frame(pattern(100000), true);
    for (size_t cut : {size_t(1), size_t(5), frame.size() / 2, frame.size() - 4}) {
        INFO("cut " << cut);
        put(dir / "cut.zst", std::vector<uint8_t>(frame.begin(), frame.end() - ptrdiff_t(cut)));
        CHECK_ERROR(st::read_file(dir / "cut.zst"), dir / "cut.zst", "truncated zstd stream");
    }
    // Two frames, the second cut inside its header.
    put(dir / "cut2.zst", concat(frame, std::vector<uint8_t>(frame.begin(), frame.begin() + 3)));
    CHECK_ERROR(st::read_file(dir / "cut2.zst"), dir / "cut2.zst", "truncated zstd stream");

    put(dir / "tail.zst", concat(frame, bytes_of("trailing junk")));
    CHECK_ERROR(st::read_file(dir / "tail.zst"), dir / "tail.zst", "corrupted zstd stream");
}

TEST_CASE("write_file_atomic writes plain and .zst files that read_file reads back", "[io]") {
    TempDir dir;
    std::vector<uint8_t> data = pattern(3 << 20);
    for (std::string name : {"out.bin", "out.bin.zst"}) {
        INFO(name);
        st::write_file_atomic(dir / name, data.data(), data.size());
        CHECK(st::read_file(dir / name) == data);
    }
    std::vector<uint8_t> z = get(dir / "out.bin.zst");
    REQUIRE(z.size() > 4);
    CHECK(z.size() < data.size());
    CHECK(ZSTD_getFrameContentSize(z.data(), z.size()) == data.size());

    // Streaming: pieces small and large, empty ones included.
    for (std::string name : {"stream.bin", "stream.bin.zst"}) {
        INFO(name);
        st::write_file_atomic(dir / name, [&](const st::ByteSink& sink) {
            sink(data.data(), 3);
            sink(data.data() + 3, 0);
            sink(data.data() + 3, 2 << 20);
            for (size_t at = 3 + (2 << 20); at < data.size(); at += 1000)
                sink(data.data() + at, std::min<size_t>(1000, data.size() - at));
        });
        CHECK(st::read_file(dir / name) == data);
    }

    st::write_file_atomic(dir / "empty.zst", nullptr, 0);
    CHECK(st::read_file(dir / "empty.zst").empty());
    st::write_file_atomic(dir / "empty", nullptr, 0);
    CHECK(get(dir / "empty").empty());
    CHECK(!dir.has_temporaries());
}

TEST_CASE("write_file_atomic to - writes stdout", "[io]") {
    TempDir dir;
    std::vector<uint8_t> data = pattern(100000);
    with_fd_redirected(1, dir / "stdout", O_WRONLY | O_CREAT | O_TRUNC,
                       [&] { st::write_file_atomic("-", data.data(), data.size()); });
    CHECK(get(dir / "stdout") == data);
}

TEST_CASE("write_file_atomic replaces an existing file whole", "[io]") {
    TempDir dir;
    std::vector<uint8_t> big = pattern(1 << 20), small = bytes_of("short");
    for (std::string name : {"f.bin", "f.bin.zst"}) {
        INFO(name);
        st::write_file_atomic(dir / name, big.data(), big.size());
        st::write_file_atomic(dir / name, small.data(), small.size());
        CHECK(st::read_file(dir / name) == small);
    }
    CHECK(get(dir / "f.bin") == small);
    CHECK(dir.names() == std::vector<std::string>{"f.bin", "f.bin.zst"});
}

TEST_CASE("write_file_atomic failures leave PATH untouched and no temporary file", "[io]") {
    TempDir dir;
    std::vector<uint8_t> data = pattern(1000);

    SECTION("a directory that does not exist") {
        std::string path = dir / "no/such/dir/out.st";
        CHECK_ERROR(st::write_file_atomic(path, data.data(), data.size()), path, "No such file or directory");
        CHECK(dir.names().empty());
    }
    SECTION("the producer throws") {
        for (std::string name : {"keep.bin", "keep.bin.zst"}) {
            INFO(name);
            st::write_file_atomic(dir / name, data.data(), data.size());
            auto producer = [&](const st::ByteSink& sink) {
                sink(data.data(), 500);
                throw std::runtime_error("producer failed");
            };
            CHECK_THROWS_WITH(st::write_file_atomic(dir / name, producer), "producer failed");
            CHECK(st::read_file(dir / name) == data);
        }
        CHECK(dir.names() == std::vector<std::string>{"keep.bin", "keep.bin.zst"});
    }
    SECTION("fewer or more bytes than announced") {
        auto short_producer = [&](const st::ByteSink& sink) { sink(data.data(), 10); };
        CHECK_ERROR(st::write_file_atomic(dir / "a.zst", short_producer, 11), dir / "a.zst", "announced");
        CHECK_ERROR(st::write_file_atomic(dir / "a", short_producer, 9), dir / "a", "announced");
        CHECK(dir.names().empty());
    }
    SECTION("the path is a directory") {
        std::filesystem::create_directory(dir / "sub");
        CHECK_ERROR(st::write_file_atomic(dir / "sub", data.data(), data.size()), dir / "sub", "directory");
        CHECK(dir.names() == std::vector<std::string>{"sub"});
    }
}

namespace {

// Tensors of every dtype, a scalar, an empty one and odd sizes that misalign what follows.
struct Sample {
    std::vector<double> f64 = {1.5, -2.25, 1e300};
    std::vector<float> f32 = {0.f, -0.f, 1.f, 3.25f, -1e-30f, 7.f};
    std::vector<uint16_t> bf16;
    std::vector<int32_t> i32 = {-1, 0, INT_MAX, INT_MIN};
    std::vector<uint8_t> u8 = {0, 1, 2, 254, 255};
    float scalar = 42.f;
    std::vector<st::SafeTensorsWrite> writes;
    Sample() {
        for (float x : {1.f, -0.5f, 3.14159f, 1e20f}) bf16.push_back(st::f32_to_bf16(x));
        std::memcpy(&f32[5], "\xff\xff\xff\x7f", 4);  // a NaN payload survives byte for byte
        writes = {{"u8", st::DType::u8, {5}, u8.data()},
                  {"f64", st::DType::f64, {3}, f64.data()},
                  {"layer.0.w", st::DType::f32, {2, 3}, f32.data()},
                  {"bf16", st::DType::bf16, {2, 2}, bf16.data()},
                  {"empty", st::DType::f32, {0, 4}, nullptr},
                  {"i32", st::DType::i32, {4}, i32.data()},
                  {"scalar", st::DType::f32, {}, &scalar}};
    }
};

std::map<std::string, std::string> big_metadata() {
    std::map<std::string, std::string> m;
    for (int i = 0; i < 2000; i++)
        m["key." + std::to_string(i)] = "value \"" + std::to_string(i * i) + "\"\n\t\\ caf\xc3\xa9";
    m["config"] = std::string(200000, 'x');
    return m;
}

}  // namespace

TEST_CASE("safetensors round trip, plain and .zst, byte-exact", "[io]") {
    TempDir dir;
    Sample s;
    std::string name = GENERATE(std::string("model.st"), std::string("model.st.zst"));
    bool big = GENERATE(false, true);
    INFO(name << (big ? " with big metadata" : " with empty metadata"));
    std::map<std::string, std::string> meta = big ? big_metadata() : std::map<std::string, std::string>{};

    st::safetensors_save(dir / name, s.writes, meta);
    st::SafeTensors got = st::safetensors_load(dir / name);

    REQUIRE(got.entries.size() == s.writes.size());
    size_t offset = 0;
    for (size_t i = 0; i < s.writes.size(); i++) {
        const auto& w = s.writes[i];
        const auto& e = got.entries[i];
        INFO(w.name);
        CHECK(e.name == w.name);
        CHECK(e.dtype == w.dtype);
        CHECK(e.shape == w.shape);
        CHECK(e.offset == offset);
        CHECK(got.find(w.name) == &e);
        size_t n = st::dtype_size(w.dtype);
        for (int64_t d : w.shape) n *= size_t(d);
        CHECK(e.nbytes == n);
        if (n) CHECK(std::memcmp(got.data(e), w.data, n) == 0);
        offset += n;
    }
    CHECK(got.bytes.size() == offset);
    CHECK(got.find("absent") == nullptr);

    REQUIRE(got.metadata.count("st.crc32") == 1);
    CHECK(got.metadata["st.crc32"] == std::to_string(st::crc32(got.bytes.data(), got.bytes.size())));
    got.metadata.erase("st.crc32");
    CHECK(got.metadata == meta);
    CHECK(!dir.has_temporaries());
}

TEST_CASE("safetensors_save writes the layout the Rust crate reads", "[io]") {
    TempDir dir;
    std::vector<uint8_t> a = bytes_of("xyz"), b = bytes_of("0123456789abcdef");
    st::safetensors_save(dir / "m.st", {{"a", st::DType::u8, {3}, a.data()}, {"b", st::DType::f32, {2, 2}, b.data()}},
                         {{"k", "v"}});
    std::vector<uint8_t> file = get(dir / "m.st");
    uint32_t crc = st::crc32(concat(a, b).data(), 19);
    std::string header = "{\"__metadata__\":{\"k\":\"v\",\"st.crc32\":\"" + std::to_string(crc) +
                         "\"},\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[3,19]}}";
    CHECK(file == safetensors_bytes(header, concat(a, b)));
    uint64_t n;
    std::memcpy(&n, file.data(), 8);
    CHECK(n % 8 == 0);

    // The .zst file is the same bytes, compressed as a whole, its size in the frame header.
    st::safetensors_save(dir / "m.st.zst",
                         {{"a", st::DType::u8, {3}, a.data()}, {"b", st::DType::f32, {2, 2}, b.data()}}, {{"k", "v"}});
    std::vector<uint8_t> z = get(dir / "m.st.zst");
    CHECK(ZSTD_getFrameContentSize(z.data(), z.size()) == file.size());
    CHECK(st::read_file(dir / "m.st.zst") == file);
}

TEST_CASE("safetensors_load reads files written elsewhere: any key order, no checksum, no padding", "[io]") {
    TempDir dir;
    std::string header =
        "{\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[2,6]},"
        "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"__metadata__\":{\"format\":\"pt\"}}";
    std::vector<uint8_t> data = {9, 8, 1, 0, 0, 0};
    uint64_t n = header.size();
    std::vector<uint8_t> file(8);
    std::memcpy(file.data(), &n, 8);
    put(dir / "x.safetensors", concat(concat(file, bytes_of(header)), data));

    st::SafeTensors got = st::safetensors_load(dir / "x.safetensors");
    REQUIRE(got.entries.size() == 2);
    CHECK(got.entries[0].name == "a");
    CHECK(got.entries[1].name == "b");
    int32_t v;
    std::memcpy(&v, got.data(got.entries[1]), 4);
    CHECK(v == 1);
    CHECK(got.metadata == std::map<std::string, std::string>{{"format", "pt"}});
    CHECK(got.bytes == data);

    put(dir / "none.safetensors", safetensors_bytes("{\"__metadata__\":null}", {}));
    got = st::safetensors_load(dir / "none.safetensors");
    CHECK(got.entries.empty());
    CHECK(got.metadata.empty());
}

TEST_CASE("safetensors_load rejects broken files with one line naming the path", "[io]") {
    TempDir dir;
    const std::string p = dir / "bad.st";
    auto load = [&] { return st::safetensors_load(p); };
    const std::string u8_ab = "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}";

    SECTION("missing file") { CHECK_ERROR(load(), p, "No such file or directory"); }
    SECTION("empty file") {
        put(p, {});
        CHECK_ERROR(load(), p, "empty file");
    }
    SECTION("garbage") {
        put(p, bytes_of("#!/bin/sh\necho this is a shell script, not a model\n"));
        CHECK_ERROR(load(), p, "not a safetensors file");
        put(p, bytes_of("abc"));
        CHECK_ERROR(load(), p, "not a safetensors file");
    }
    SECTION("header length beyond the file") {
        std::vector<uint8_t> f = {0, 0, 0, 0, 0, 1, 0, 0};
        put(p, concat(f, bytes_of("{\"a\":{}}")));
        CHECK_ERROR(load(), p, "not a safetensors file (header length 1099511627776 is larger than the file)");
        // A plausible header cut short is reported as truncation.
        std::vector<uint8_t> whole = safetensors_bytes("{" + u8_ab + "}", {1, 2});
        put(p, std::vector<uint8_t>(whole.begin(), whole.begin() + 20));
        CHECK_ERROR(load(), p, "truncated");
    }
    SECTION("header not JSON, not an object, fields missing or wrong") {
        put(p, safetensors_bytes("{\"a\": [1,}", {}));
        CHECK_ERROR(load(), p, "not a safetensors file (the header is not valid JSON");
        put(p, safetensors_bytes("[1, 2]", {}));
        CHECK_ERROR(load(), p, "not a safetensors file (the header is not a JSON object)");
        put(p, safetensors_bytes("{\"a\": 5}", {}));
        CHECK_ERROR(load(), p, "tensor 'a' is not an object");
        put(p, safetensors_bytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[2]}}", {1, 2}));
        CHECK_ERROR(load(), p, "data_offsets");
        put(p, safetensors_bytes("{\"a\":{\"shape\":[2],\"data_offsets\":[0,2]}}", {1, 2}));
        CHECK_ERROR(load(), p, "dtype");
        put(p, safetensors_bytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[-2],\"data_offsets\":[0,2]}}", {1, 2}));
        CHECK_ERROR(load(), p, "invalid safetensors header");
        put(p, safetensors_bytes("{\"__metadata__\":{\"k\":1}," + u8_ab + "}", {1, 2}));
        CHECK_ERROR(load(), p, "__metadata__");
    }
    SECTION("unknown dtype") {
        put(p, safetensors_bytes("{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}", {1, 2}));
        CHECK_ERROR(load(), p, "dtype F16");
    }
    SECTION("shape and offsets disagree") {
        put(p, safetensors_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                                 std::vector<uint8_t>(8)));
        CHECK_ERROR(load(), p, "needs 12 bytes");
        put(p, safetensors_bytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,0]}}", {1, 2}));
        CHECK_ERROR(load(), p, "backwards");
    }
    SECTION("offsets with a gap or an overlap") {
        put(p, safetensors_bytes("{" + u8_ab + ",\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}",
                                 std::vector<uint8_t>(5)));
        CHECK_ERROR(load(), p, "gap of 1 bytes before tensor 'b'");
        put(p, safetensors_bytes("{" + u8_ab + ",\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}",
                                 std::vector<uint8_t>(3)));
        CHECK_ERROR(load(), p, "tensor 'b' overlaps");
        put(p, safetensors_bytes("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
                                 std::vector<uint8_t>(4)));
        CHECK_ERROR(load(), p, "gap of 2 bytes before tensor 'b'");
    }
    SECTION("files damaged after saving") {
        Sample s;
        for (std::string name : {"m.st", "m.st.zst"}) st::safetensors_save(dir / name, s.writes, {{"k", "v"}});
        std::vector<uint8_t> good = get(dir / "m.st");

        put(p, std::vector<uint8_t>(good.begin(), good.end() - 3));
        CHECK_ERROR(load(), p, "truncated: the tensors need");

        put(p, concat(good, {0}));
        CHECK_ERROR(load(), p, "corrupted: 1 bytes after the last tensor");

        std::vector<uint8_t> flipped = good;
        flipped[flipped.size() - 10] ^= 0x01;
        put(p, flipped);
        CHECK_ERROR(load(), p, "corrupted: checksum mismatch");

        // The checksum covers the data; an edited checksum is caught the same way.
        std::string text(good.begin(), good.end());
        size_t at = text.find("\"st.crc32\":\"") + 12;
        text[at] = text[at] == '1' ? '2' : '1';
        put(p, bytes_of(text));
        CHECK_ERROR(load(), p, "corrupted: checksum mismatch");
        text[at] = 'x';
        put(p, bytes_of(text));
        CHECK_ERROR(load(), p, "st.crc32");

        std::vector<uint8_t> z = get(dir / "m.st.zst");
        const std::string pz = dir / "bad.st.zst";
        put(pz, std::vector<uint8_t>(z.begin(), z.end() - 5));
        CHECK_ERROR(st::safetensors_load(pz), pz, "truncated zstd stream");
        put(pz, good);
        CHECK_ERROR(st::safetensors_load(pz), pz, "not a zstd stream");
    }
}

TEST_CASE("safetensors_save refuses what it cannot write and leaves nothing", "[io]") {
    TempDir dir;
    uint8_t x[4] = {};
    const std::string p = dir / "m.st";
    CHECK_ERROR(st::safetensors_save(p, {{"a", st::DType::u8, {4}, x}, {"a", st::DType::u8, {4}, x}}, {}), p,
                "two tensors named 'a'");
    CHECK_ERROR(st::safetensors_save(p, {{"__metadata__", st::DType::u8, {4}, x}}, {}), p, "__metadata__");
    CHECK_ERROR(st::safetensors_save(p, {{"a", st::DType::u8, {-1}, x}}, {}), p, "bad shape [-1]");
    CHECK_ERROR(st::safetensors_save(p, {{"a", st::DType::u8, {4}, x}}, {{"k", "\xff\xfe"}}), p, "UTF-8");
    std::string missing = dir / "missing/m.st";
    CHECK_ERROR(st::safetensors_save(missing, {{"a", st::DType::u8, {4}, x}}, {}), missing,
                "No such file or directory");
    CHECK(dir.names().empty());
}

TEST_CASE("read_file reads .zst whose frames end exactly where its output buffer is full", "[io]") {
    // Without a content size the output grows by zstd's block size (ZSTD_DStreamOutSize); a frame
    // ending on such a boundary was once taken for a truncated one.
    TempDir dir;
    const size_t block = ZSTD_DStreamOutSize();
    for (size_t n : {size_t(0), size_t(1), block - 1, block, block + 1, 2 * block, 3 * block, 4 * block, 5 * block - 7})
        for (int frames = 1; frames <= 3; frames++)
            for (bool with_size : {false, true}) {
                std::vector<uint8_t> want, file;
                for (int f = 0; f < frames; f++) {
                    std::vector<uint8_t> part = pattern(n, uint32_t(n + f));
                    want = concat(want, part);
                    file = concat(file, zstd_frame(part, with_size));
                }
                INFO(n << " bytes a frame, " << frames << " frames, content size " << with_size);
                put(dir / "x.zst", file);
                CHECK(st::read_file(dir / "x.zst") == want);
            }
}

TEST_CASE("read_file believes no claimed size: a frame claiming 1.5e9 bytes, a limit, a device", "[io]") {
    TempDir dir;
    // Magic, a descriptor with a 4-byte content size and one segment, 1,500,000,000, one empty last raw
    // block: 12 bytes whose content is not what the header says.
    put(dir / "claims.zst", {0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0x00, 0x2f, 0x68, 0x59, 0x01, 0x00, 0x00});
    CHECK_ERROR(st::read_file(dir / "claims.zst", size_t(64) << 20), dir / "claims.zst", "corrupted zstd stream");

    std::vector<uint8_t> big = pattern(3 << 20);
    put(dir / "big", big);
    put(dir / "big.zst", zstd_frame(big, false));
    CHECK_ERROR(st::read_file(dir / "big", 1 << 20), dir / "big", "larger than 1 MiB, the most st reads of it");
    CHECK_ERROR(st::read_file(dir / "big.zst", 1 << 20), dir / "big.zst", "larger than 1 MiB");
    CHECK(st::read_file(dir / "big", 3 << 20) == big);
    CHECK(st::read_file(dir / "big.zst", 3 << 20) == big);

    CHECK_ERROR(st::read_file("/dev/zero"), "/dev/zero", "a device, not a file of data");
    CHECK_ERROR(st::FileBytes("/dev/zero"), "/dev/zero", "a device, not a file of data");
}

TEST_CASE("safetensors_load bounds the header's nesting before parsing it", "[io]") {
    TempDir dir;
    put(dir / "deep.st", safetensors_bytes("{\"a\":" + std::string(200000, '['), {}));
    CHECK_ERROR(st::safetensors_load(dir / "deep.st"), dir / "deep.st", "the header nests more than 64 levels deep");
    // Brackets inside strings are text, not nesting.
    const std::string name(1000, '[');
    put(dir / "bracket-name.st",
        safetensors_bytes("{\"" + name + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", {7}));
    CHECK(st::safetensors_load(dir / "bracket-name.st").find(name) != nullptr);
}

TEST_CASE("prepare_output fails at once where PATH cannot be written and removes only stale temporaries", "[io]") {
    TempDir dir;
    CHECK_ERROR(st::prepare_output(dir / "missing/out.st"), dir / "missing/out.st", "No such file or directory");
    CHECK_ERROR(st::prepare_output(dir / std::string(250, 'm')), dir / std::string(250, 'm'), "File name too long");
    // PID 2147483646 is beyond any pid_max: its process is gone. This process's own and names st
    // does not make stay.
    const std::string dead = "out.st.tmp.2147483646.0", live = "out.st.tmp." + std::to_string(getpid()) + ".3";
    for (const std::string& n : {dead, live, std::string("out.st.tmp.12x.0"), std::string("other.st.tmp.2147483646.0"),
                                 std::string("out.st.tmp.2147483646.0.more")})
        put(dir / n, {1});
    st::prepare_output(dir / "out.st");
    std::vector<std::string> kept = {"other.st.tmp.2147483646.0", live, "out.st.tmp.12x.0",
                                     "out.st.tmp.2147483646.0.more"};
    std::sort(kept.begin(), kept.end());
    CHECK(dir.names() == kept);
}

TEST_CASE("refuse_input_as_output compares files, not names", "[io]") {
    TempDir dir;
    put(dir / "data", {1, 2, 3});
    REQUIRE(link((dir / "data").c_str(), (dir / "hard").c_str()) == 0);
    REQUIRE(symlink((dir / "data").c_str(), (dir / "soft").c_str()) == 0);
    put(dir / "other", {1, 2, 3});
    for (const char* out : {"data", "hard", "soft"}) {
        INFO(out);
        CHECK_ERROR(st::refuse_input_as_output("--log", dir / out, {{"DATA", dir / "data"}}), "--log " + dir / out,
                    "the same file as DATA");
    }
    CHECK(error_of([&] { st::refuse_input_as_output("--log", dir / "other", {{"DATA", dir / "data"}}); }) == "");
    CHECK(error_of([&] { st::refuse_input_as_output("--log", dir / "new", {{"DATA", dir / "data"}}); }) == "");
    with_fd_redirected(0, dir / "data", O_RDONLY, [&] {
        CHECK_ERROR(st::refuse_input_as_output("-o", dir / "hard", {{"DATA", "-"}}), "-o " + dir / "hard",
                    "the same file as DATA (-)");
    });
}

TEST_CASE("a number beyond a double's range in a JSON header is a clean refusal", "[io]") {
    TempDir dir;
    put(dir / "huge-number.st", safetensors_bytes("{\"__metadata__\":{},\"x\":1e999}", {}));
    CHECK_ERROR(st::safetensors_load(dir / "huge-number.st"), dir / "huge-number.st",
                "the header holds a number out of range");
    CHECK_ERROR(st::json_parse("{\"lr\": 0.01E9776482582}", "recipe"), "recipe", "a number out of range");
}
