// Whole-file reading (plain, stdin, zstd streams), atomic writing (plain or zstd) and CRC-32.
#include "io/file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <charconv>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <thread>

#include "error.h"

namespace st {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string input_name(const std::string& path) { return path == "-" ? "stdin" : path; }
std::string output_name(const std::string& path) { return path == "-" ? "stdout" : path; }

// ---- CRC-32 ----

// tables[0] is the classic byte-at-a-time table; tables[k][b] is the CRC of byte b followed by k zero
// bytes, which lets the loop fold 8 input bytes per step.
static constexpr auto crc_tables = [] {
    std::array<std::array<uint32_t, 256>, 8> t{};
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xff];
    return t;
}();

uint32_t crc32(const void* data, size_t n, uint32_t crc) {
    static_assert(std::endian::native == std::endian::little, "the slice-by-8 loop reads little-endian words");
    const auto& t = crc_tables;
    auto p = static_cast<const uint8_t*>(data);
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo, hi;
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + 4, 4);
        lo ^= crc;
        crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^ t[3][hi & 0xff] ^
              t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    }
    for (; n > 0; n--, p++) crc = t[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
    return ~crc;
}

// ---- reading ----

static std::string errno_text() { return std::strerror(errno); }

namespace {

struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

struct DctxFree {
    void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};
struct CctxFree {
    void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

}  // namespace

static int open_for_read(const std::string& path) {
    int fd;
    do fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) fail(path + ": " + errno_text());
    return fd;
}

// Reads up to N bytes, fewer only at end of file.
static size_t read_some(int fd, const std::string& path, void* buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = ::read(fd, static_cast<uint8_t*>(buf) + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) fail(path + ": " + errno_text());
        if (r == 0) break;
        got += size_t(r);
    }
    return got;
}

// A regular file's size, to size the buffer once; 0 for pipes and terminals.
static size_t size_hint(int fd) {
    struct stat s;
    return (::fstat(fd, &s) == 0 && S_ISREG(s.st_mode)) ? size_t(s.st_size) : 0;
}

size_t memory_bytes() {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? size_t(pages) * size_t(page) : size_t(1) << 34;
}

static std::string mib(size_t n) { return std::to_string((n + (1 << 20) - 1) >> 20) + " MiB"; }

[[noreturn]] static void too_large(const std::string& path, size_t limit) {
    fail(path + ": larger than " + mib(limit) +
         (limit == memory_bytes() ? ", this machine's memory" : ", the most st reads of it"));
}

// A terminal, a pipe or /dev/null (empty) may be read; another device (/dev/zero, /dev/urandom, a
// disk) never ends or was never meant as data.
static void refuse_device(int fd, const std::string& path) {
    struct stat s, null;
    if (::fstat(fd, &s) != 0 || !(S_ISBLK(s.st_mode) || S_ISCHR(s.st_mode))) return;
    const bool is_null = S_ISCHR(s.st_mode) && ::stat("/dev/null", &null) == 0 && s.st_rdev == null.st_rdev;
    if (!is_null && !::isatty(fd)) fail(path + ": a device, not a file of data");
}

static std::vector<uint8_t> read_plain(int fd, const std::string& path, size_t limit) {
    refuse_device(fd, path);
    const size_t hint = size_hint(fd);
    if (hint > limit) too_large(path, limit);
    std::vector<uint8_t> out(hint);
    size_t used = read_some(fd, path, out.data(), hint);
    out.resize(used);
    if (used < hint) return out;  // end of file came first
    // Pipes, and files that grew since fstat, go on in chunks; the vector grows geometrically.
    std::vector<uint8_t> chunk(1 << 16);
    while (size_t got = read_some(fd, path, chunk.data(), chunk.size())) {
        if (out.size() + got > limit) too_large(path, limit);
        out.insert(out.end(), chunk.begin(), chunk.begin() + ptrdiff_t(got));
    }
    return out;
}

