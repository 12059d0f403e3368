#include "io/wav_stream.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <vector>

#include "error.h"
#include "io/mulaw.h"

namespace st {

namespace {

void put32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (8 * i));
}
void put16(uint8_t* p, uint16_t v) {
    p[0] = uint8_t(v), p[1] = uint8_t(v >> 8);
}

// The 44-byte header of a mono 16-bit PCM WAV of `samples` samples (-1: unknown).
void wav_header(uint8_t* h, int rate, int64_t samples) {
    const uint32_t data = samples < 0 ? 0xFFFFFFFFu : uint32_t(samples * 2);
    std::memcpy(h, "RIFF", 4);
    put32(h + 4, samples < 0 ? 0xFFFFFFFFu : data + 36);
    std::memcpy(h + 8, "WAVEfmt ", 8);
    put32(h + 16, 16);
    put16(h + 20, 1);  // PCM
    put16(h + 22, 1);  // one channel
    put32(h + 24, uint32_t(rate));
    put32(h + 28, uint32_t(rate) * 2);
    put16(h + 32, 2);
    put16(h + 34, 16);
    std::memcpy(h + 36, "data", 4);
    put32(h + 40, data);
}

void write_all(int fd, const uint8_t* p, size_t n, const std::string& name) {
    while (n > 0) {
        const ssize_t k = ::write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) fail(name + ": write failed: " + std::strerror(errno));
        p += k, n -= size_t(k);
    }
}

}  // namespace

int16_t pcm16(float x) {
    const float v = x * 2147483648.0f;  // exact: a power of two
    if (!(v > -2147483648.0f)) return -32768;  // NaN too
    if (v >= 2147483647.0f) return 32767;
    return int16_t(int32_t(std::lrintf(v)) >> 16);
}

int64_t stream_wav(int in_fd, const std::string& in_name, int out_fd, const std::string& out_name, int rate,
                   bool linear) {
    // Samples past 2^31 - 1 bytes of data no longer fit the header's lengths: still written, and the
    // lengths stay "unknown", as a player reading a stream expects.
    constexpr int64_t kMaxHeaderSamples = (int64_t(0xFFFFFFFF) - 36) / 2;  // the RIFF length: 36 + data bytes
    uint8_t header[44];
    wav_header(header, rate, -1);
    bool started = false;
    std::vector<uint8_t> codes(1 << 16), pcm(2 << 16);
    int64_t total = 0;
    for (;;) {
        const ssize_t n = ::read(in_fd, codes.data(), codes.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(in_name + ": read failed: " + std::strerror(errno));
        if (n == 0) break;
        if (!started) write_all(out_fd, header, sizeof header, out_name), started = true;
        for (ssize_t i = 0; i < n; i++) {
            const int16_t s = pcm16(linear ? linear_decode(codes[size_t(i)]) : mulaw_decode(codes[size_t(i)]));
            put16(&pcm[size_t(2 * i)], uint16_t(s));
        }
        write_all(out_fd, pcm.data(), size_t(2 * n), out_name);
        total += n;
    }
    if (total == 0) fail(in_name + ": no samples (empty input)");
    // A file gets its lengths; a pipe cannot go back, and a player reads on to the end.
    if (total <= kMaxHeaderSamples && ::lseek(out_fd, 0, SEEK_SET) == 0) {
        wav_header(header, rate, total);
        write_all(out_fd, header, sizeof header, out_name);
        ::lseek(out_fd, 0, SEEK_END);
    }
    return total;
}

}  // namespace st
