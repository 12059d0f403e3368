// Sound files in and out (libsndfile) and resampling (libsoxr): what st-audio needs beyond libst.
// It is a library of its own (libst_audio.a), linked by st-audio and its tests only, because the
// GPU machine has no libsndfile and every other program must run there.
#pragma once
#include <string>
#include <vector>

namespace st {

// A sound mixed to one channel: samples in [-1, 1] (as libsndfile scales them), `rate` a second.
struct Sound {
    int rate = 0;
    int channels = 0;  // in the file, before mixing
    std::vector<float> samples;
};

// Every frame of PATH ("-" for stdin; a name ending in ".zst" is decompressed first) in any format
// libsndfile reads (WAV, FLAC, OGG/Vorbis, Opus, AIFF, AU, ...), each the mean of its channels.
// Throws st::Error naming PATH: "PATH: empty file", "PATH: not a sound file that libsndfile reads
// (...)", "PATH: corrupted or truncated (...)".
Sound read_sound(const std::string& path);

// SAMPLES at rate FROM resampled to rate TO by libsoxr at its high quality (20-bit precision,
// linear phase, no aliasing above the lower of the two Nyquist frequencies): n * TO / FROM
// samples, rounded.
std::vector<float> resample(const std::vector<float>& samples, int from, int to);

enum class SoundFormat { wav, flac };

// SAMPLES as a mono 16-bit WAV or FLAC file at RATE, made in memory and written with
// write_file_atomic: a failure leaves no partial file; "-" writes to stdout. Samples beyond
// [-1, 1] are clipped.
void write_sound(const std::string& path, const std::vector<float>& samples, int rate, SoundFormat format);

}  // namespace st