// The first frame's content size, when recorded, sizes the output at once, but only as far as the
// compressed size makes it believable: an 18-byte frame may claim gigabytes, and the error, if any,
// must come from decoding, not from an allocation. zstd rarely compresses real data 100-fold, and
// the buffer still grows geometrically past the reservation.
static void reserve_content_size(std::vector<uint8_t>* out, const uint8_t* head, size_t n, size_t compressed,
                                 size_t limit, size_t step) {
    unsigned long long size = ZSTD_getFrameContentSize(head, n);
    if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR) return;
    const size_t believable = std::max<size_t>(compressed, 1 << 20) * 100;
    out->reserve(size_t(std::min<unsigned long long>({size, believable, limit})) + step);
}

static std::vector<uint8_t> read_zstd(int fd, const std::string& path, size_t limit) {
    refuse_device(fd, path);
    std::unique_ptr<ZSTD_DCtx, DctxFree> dctx(ZSTD_createDCtx());
    if (!dctx) throw std::bad_alloc();
    std::vector<uint8_t> in(std::max<size_t>(ZSTD_DStreamInSize(), 1 << 20));
    const size_t step = ZSTD_DStreamOutSize();
    std::vector<uint8_t> out;
    size_t used = 0, pending = 0;  // pending: zstd's hint, 0 exactly when the last frame is complete
    bool any_input = false, decoded = false;
    for (;;) {
        size_t got = read_some(fd, path, in.data(), in.size());
        if (got == 0) break;
        if (!any_input) reserve_content_size(&out, in.data(), got, std::max(size_hint(fd), got), limit, step);
        any_input = true;
        ZSTD_inBuffer ib{in.data(), got, 0};
        for (;;) {
            if (out.size() - used < step) {
                if (used >= limit) too_large(path, limit);
                out.resize(std::max(used + step, std::min(std::max(out.capacity(), out.size() * 2), limit)));
            }
            ZSTD_outBuffer ob{out.data() + used, out.size() - used, 0};
            pending = ZSTD_decompressStream(dctx.get(), &ob, &ib);
            if (ZSTD_isError(pending)) {
                if (ZSTD_getErrorCode(pending) == ZSTD_error_prefix_unknown)
                    fail(path + (decoded ? ": corrupted zstd stream (garbage after a frame)" : ": not a zstd stream"));
                fail(path + ": corrupted zstd stream (" + ZSTD_getErrorName(pending) + ")");
            }
            decoded = true;
            used += ob.pos;
            // Done with this input once it is consumed and nothing is held back: zstd had room left, or
            // it says the frame is complete. (Asked again after the end of a frame with no input, zstd
            // answers with the size of the next frame's header, which is not a truncation.)
            if (ib.pos == ib.size && (ob.pos < ob.size || pending == 0)) break;
        }
    }
    if (!any_input) fail(path + ": not a zstd stream (empty file)");
    if (pending != 0) fail(path + ": truncated zstd stream");
    if (used > limit) too_large(path, limit);
    out.resize(used);
    return out;
}

std::vector<uint8_t> read_file(const std::string& path, size_t limit) {
    if (path.empty()) fail("empty file name");
    if (limit == 0) limit = memory_bytes();
    if (path == "-") return read_plain(0, input_name(path), limit);
    Fd fd(open_for_read(path));
    return ends_with(path, ".zst") ? read_zstd(fd.fd, path, limit) : read_plain(fd.fd, path, limit);
}

FileBytes::FileBytes(const std::string& path) {
    if (path.empty() || path == "-" || ends_with(path, ".zst")) {
        read_ = read_file(path);
        return;
    }
    Fd fd(open_for_read(path));
    refuse_device(fd.fd, path);
    struct stat st;
    if (::fstat(fd.fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        void* p = ::mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_SHARED, fd.fd, 0);
        if (p != MAP_FAILED) {
            map_ = static_cast<const uint8_t*>(p);
            size_ = size_t(st.st_size);
            return;
        }
    }
    read_ = read_plain(fd.fd, path, memory_bytes());  // a pipe, a terminal, an empty file, a file mmap refuses
}

FileBytes::~FileBytes() {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
}

// ---- writing ----

static void write_all(int fd, const std::string& name, const void* data, size_t n) {
    auto p = static_cast<const uint8_t*>(data);
    while (n > 0) {
        ssize_t r = ::write(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) fail(name + ": write failed: " + errno_text());
        p += r;
        n -= size_t(r);
    }
}

