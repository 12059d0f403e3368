// Sound files through libsndfile's virtual I/O on bytes in memory, and libsoxr's one-shot resampler.
// Memory on both sides: reading lets stdin and .zst files be read as any file is (libsndfile would
// seek in them), and writing lets write_file_atomic put down the whole file or nothing.
#include "audio/audio.h"

#include <sndfile.h>
#include <soxr.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "error.h"
#include "io/file.h"

namespace st {

namespace {

// A file in memory as libsndfile's virtual I/O sees it: reads, writes and seeks at pos.
struct MemoryFile {
    std::vector<uint8_t> bytes;
    sf_count_t pos = 0;
};

MemoryFile& memory(void* user) { return *static_cast<MemoryFile*>(user); }

sf_count_t memory_length(void* user) { return sf_count_t(memory(user).bytes.size()); }

sf_count_t memory_seek(sf_count_t offset, int whence, void* user) {
    MemoryFile& m = memory(user);
    const sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m.pos : sf_count_t(m.bytes.size());
    if (base + offset < 0) return -1;
    return m.pos = base + offset;
}

sf_count_t memory_read(void* to, sf_count_t n, void* user) {
    MemoryFile& m = memory(user);
    n = std::clamp(sf_count_t(m.bytes.size()) - m.pos, sf_count_t(0), n);
    std::memcpy(to, m.bytes.data() + m.pos, size_t(n));
    m.pos += n;
    return n;
}

sf_count_t memory_write(const void* from, sf_count_t n, void* user) {
    MemoryFile& m = memory(user);
    if (size_t(m.pos + n) > m.bytes.size()) m.bytes.resize(size_t(m.pos + n));
    std::memcpy(m.bytes.data() + m.pos, from, size_t(n));
    m.pos += n;
    return n;
}

sf_count_t memory_tell(void* user) { return memory(user).pos; }

SF_VIRTUAL_IO memory_io = {memory_length, memory_seek, memory_read, memory_write, memory_tell};

using SoundFile = std::unique_ptr<SNDFILE, decltype(&sf_close)>;

std::string display_name(const std::string& path) { return path == "-" ? "stdin" : path; }

// A libsndfile message without its closing full stop, to go inside parentheses.
std::string reason(const char* message) {
    std::string s = message;
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
}

}  // namespace

Sound read_sound(const std::string& path) {
    const std::string name = display_name(path);
    MemoryFile file{read_file(path)};
    if (file.bytes.empty()) fail(name + ": empty file");
    SF_INFO info{};
    SoundFile f(sf_open_virtual(&memory_io, SFM_READ, &info, &file), sf_close);
    if (!f) fail(name + ": not a sound file that libsndfile reads (" + reason(sf_strerror(nullptr)) + ")");

    Sound s{info.samplerate, info.channels, {}};
    if (info.frames > 0 && info.frames < SF_COUNT_MAX) s.samples.reserve(size_t(info.frames));
    std::vector<float> frames(size_t(4096 * info.channels));
    for (sf_count_t n; (n = sf_readf_float(f.get(), frames.data(), 4096)) > 0;)
        for (sf_count_t i = 0; i < n; i++) {
            float sum = 0;
            for (int c = 0; c < info.channels; c++) sum += frames[size_t(i * info.channels + c)];
            s.samples.push_back(sum / float(info.channels));
        }
    if (sf_error(f.get())) fail(name + ": corrupted or truncated (" + reason(sf_strerror(f.get())) + ")");
    // A decoder (Vorbis, MP3) may stop at damage without an error; the length in the header tells.
    // A little short is no damage: some encoders write pages past the end of the stream, which
    // libsndfile counts and the decoder skips (Wesnoth's northerners.ogg: 0.06%).
    if (info.frames > 0 && info.frames < SF_COUNT_MAX && double(s.samples.size()) < 0.99 * double(info.frames))
        fail(name + ": corrupted or truncated (" + std::to_string(s.samples.size()) + " of the " + std::to_string(info.frames) +
             " frames its header announces)");
    return s;
}

std::vector<float> resample(const std::vector<float>& samples, int from, int to) {
    if (from == to || samples.empty()) return samples;
    // Room for every sample soxr gives (n * to / from, rounded) and a few more.
    std::vector<float> out(size_t(std::ceil(double(samples.size()) * to / from)) + 16);
    const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);  // soxr_oneshot's default is the low one
    size_t done = 0;
    if (soxr_error_t e = soxr_oneshot(from, to, 1, samples.data(), samples.size(), nullptr, out.data(), out.size(), &done,
                                      &io, &quality, nullptr))
        fail(std::string("resampling from ") + std::to_string(from) + " to " + std::to_string(to) + " Hz: " + e);
    out.resize(done);
    return out;
}

void write_sound(const std::string& path, const std::vector<float>& samples, int rate, SoundFormat format) {
    const std::string name = path == "-" ? "stdout" : path;
    MemoryFile file;
    SF_INFO info{};
    info.samplerate = rate;
    info.channels = 1;
    info.format = (format == SoundFormat::wav ? SF_FORMAT_WAV : SF_FORMAT_FLAC) | SF_FORMAT_PCM_16;
    SoundFile f(sf_open_virtual(&memory_io, SFM_WRITE, &info, &file), sf_close);
    if (!f) fail(name + ": " + reason(sf_strerror(nullptr)));
    sf_command(f.get(), SFC_SET_CLIPPING, nullptr, SF_TRUE);  // else a sample past 1 wraps round to -1
    if (sf_writef_float(f.get(), samples.data(), sf_count_t(samples.size())) != sf_count_t(samples.size()))
        fail(name + ": " + reason(sf_strerror(f.get())));
    if (const int e = sf_close(f.release())) fail(name + ": " + reason(sf_error_number(e)));  // FLAC finishes its stream here
    write_file_atomic(path, file.bytes.data(), file.bytes.size());
}

}  // namespace st
