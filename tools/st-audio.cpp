// st-audio: sound to bytes and back. encode: sound files (what libsndfile reads: WAV, FLAC, OGG/Vorbis,
// ...) mixed to mono, resampled to --rate and written as one mu-law (or linear) byte a sample on
// stdout; decode: such bytes to a WAV or FLAC file.
#include <unistd.h>

#include <cstdio>

#include "audio/audio.h"
#include "cli.h"
#include "error.h"
#include "io/file.h"
#include "io/mulaw.h"
#include "io/wav_stream.h"

using namespace st;

static const char* const kUsage =
    "Sound to bytes (one mu-law byte a sample, mono, 12000 a second by default) and back.\n"
    "Usage:\n"
    "  st-audio encode [OPTIONS] FILE...   sound files to bytes on stdout\n"
    "  st-audio decode [OPTIONS] [FILE]    bytes (FILE or stdin) to a WAV or FLAC file\n"
    "FILE: WAV, FLAC, OGG/Vorbis, Opus, AIFF, ... (what libsndfile reads), or - for stdin.\n"
    "'st-audio COMMAND --help' lists a command's options.\n";

// What both commands have: the byte format, and the options of every st program that st-audio has
// use for.
static void add_shared(cxxopts::Options& o) {
    // clang-format off
    o.add_options()
        ("rate", "samples a second of the bytes", cxxopts::value<std::string>()->default_value("12000"), "HZ")
        ("linear", "8-bit linear samples (128 is silence) instead of mu-law");
    // clang-format on
    cli::add_basic(o);
}
// 1 kHz to 384 kHz: from below telephone speech to the highest rate sound hardware runs at.
static int parse_rate(const cxxopts::ParseResult& r) {
    return int(cli::to_int("--rate", r["rate"].as<std::string>(), 1000, 384000));
}
static const char* codes_name(bool linear) { return linear ? "8-bit linear" : "mu-law"; }

// ---- encode ----

static int encode_main(int argc, char** argv) {
    cxxopts::Options o = cli::command_options(
        "st-audio", "encode",
        "Sound files (- for stdin) to bytes on stdout, one after another: each mixed to mono, resampled to "
        "--rate and made one byte a sample, mu-law or --linear.",
        "FILE...");
    o.add_options()("files", "sound files", cxxopts::value<std::vector<std::string>>());
    add_shared(o);
    o.parse_positional({"files"});
    cxxopts::ParseResult r;
    if (cli::parse(o, argc, argv, &r)) return 0;
    if (!r.count("files")) usage_fail("missing FILE: the sound files to encode (- for standard input)");
    const int rate = parse_rate(r);
    const bool linear = r.count("linear") > 0;
    cli::refuse_terminal_stdout("audio bytes");

    // Every file is read before a byte goes out, so that a bad one leaves stdout empty.
    const std::vector<std::string> files = r["files"].as<std::vector<std::string>>();
    std::vector<uint8_t> out;
    for (const std::string& path : files) {
        const Sound s = read_sound(path);
        std::vector<float> samples;
        try {
            samples = resample(s.samples, s.rate, rate);
        } catch (const Error& e) {
            fail(input_name(path) + ": " + e.what());
        }
        for (float x : samples) out.push_back(linear ? linear_encode(x) : mulaw_encode(x));
    }
    write_file_atomic("-", out.data(), out.size());
    if (!r.count("quiet"))
        std::fprintf(stderr, "st-audio: %zu file%s, %.1f s at %d Hz, %s (%zu bytes)\n", files.size(),
                     files.size() == 1 ? "" : "s", double(out.size()) / rate, rate, codes_name(linear), out.size());
    return 0;
}

// ---- decode ----

static SoundFormat parse_format(const std::string& text) {
    if (text == "wav") return SoundFormat::wav;
    if (text == "flac") return SoundFormat::flac;
    usage_fail("--format " + text + ": expected wav or flac");
}

static int decode_main(int argc, char** argv) {
    cxxopts::Options o = cli::command_options(
        "st-audio", "decode", "Bytes of one sample each (from FILE, or stdin) to a mono 16-bit WAV or FLAC file.",
        "[FILE]");
    // clang-format off
    o.add_options()
        ("input", "bytes", cxxopts::value<std::string>())
        ("o,output", "the sound file (default: -, stdout)", cxxopts::value<std::string>(), "OUT")
        ("format", "wav or flac (default: told by OUT's name, .wav or .flac; wav on stdout)",
            cxxopts::value<std::string>(), "F");
    // clang-format on
    add_shared(o);
    o.parse_positional({"input"});
    cxxopts::ParseResult r;
    if (cli::parse(o, argc, argv, &r)) return 0;
    const int rate = parse_rate(r);
    const bool linear = r.count("linear") > 0;
    const std::string out = r.count("output") ? r["output"].as<std::string>() : "-";
    SoundFormat format = SoundFormat::wav;
    if (r.count("format"))
        format = parse_format(r["format"].as<std::string>());
    else if (ends_with(out, ".flac"))
        format = SoundFormat::flac;
    else if (!ends_with(out, ".wav") && out != "-")
        usage_fail("-o " + out + ": expected a name ending in .wav or .flac (or --format wav|flac)");
    const char* format_name = format == SoundFormat::wav ? "WAV" : "FLAC";
    if (out == "-") cli::refuse_terminal_stdout((std::string("a ") + format_name + " file").c_str());

    const std::string path = r.count("input") ? r["input"].as<std::string>() : "-";
    refuse_input_as_output("-o", out, {{"the audio bytes", path}});
    if (path == "-" && out == "-" && format == SoundFormat::wav) {  // a pipe: play as it comes
        const int64_t n = stream_wav(STDIN_FILENO, input_name(path), STDOUT_FILENO, output_name(out), rate, linear);
        if (!r.count("quiet"))
            std::fprintf(stderr, "st-audio: %s: WAV, %lld samples, %.1f s at %d Hz (from %s), streamed\n",
                         output_name(out).c_str(), (long long)n, double(n) / rate, rate, codes_name(linear));
        return 0;
    }
    const std::vector<uint8_t> codes = read_file(path);
    if (codes.empty()) fail(input_name(path) + ": no samples (empty input)");
    std::vector<float> samples(codes.size());
    for (size_t i = 0; i < codes.size(); i++) samples[i] = linear ? linear_decode(codes[i]) : mulaw_decode(codes[i]);
    write_sound(out, samples, rate, format);
    if (!r.count("quiet"))
        std::fprintf(stderr, "st-audio: %s: %s, %zu samples, %.1f s at %d Hz (from %s)\n", output_name(out).c_str(),
                     format_name, samples.size(), double(samples.size()) / rate, rate, codes_name(linear));
    return 0;
}

static int audio_main(int argc, char** argv) {
    static constexpr cli::Command commands[] = {{"encode", encode_main}, {"decode", decode_main}};
    return cli::run_command("st-audio", kUsage, commands, argc, argv);
}

int main(int argc, char** argv) { return cli::run("st-audio", argc, argv, audio_main); }