namespace {

// Collects small pieces (headers, short tensors) into large writes.
class PlainSink {
   public:
    PlainSink(int fd, std::string name) : fd_(fd), name_(std::move(name)), buf_(1 << 20) {}
    void write(const void* data, size_t n) {
        if (n == 0) return;  // empty tensors may come with a null pointer
        if (used_ + n > buf_.size()) flush();
        if (n >= buf_.size()) return write_all(fd_, name_, data, n);
        std::memcpy(buf_.data() + used_, data, n);
        used_ += n;
    }
    void finish() { flush(); }

   private:
    void flush() {
        write_all(fd_, name_, buf_.data(), used_);
        used_ = 0;
    }
    int fd_;
    std::string name_;
    std::vector<uint8_t> buf_;
    size_t used_ = 0;
};

class ZstdSink {
   public:
    ZstdSink(int fd, std::string name, unsigned long long pledged)
        : fd_(fd), name_(std::move(name)), cctx_(ZSTD_createCCtx()), buf_(ZSTD_CStreamOutSize()) {
        if (!cctx_) throw std::bad_alloc();
        ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_compressionLevel, 3);
        ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_checksumFlag, 1);
        // Fails harmlessly (single-threaded) when libzstd was built without threads.
        int workers = int(std::min(std::thread::hardware_concurrency(), 16u));
        ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_nbWorkers, workers);
        ZSTD_CCtx_setPledgedSrcSize(cctx_.get(), pledged);
    }
    void write(const void* data, size_t n) {
        ZSTD_inBuffer in{data, n, 0};
        while (in.pos < in.size) step(&in, ZSTD_e_continue);
    }
    void finish() {
        ZSTD_inBuffer in{nullptr, 0, 0};
        while (step(&in, ZSTD_e_end) != 0) {}
    }

   private:
    size_t step(ZSTD_inBuffer* in, ZSTD_EndDirective mode) {
        ZSTD_outBuffer out{buf_.data(), buf_.size(), 0};
        size_t r = ZSTD_compressStream2(cctx_.get(), &out, in, mode);
        if (ZSTD_isError(r)) fail(name_ + ": zstd compression failed: " + ZSTD_getErrorName(r));
        write_all(fd_, name_, buf_.data(), out.pos);
        return r;
    }
    int fd_;
    std::string name_;
    std::unique_ptr<ZSTD_CCtx, CctxFree> cctx_;
    std::vector<uint8_t> buf_;
};

}  // namespace

// Runs PRODUCE into FD, compressed when COMPRESS.
static void produce_into(int fd, const std::string& name, bool compress, std::optional<uint64_t> total,
                         const std::function<void(const ByteSink&)>& produce) {
    uint64_t count = 0;
    auto miscount = [&] {
        fail(name + ": " + std::to_string(count) + " bytes written, " + std::to_string(*total) + " announced");
    };
    auto run = [&](auto& sink) {
        produce([&](const void* p, size_t n) {
            count += n;
            if (total && count > *total) miscount();
            sink.write(p, n);
        });
        if (total && count != *total) miscount();
        sink.finish();
    };
    if (compress) {
        ZstdSink sink(fd, name, total ? *total : ZSTD_CONTENTSIZE_UNKNOWN);
        run(sink);
    } else {
        PlainSink sink(fd, name);
        run(sink);
    }
}

// The temporary file a write is filling, for remove_partial_output, which a signal handler calls:
// a fixed buffer and a flag, nothing that allocates.
static char g_partial[4096];
static volatile std::sig_atomic_t g_partial_set = 0;

void remove_partial_output() {
    if (g_partial_set) ::unlink(g_partial);
}

static void track_partial(const std::string& tmp) {
    g_partial_set = 0;
    if (tmp.size() >= sizeof g_partial) return;
    std::memcpy(g_partial, tmp.c_str(), tmp.size() + 1);
    g_partial_set = 1;
}

static std::string parent_dir(const std::string& path) {
    std::string dir = std::filesystem::path(path).parent_path().string();
    return dir.empty() ? "." : dir;
}

