// Sound files in and out (libsndfile) and resampling (libsoxr): what st-audio needs beyond libst.
// It is a library of its own (libst_audio.a), linked by st-audio and its tests only, because the
// GPU machine has no libsndfile and every other program must run there.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace st {

// The sample rates st reads and resamples: from below telephone speech to the fastest converters
// made. A header's rate outside them (1 Hz, say) is damage, and would make the resampler's output
// thousands of times its input.
inline constexpr int kMinSoundRate = 1000, kMaxSoundRate = 768000;
// The most samples a sound may have, read or resampled: 2^31, 12.4 hours at 48 kHz (8 GiB of floats).
inline constexpr uint64_t kMaxSoundSamples = uint64_t(1) << 31;

// A sound mixed to one channel: samples in [-1, 1] (as libsndfile scales them), `rate` a second.
struct Sound {
    int rate = 0;
    int channels = 0;  // in the file, before mixing
    std::vector<float> samples;
};

// Every frame of PATH ("-" for stdin; a name ending in ".zst" is decompressed first) in any format
// libsndfile reads (WAV, FLAC, OGG/Vorbis, Opus, AIFF, AU, ...), each the mean of its channels.
// Throws st::Error naming PATH: "PATH: empty file", "PATH: not a sound file that libsndfile reads
// (...)", "PATH: corrupted or truncated (...)", "PATH: truncated WAV: its data chunk claims N
// bytes, M follow", a rate outside kMinSoundRate..kMaxSoundRate, more than kMaxSoundSamples.
Sound read_sound(const std::string& path);
// The same from BYTES in memory, named NAME in errors.
Sound sound_from_bytes(std::vector<uint8_t> bytes, const std::string& name);

// SAMPLES at rate FROM resampled to rate TO by libsoxr at its high quality (20-bit precision,
// linear phase, no aliasing above the lower of the two Nyquist frequencies): n * TO / FROM
// samples, rounded. A rate outside kMinSoundRate..kMaxSoundRate, or more than kMaxSoundSamples
// out, is an st::Error before anything is allocated.
std::vector<float> resample(const std::vector<float>& samples, int from, int to);

enum class SoundFormat { wav, flac };

// SAMPLES as a mono 16-bit WAV or FLAC file at RATE, made in memory and written with
// write_file_atomic: a failure leaves no partial file; "-" writes to stdout. Samples beyond
// [-1, 1] are clipped.
void write_sound(const std::string& path, const std::vector<float>& samples, int rate, SoundFormat format);

}  // namespace st
