// Tests for libst/audio (in st-tests-audio, apart from st-tests, since they link libsndfile): reading
// WAV, FLAC and OGG/Vorbis, mixing to mono, resampling (lengths, a tone kept, one past the new
// Nyquist frequency removed), writing WAV and FLAC whole or not at all, the errors (files cut short,
// headers whose rates or lengths are not to be believed); and mu-law's signal-to-noise ratio on
// music-like sound, the way st-audio makes it.
// The hidden case [music] measures that on real music: from the repository root, after
// scripts/get-data.sh audio, run `build/st-tests-audio "[music]"` (ST_MUSIC=FOLDER for other .ogg files).
#include <sndfile.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <tuple>

#include "audio/audio.h"
#include "error.h"
#include "io/mulaw.h"
#include "rng.h"
#include "temp_dir.h"

using Dir = st::test::TempDir;

namespace {

constexpr double kPi = 3.14159265358979;

void put(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string little_endian(uint32_t v, int bytes) {
    std::string s;
    for (int k = 0; k < bytes; k++) s += char(v >> (8 * k));
    return s;
}

// A mono 16-bit WAV of N samples at RATE, by hand: its data chunk says CLAIM bytes (default: the 2N there are).
std::string wav(uint32_t rate, size_t n, std::optional<uint32_t> claim = std::nullopt) {
    const uint32_t data = uint32_t(2 * n);
    std::string samples;
    for (size_t i = 0; i < n; i++) samples += little_endian(uint32_t(int16_t(i * 997 % 20000 - 10000)), 2);
    return "RIFF" + little_endian(36 + data, 4) + "WAVE" + "fmt " + little_endian(16, 4) + little_endian(1, 2) +
           little_endian(1, 2) + little_endian(rate, 4) + little_endian(2 * rate, 4) + little_endian(2, 2) +
           little_endian(16, 2) + "data" + little_endian(claim.value_or(data), 4) + samples;
}
std::string get(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

// Interleaved FRAMES of CHANNELS samples as a file of FORMAT (SF_FORMAT_*), written by libsndfile itself.
void put_sound(const std::string& path, const std::vector<float>& frames, int channels, int rate, int format) {
    SF_INFO info{};
    info.samplerate = rate;
    info.channels = channels;
    info.format = format;
    SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
    REQUIRE(f);
    const sf_count_t n = sf_count_t(frames.size()) / channels;
    CHECK(sf_writef_float(f, frames.data(), n) == n);
    REQUIRE(sf_close(f) == 0);
}

std::vector<float> sine(double hz, int rate, size_t n, double amplitude) {
    std::vector<float> x(n);
    for (size_t i = 0; i < n; i++) x[i] = float(amplitude * std::sin(2 * kPi * hz * double(i) / rate));
    return x;
}

// SECONDS of something like music at RATE: a chord of three notes with overtones, each swelling and
// dying away, over quiet noise; peaks near PEAK. With 2 channels, the right is the left at 0.7 with
// noise of its own.
std::vector<float> chord(int rate, double seconds, float peak, int channels = 1) {
    st::Rng rng(7);
    std::vector<float> x;
    for (size_t i = 0; i < size_t(seconds * rate); i++) {
        const double t = double(i) / rate;
        double v = 0;
        for (double f : {220.0, 277.18, 329.63}) {
            const double envelope =
                std::min(1.0, t / 0.05) * std::exp(-1.5 * t) * (0.6 + 0.4 * std::sin(2 * kPi * 0.7 * t + f));
            for (int h = 1; h <= 4; h++) v += envelope * std::sin(2 * kPi * f * h * t) / (h * h);
        }
        x.push_back(float(peak * (v / 2 + 0.003 * rng.normal())));
        if (channels == 2) x.push_back(float(peak * (0.7 * v / 2 + 0.003 * rng.normal())));
    }
    return x;
}

// The energy of WANT and of the error GOT - WANT over samples [from, size - from).
struct Energies {
    double signal = 0, noise = 0;
    double snr_db() const { return 10 * std::log10(signal / noise); }
    void add(const Energies& e) { signal += e.signal, noise += e.noise; }
};
Energies energies(const std::vector<float>& want, const std::vector<float>& got, size_t from = 0) {
    REQUIRE(want.size() == got.size());
    Energies e;
    for (size_t i = from; i + from < want.size(); i++) {
        e.signal += double(want[i]) * want[i];
        e.noise += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    }
    return e;
}
double snr_db(const std::vector<float>& want, const std::vector<float>& got, size_t from = 0) {
    return energies(want, got, from).snr_db();
}

// What st-audio encode then decode give back: each sample through its 8-bit code.
std::vector<float> through_codes(const std::vector<float>& x, bool linear = false) {
    std::vector<float> y;
    for (float v : x)
        y.push_back(linear ? st::linear_decode(st::linear_encode(v)) : st::mulaw_decode(st::mulaw_encode(v)));
    return y;
}

}  // namespace

// The call throws st::Error, starting "PATH: " and containing WHAT.
#define CHECK_AUDIO_ERROR(call, path, what)                                                            \
    do {                                                                                               \
        CHECK_THROWS_AS(call, st::Error);                                                              \
        CHECK_THROWS_WITH(call, Catch::StartsWith(std::string(path) + ": ") && Catch::Contains(what)); \
    } while (0)

TEST_CASE("write_sound and read_sound: WAV and FLAC at 16 bits, whole files only", "[audio]") {
    Dir dir;
    const std::vector<float> x = chord(12000, 0.5, 0.9);
    for (auto [name, format, magic] :
         {std::tuple{"a.wav", st::SoundFormat::wav, "RIFF"}, std::tuple{"a.flac", st::SoundFormat::flac, "fLaC"}}) {
        INFO(name);
        st::write_sound(dir / name, x, 12000, format);
        CHECK(get(dir / name).substr(0, 4) == magic);
        const st::Sound s = st::read_sound(dir / name);
        CHECK(s.rate == 12000);
        CHECK(s.channels == 1);
        REQUIRE(s.samples.size() == x.size());
        float worst = 0;
        for (size_t i = 0; i < x.size(); i++) worst = std::max(worst, std::fabs(s.samples[i] - x[i]));
        CHECK(worst <= 1.0f / 32767);
    }
    // A sample past full scale saturates instead of wrapping round.
    st::write_sound(dir / "loud.wav", {1.5f, -1.5f, 0.5f}, 8000, st::SoundFormat::wav);
    const st::Sound loud = st::read_sound(dir / "loud.wav");
    REQUIRE(loud.samples.size() == 3);
    CHECK(loud.samples[0] > 0.999f);
    CHECK(loud.samples[1] < -0.999f);
    CHECK(loud.rate == 8000);

    auto files = dir.names();
    std::sort(files.begin(), files.end());
    CHECK(files == std::vector<std::string>{"a.flac", "a.wav", "loud.wav"});  // no temporary left
    CHECK_AUDIO_ERROR(st::write_sound(dir / "no/such/a.wav", x, 12000, st::SoundFormat::wav), dir / "no/such/a.wav",
                      "No such file or directory");
    CHECK(dir.names().size() == 3);
}

TEST_CASE("read_sound mixes channels to their mean", "[audio]") {
    Dir dir;
    const std::vector<float> stereo = chord(22050, 0.3, 0.8, 2);
    put_sound(dir / "stereo.wav", stereo, 2, 22050, SF_FORMAT_WAV | SF_FORMAT_FLOAT);
    const st::Sound s = st::read_sound(dir / "stereo.wav");
    CHECK(s.rate == 22050);
    CHECK(s.channels == 2);
    REQUIRE(s.samples.size() == stereo.size() / 2);
    for (size_t i = 0; i < s.samples.size(); i += 97) CHECK(s.samples[i] == (stereo[2 * i] + stereo[2 * i + 1]) / 2.0f);
}

TEST_CASE("read_sound reads OGG/Vorbis, which resamples to 12000 samples a second", "[audio]") {
    Dir dir;
    const std::vector<float> stereo = chord(44100, 1.0, 0.8, 2);
    put_sound(dir / "music.ogg", stereo, 2, 44100, SF_FORMAT_OGG | SF_FORMAT_VORBIS);
    const st::Sound s = st::read_sound(dir / "music.ogg");
    CHECK(s.rate == 44100);
    CHECK(s.channels == 2);
    REQUIRE(s.samples.size() == 44100);
    std::vector<float> mono;
    for (size_t i = 0; i < stereo.size(); i += 2) mono.push_back((stereo[i] + stereo[i + 1]) / 2);
    CHECK(snr_db(mono, s.samples) > 15);  // Vorbis is lossy; this says the samples are the sound written
    const std::vector<float> y = st::resample(s.samples, 44100, 12000);
    CHECK(y.size() >= 11999);
    CHECK(y.size() <= 12001);
}

TEST_CASE("resample: lengths follow the rates", "[audio]") {
    for (auto [from, seconds] : {std::pair{44100, 1.0}, std::pair{48000, 1.0}, std::pair{22050, 2.0},
                                 std::pair{8000, 1.5}, std::pair{16000, 0.25}, std::pair{11025, 3.0}}) {
        INFO(from << " Hz, " << seconds << " s");
        const size_t n = size_t(from * seconds), want = size_t(12000 * seconds);
        const size_t got = st::resample(sine(440, from, n, 0.5), from, 12000).size();
        CHECK(got + 1 >= want);
        CHECK(got <= want + 1);
    }
    const std::vector<float> x = sine(440, 12000, 1000, 0.5);
    CHECK(st::resample(x, 12000, 12000) == x);
    CHECK(st::resample({}, 44100, 12000).empty());
}

TEST_CASE("resample: a tone below the new Nyquist frequency stays, one above it goes", "[audio]") {
    for (int from : {44100, 48000, 8000}) {
        INFO("from " << from << " Hz");
        // 1 kHz, in time: compared away from the ends, where the filter sees past the signal.
        const std::vector<float> y = st::resample(sine(1000, from, size_t(from), 0.5), from, 12000);
        REQUIRE(y.size() == 12000);
        CHECK(snr_db(sine(1000, 12000, 12000, 0.5), y, 200) > 100);  // 20-bit precision: about 120 dB
    }
    // 7 kHz from 44.1 kHz: past 6 kHz, it would come back as a 5 kHz alias.
    const std::vector<float> y = st::resample(sine(7000, 44100, 44100, 0.5), 44100, 12000);
    double energy = 0;
    for (size_t i = 200; i + 200 < y.size(); i++) energy += double(y[i]) * y[i];
    CHECK(10 * std::log10(energy / double(y.size() - 400) / 0.125) < -100);  // against the tone's 0.5^2 / 2
}

TEST_CASE("mu-law after resampling: music-like sound comes back at 30 dB or better, loud or quiet", "[audio][mulaw]") {
    Dir dir;
    for (float peak : {0.9f, 0.3f, 0.1f}) {  // -1, -10 and -20 dB of full scale
        put_sound(dir / "chord.wav", chord(44100, 2.0, peak, 2), 2, 44100, SF_FORMAT_WAV | SF_FORMAT_PCM_16);
        const st::Sound s = st::read_sound(dir / "chord.wav");
        const std::vector<float> x = st::resample(s.samples, s.rate, 12000);
        const double at_12k = snr_db(x, through_codes(x)), at_44k = snr_db(s.samples, through_codes(s.samples));
        const double linear = snr_db(x, through_codes(x, true));
        INFO("peak " << peak << ": mu-law " << at_12k << " dB at 12 kHz, " << at_44k << " dB at 44.1 kHz; linear "
                     << linear << " dB");
        CHECK(at_12k >= 30);
        CHECK(at_44k >= 30);
        // mu-law's error follows the level of the sound; linear's does not, so quiet sound loses to it.
        if (peak < 0.2f) CHECK(linear < at_12k - 5);
    }
}

TEST_CASE("read_sound errors name the file and what is wrong", "[audio]") {
    Dir dir;
    const std::string p = dir / "f";
    put(p, "");
    CHECK_AUDIO_ERROR(st::read_sound(p), p, "empty file");
    put(p, std::string(2000, 'x') + "just some text, not a sound\n");
    CHECK_AUDIO_ERROR(st::read_sound(p), p, "not a sound file that libsndfile reads");
    CHECK_AUDIO_ERROR(st::read_sound(dir / "missing.wav"), dir / "missing.wav", "No such file or directory");

    // A FLAC file cut short; an OGG/Vorbis file damaged in the middle, where the decoder stops without an error.
    const std::vector<float> x = chord(44100, 3.0, 0.8);
    put_sound(dir / "a.flac", x, 1, 44100, SF_FORMAT_FLAC | SF_FORMAT_PCM_16);
    const std::string flac = get(dir / "a.flac");
    put(p, flac.substr(0, flac.size() / 2));
    CHECK_AUDIO_ERROR(st::read_sound(p), p, "corrupted or truncated");
    put_sound(dir / "a.ogg", x, 1, 44100, SF_FORMAT_OGG | SF_FORMAT_VORBIS);
    std::string ogg = get(dir / "a.ogg");
    for (size_t i = ogg.size() / 3; i < ogg.size() / 2; i += 7) ogg[i] ^= 0x5a;
    put(p, ogg);
    CHECK_AUDIO_ERROR(st::read_sound(p), p, "corrupted or truncated (");
}

TEST_CASE("read_sound refuses a WAV whose data chunk claims more than the file holds", "[audio]") {
    Dir dir;
    const std::string p = dir / "f";
    st::write_sound(dir / "a.wav", sine(440, 8000, 1000, 0.5), 8000, st::SoundFormat::wav);
    const std::string whole = get(dir / "a.wav");
    REQUIRE(whole.size() == 44 + 2000);
    put(p, whole.substr(0, 44 + 1200));
    CHECK_AUDIO_ERROR(st::read_sound(p), p, "truncated WAV: its data chunk claims 2000 bytes, 1200 follow");
    put(p, wav(8000, 100, 0x7FFFFFF0));
    CHECK_AUDIO_ERROR(st::read_sound(p), p, "truncated WAV: its data chunk claims 2147483632 bytes, 200 follow");
    // 0xFFFFFFFF: the length a writer into a pipe leaves, the data running to the end of the file.
    put(p, wav(8000, 100, 0xFFFFFFFF));
    CHECK(st::read_sound(p).samples.size() == 100);
    put(p, wav(8000, 100));
    CHECK(st::read_sound(p).samples.size() == 100);
}

TEST_CASE("read_sound and resample refuse rates outside 1000 to 768000 Hz", "[audio]") {
    Dir dir;
    const std::string p = dir / "f";
    put(p, wav(1, 1000));
    CHECK_AUDIO_ERROR(st::read_sound(p), p, "a sample rate of 1 Hz; st reads 1000 to 768000 Hz");
    put(p, wav(768001, 1000));
    CHECK_AUDIO_ERROR(st::read_sound(p), p, "a sample rate of 768001 Hz");
    for (uint32_t rate : {1000u, 768000u}) {
        put(p, wav(rate, 1000));
        CHECK(st::read_sound(p).rate == int(rate));
    }
    const std::vector<float> x = sine(440, 8000, 1000, 0.5);
    CHECK_THROWS_WITH(st::resample(x, 1, 12000), "resampling from 1 to 12000 Hz: rates must be 1000 to 768000 Hz");
    CHECK_THROWS_AS(st::resample(x, 12000, 999), st::Error);
    CHECK_THROWS_AS(st::resample({}, 8000, 800000), st::Error);
    const size_t up = st::resample(x, 1000, 768000).size();
    CHECK((up >= 767999 && up <= 768001));
    // 2^31 samples out would be 8 GiB of floats: refused before anything is allocated.
    const std::vector<float> long_sound(size_t(1) << 22);
    CHECK_THROWS_WITH(st::resample(long_sound, 1000, 768000),
                      Catch::Contains("4194304 samples would become") && Catch::Contains("more than the 2147483648"));
}

TEST_CASE("read_sound takes a header's length as a claim, not as memory to set aside", "[audio]") {
    Dir dir;
    const std::string p = dir / "f";
    st::write_sound(dir / "a.flac", sine(440, 8000, 4000, 0.5), 8000, st::SoundFormat::flac);
    std::string flac = get(dir / "a.flac");
    // STREAMINFO's 36-bit count of samples, in bytes 21 (low 4 bits) to 25: 2^36 - 1, 256 GiB of floats.
    REQUIRE(flac.substr(0, 4) == "fLaC");
    flac[21] = char(flac[21] | 0x0F);
    for (size_t i = 22; i < 26; i++) flac[i] = char(0xFF);
    put(p, flac);
    CHECK_AUDIO_ERROR(st::read_sound(p), p,
                      "corrupted or truncated (4000 of the 68719476735 frames its header announces)");
}

TEST_CASE("mu-law on real music", "[.music]") {
    const char* folder = std::getenv("ST_MUSIC") ? std::getenv("ST_MUSIC") : "data/music";
    std::vector<std::string> tracks;
    for (const auto& e : std::filesystem::directory_iterator(folder))
        if (e.path().extension() == ".ogg") tracks.push_back(e.path());
    std::sort(tracks.begin(), tracks.end());
    REQUIRE(!tracks.empty());
    std::printf(
        "SNR in dB of mu-law at 12 kHz (against the sound resampled to 12 kHz), of mu-law at the file's rate,\n"
        "and of 8-bit linear at 12 kHz; the level is the RMS of the sound at 12 kHz, in dB of full scale\n");
    std::printf("%-28s %7s %6s %6s %8s %8s %8s\n", "track", "seconds", "rate", "level", "mu-law", "at rate", "linear");
    Energies all_12k, all_rate, all_linear;
    double seconds = 0;
    for (const std::string& track : tracks) {
        const st::Sound s = st::read_sound(track);
        const std::vector<float> x = st::resample(s.samples, s.rate, 12000);
        const Energies at_12k = energies(x, through_codes(x)), at_rate = energies(s.samples, through_codes(s.samples));
        const Energies linear = energies(x, through_codes(x, true));
        std::printf("%-28s %7.1f %6d %6.1f %8.2f %8.2f %8.2f\n", std::filesystem::path(track).filename().c_str(),
                    double(s.samples.size()) / s.rate, s.rate, 10 * std::log10(at_12k.signal / double(x.size())),
                    at_12k.snr_db(), at_rate.snr_db(), linear.snr_db());
        all_12k.add(at_12k), all_rate.add(at_rate), all_linear.add(linear);
        seconds += double(s.samples.size()) / s.rate;
    }
    std::printf("%-28s %7.1f %6s %6s %8.2f %8.2f %8.2f\n", "all (energies summed)", seconds, "", "", all_12k.snr_db(),
                all_rate.snr_db(), all_linear.snr_db());
}