// Opens a fresh temporary file beside PATH; its name matches the "*.tmp.*" that .gitignore skips.
static int create_temp(const std::string& path, std::string* tmp) {
    static std::atomic<unsigned> counter{0};
    for (int attempt = 0; attempt < 100; attempt++) {
        *tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
        int fd = ::open(tmp->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) return fd;
        if (errno != EEXIST && errno != EINTR) fail(path + ": " + errno_text());
    }
    fail(path + ": cannot create a temporary file beside it");
}

// The rename is durable only once the directory entry is on disk. Some file systems cannot fsync a
// directory (EINVAL); there the rename is as durable as they allow. Any other failure is reported
// although the new file is already in place: the caller must not count on it surviving a crash.
static void fsync_parent(const std::string& path) {
    const std::string dir = parent_dir(path);
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail(dir + ": " + errno_text());
    Fd guard(fd);
    if (::fsync(fd) != 0 && errno != EINVAL) fail(dir + ": fsync failed: " + errno_text());
}

void write_file_atomic(const std::string& path, const std::function<void(const ByteSink&)>& produce,
                       std::optional<uint64_t> total) {
    if (path.empty()) fail("empty file name");
    if (path == "-") return produce_into(1, output_name(path), false, total, produce);
    std::string tmp;
    Fd fd(create_temp(path, &tmp));
    track_partial(tmp);
    try {
        produce_into(fd.fd, path, ends_with(path, ".zst"), total, produce);
        if (::fsync(fd.fd) != 0) fail(path + ": fsync failed: " + errno_text());
        int f = fd.fd;
        fd.fd = -1;
        // close can report a deferred write error (NFS, quotas).
        if (::close(f) != 0) fail(path + ": write failed: " + errno_text());
        if (::rename(tmp.c_str(), path.c_str()) != 0) fail(path + ": " + errno_text());
        g_partial_set = 0;
    } catch (...) {
        g_partial_set = 0;
        ::unlink(tmp.c_str());
        throw;
    }
    fsync_parent(path);
}

// PID when NAME is BASE.tmp.PID.N (create_temp's form), else 0.
static pid_t temp_owner(const std::string& name, const std::string& base) {
    const std::string prefix = base + ".tmp.";
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return 0;
    const char* p = name.c_str() + prefix.size();
    const char* const end = name.c_str() + name.size();
    long long pid = 0, n = 0;
    auto [q, ec] = std::from_chars(p, end, pid);
    if (ec != std::errc() || q == p || q == end || *q != '.' || pid <= 0 || pid > INT32_MAX) return 0;
    auto [r, ec2] = std::from_chars(q + 1, end, n);
    if (ec2 != std::errc() || r == q + 1 || r != end) return 0;
    return pid_t(pid);
}

void prepare_output(const std::string& path) {
    if (path.empty()) fail("empty file name");
    if (path == "-") return;
    const std::string dir = parent_dir(path), base = std::filesystem::path(path).filename().string();
    if (DIR* d = ::opendir(dir.c_str())) {
        while (const dirent* e = ::readdir(d)) {
            const pid_t pid = temp_owner(e->d_name, base);
            if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
            const std::string stale = dir + "/" + e->d_name;
            struct stat s;
            if (::lstat(stale.c_str(), &s) == 0 && S_ISREG(s.st_mode) && s.st_uid == ::geteuid())
                ::unlink(stale.c_str());
        }
        ::closedir(d);
    }
    std::string tmp;
    Fd fd(create_temp(path, &tmp));
    ::unlink(tmp.c_str());
}

void refuse_input_as_output(const std::string& option, const std::string& output,
                            const std::vector<std::pair<std::string, std::string>>& inputs) {
    struct stat out;
    if (output.empty() || output == "-" || ::stat(output.c_str(), &out) != 0) return;
    for (const auto& [what, path] : inputs) {
        struct stat in;
        const int rc = path == "-" ? ::fstat(0, &in) : ::stat(path.c_str(), &in);
        if (rc == 0 && in.st_dev == out.st_dev && in.st_ino == out.st_ino)
            fail(option + " " + output + ": the same file as " + what + (path == output ? "" : " (" + path + ")") +
                 "; refusing to overwrite an input");
    }
}

void write_file_atomic(const std::string& path, const void* data, size_t n) {
    write_file_atomic(
        path, [&](const ByteSink& sink) { sink(data, n); }, n);
}

}  // namespace st
