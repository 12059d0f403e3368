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

// A libsndfile message without its closing full stop, to go inside parentheses.
std::string reason(const char* message) {
    std::string s = message;
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
}

uint64_t le(const uint8_t* p, int bytes) {
    uint64_t v = 0;
    for (int k = bytes - 1; k >= 0; k--) v = v << 8 | p[k];
    return v;
}
uint64_t be32(const uint8_t* p) { return uint64_t(p[0]) << 24 | uint64_t(p[1]) << 16 | uint64_t(p[2]) << 8 | p[3]; }

// libsndfile reads a WAV whose data chunk claims more than the file holds up to the file's end, so
// a file cut short passes for a whole one; the chunks are walked here to find the claim. A length
// of 0xFFFFFFFF is what a writer that cannot seek back (into a pipe) leaves: the data runs to the
// end. RF64 keeps the real length in its ds64 chunk.
void check_wav_chunks(const std::vector<uint8_t>& b, const std::string& name) {
    if (b.size() < 12 || std::memcmp(&b[8], "WAVE", 4) != 0) return;
    const bool rifx = std::memcmp(&b[0], "RIFX", 4) == 0, rf64 = std::memcmp(&b[0], "RF64", 4) == 0;
    if (!rifx && !rf64 && std::memcmp(&b[0], "RIFF", 4) != 0) return;
    constexpr uint64_t kUnknown = 0xFFFFFFFF;
    uint64_t ds64_data = kUnknown;
    for (size_t at = 12; at + 8 <= b.size();) {
        uint64_t length = rifx ? be32(&b[at + 4]) : le(&b[at + 4], 4);
        const uint64_t left = b.size() - at - 8;
        if (std::memcmp(&b[at], "ds64", 4) == 0 && length >= 16 && left >= 16) ds64_data = le(&b[at + 16], 8);
        if (std::memcmp(&b[at], "data", 4) == 0) {
            if (rf64 && length == kUnknown) length = ds64_data;
            if (length != kUnknown && length > left)
                fail(name + ": truncated WAV: its data chunk claims " + std::to_string(length) + " bytes, " +
                     std::to_string(left) + " follow");
            return;
        }
        if (length > left) return;  // libsndfile says what is wrong with the chunks before the data
        at += 8 + size_t(length) + size_t(length & 1);
    }
}

}  // namespace

Sound read_sound(const std::string& path) { return sound_from_bytes(read_file(path), input_name(path)); }

Sound sound_from_bytes(std::vector<uint8_t> bytes, const std::string& name) {
    MemoryFile file{std::move(bytes)};
    if (file.bytes.empty()) fail(name + ": empty file");
    check_wav_chunks(file.bytes, name);
    SF_INFO info{};
    SoundFile f(sf_open_virtual(&memory_io, SFM_READ, &info, &file), sf_close);
    if (!f) fail(name + ": not a sound file that libsndfile reads (" + reason(sf_strerror(nullptr)) + ")");
    if (info.samplerate < kMinSoundRate || info.samplerate > kMaxSoundRate)
        fail(name + ": a sample rate of " + std::to_string(info.samplerate) + " Hz; st reads " +
             std::to_string(kMinSoundRate) + " to " + std::to_string(kMaxSoundRate) + " Hz");
    if (info.channels < 1) fail(name + ": " + std::to_string(info.channels) + " channels");

    Sound s{info.samplerate, info.channels, {}};
    // The header's count, as far as the file's size confirms it: compressed formats grow past it.
    if (info.frames > 0 && info.frames < SF_COUNT_MAX)
        s.samples.reserve(std::min(size_t(info.frames), file.bytes.size()));
    std::vector<float> frames(size_t(4096) * size_t(info.channels));
    for (sf_count_t n; (n = sf_readf_float(f.get(), frames.data(), 4096)) > 0;) {
        if (s.samples.size() + size_t(n) > kMaxSoundSamples)
            fail(name + ": more than " + std::to_string(kMaxSoundSamples) + " samples, the most st reads");
        for (sf_count_t i = 0; i < n; i++) {
            float sum = 0;
            for (int c = 0; c < info.channels; c++) sum += frames[size_t(i * info.channels + c)];
            s.samples.push_back(sum / float(info.channels));
        }
    }
    if (sf_error(f.get())) fail(name + ": corrupted or truncated (" + reason(sf_strerror(f.get())) + ")");
    // A decoder (Vorbis, MP3) may stop at damage without an error; the length in the header tells.
    // A little short is no damage: some encoders write pages past the end of the stream, which
    // libsndfile counts and the decoder skips (Wesnoth's northerners.ogg: 0.06%).
    if (info.frames > 0 && info.frames < SF_COUNT_MAX && double(s.samples.size()) < 0.99 * double(info.frames))
        fail(name + ": corrupted or truncated (" + std::to_string(s.samples.size()) + " of the " +
             std::to_string(info.frames) + " frames its header announces)");
    return s;
}

std::vector<float> resample(const std::vector<float>& samples, int from, int to) {
    const std::string what = "resampling from " + std::to_string(from) + " to " + std::to_string(to) + " Hz";
    if (std::min(from, to) < kMinSoundRate || std::max(from, to) > kMaxSoundRate)
        fail(what + ": rates must be " + std::to_string(kMinSoundRate) + " to " + std::to_string(kMaxSoundRate) +
             " Hz");
    if (from == to || samples.empty()) return samples;
    // Room for every sample soxr gives (n * to / from, rounded) and a few more.
    const double n = std::ceil(double(samples.size()) * to / from) + 16;
    if (n > double(kMaxSoundSamples))
        fail(what + ": " + std::to_string(samples.size()) + " samples would become " + std::to_string(uint64_t(n)) +
             ", more than the " + std::to_string(kMaxSoundSamples) + " st makes");
    std::vector<float> out(static_cast<size_t>(n));
    const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);  // soxr_oneshot's default is the low one
    size_t done = 0;
    if (soxr_error_t e = soxr_oneshot(from, to, 1, samples.data(), samples.size(), nullptr, out.data(), out.size(),
                                      &done, &io, &quality, nullptr))
        fail(what + ": " + e);
    out.resize(done);
    return out;
}

void write_sound(const std::string& path, const std::vector<float>& samples, int rate, SoundFormat format) {
    const std::string name = output_name(path);
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
    if (const int e = sf_close(f.release()))
        fail(name + ": " + reason(sf_error_number(e)));  // FLAC finishes its stream here
    write_file_atomic(path, file.bytes.data(), file.bytes.size());
}

}  // namespace st
