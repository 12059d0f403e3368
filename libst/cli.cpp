// Shared command-line plumbing.
#include "cli.h"

#include <omp.h>
#include <unistd.h>

#include <cstdio>
#include <new>
#include <stdexcept>

#include "engine.h"
#include "error.h"

namespace st::cli {

int run(const char* name, int argc, char** argv, const std::function<int(int, char**)>& body, const char* oom_hint) {
    try {
        return body(argc, argv);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "%s: %s (try '%s --help')\n", name, e.what(), name);
        return 2;
    } catch (const cxxopts::exceptions::exception& e) {
        std::fprintf(stderr, "%s: %s (try '%s --help')\n", name, e.what(), name);
        return 2;
    } catch (const Error& e) {
        std::fprintf(stderr, "%s: %s\n", name, e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "%s: out of memory%s%s%s\n", name, oom_hint ? " (" : "", oom_hint ? oom_hint : "",
                     oom_hint ? ")" : "");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", name, e.what());
        return 1;
    }
}

void add_common(cxxopts::Options& o) {
    // clang-format off
    o.add_options("common")
        ("h,help", "print this help and exit")
        ("version", "print the version and exit")
        ("threads", "CPU threads (0 = every core)", cxxopts::value<std::string>()->default_value("0"))
        ("device", "auto, cpu or cuda[:N]", cxxopts::value<std::string>()->default_value("auto"))
        ("q,quiet", "no progress or summary on stderr");
    // clang-format on
}

bool parse(cxxopts::Options& o, int argc, char** argv, cxxopts::ParseResult* out) {
    *out = o.parse(argc, argv);
    if (out->count("help")) {
        std::fputs(o.help().c_str(), stdout);
        return true;
    }
    if (out->count("version")) {
        std::printf("%s %s\n", o.program().c_str(), ST_VERSION);
        return true;
    }
    return false;
}

std::string setup(const cxxopts::ParseResult& r) {
    int threads = int(to_int("--threads", r["threads"].as<std::string>(), 0, 4096));
    if (threads > 0) omp_set_num_threads(threads);
    std::string dev = r["device"].as<std::string>();
    if (dev == "cpu") return "cpu";
    if (dev == "auto") return gpu_available() ? "cuda" : "cpu";
    if (dev == "cuda") return dev;
    if (dev.rfind("cuda:", 0) == 0) {
        to_int("--device", dev.substr(5), 0, 1023);  // the index; the engine checks that it exists
        return dev;
    }
    usage_fail("--device " + dev + ": expected auto, cpu or cuda[:N]");
}

void refuse_terminal_stdout(const char* what) {
    if (isatty(STDOUT_FILENO))
        fail(std::string("refusing to write ") + what + " to a terminal (redirect stdout to a file or a pipe)");
}

bool stderr_is_terminal() { return isatty(STDERR_FILENO); }

long long to_int(const std::string& option, const std::string& text, long long lo, long long hi) {
    size_t used = 0;
    long long v = 0;
    try {
        v = std::stoll(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != text.size()) usage_fail(option + " " + text + ": not a whole number");
    if (v < lo || v > hi)
        usage_fail(option + " " + text + ": must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    return v;
}

double to_real(const std::string& option, const std::string& text, double lo, double hi) {
    size_t used = 0;
    double v = 0;
    try {
        v = std::stod(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != text.size()) usage_fail(option + " " + text + ": not a number");
    if (!(v >= lo && v <= hi)) {
        char buf[128];
        std::snprintf(buf, sizeof buf, ": must be between %g and %g", lo, hi);
        usage_fail(option + " " + text + buf);
    }
    return v;
}

// ---- The model options ----

namespace {

struct ModelOption {
    const char* name;
    const char* help;
    const char* fallback;      // the default, "" for none
    long long lo = 1, hi = 0;  // a whole number's range; none (lo > hi) for a word, a size or a fraction
};

// The defaults are st-train's: a small model of text. The ranges of the whole numbers are the limits
// config_check applies to every model (a stride or summary means something only up to the context).
const ModelOption kModelOptions[] = {
    {"layers", "residual blocks", "4", 1, kMaxLayers},
    {"d-model", "width", "256", 1, kMaxDModel},
    {"heads", "attention heads", "4", 1, kMaxHeads},
    {"ff-mult", "feed-forward width as a multiple of d-model", "4", 1, kMaxFFMult},
    {"ctx", "context: bytes per example", "256", 2, kMaxContext},
    {"pattern", "attention: dense, local, fixed or strided", "fixed"},
    {"mode", "heads: interleaved, merged or multihead", "merged"},
    {"stride", "l: chunk length (fixed), window and stride (local, strided), row width (2d positions)", "64", 1,
     kMaxContext},
    {"summary", "c: summary positions per chunk (fixed)", "16", 1, kMaxContext},
    {"block", "attention block size: 32, 64 or 128", "32", 32, 128},
    {"pos", "positions: 1d or 2d (row and column, width = stride)", "2d"},
    {"image", "images HxWxC: row, column and channel positions; context H*W*C", ""},
    {"dropout", "dropout at the residual additions", "0"},
};
constexpr double kMaxDropout = 0.99;

bool excepted(std::string_view name, std::span<const std::string_view> except) {
    for (std::string_view e : except)
        if (e == name) return true;
    return false;
}

const ModelOption& model_option(std::string_view name) {
    for (const ModelOption& m : kModelOptions)
        if (name == m.name) return m;
    throw std::logic_error("no model option --" + std::string(name));
}

}  // namespace

void add_model_options(cxxopts::Options& o, const std::string& group, std::span<const std::string_view> except) {
    auto add = o.add_options(group);
    for (const ModelOption& m : kModelOptions) {
        if (excepted(m.name, except)) continue;
        if (*m.fallback)
            add(m.name, m.help, cxxopts::value<std::string>()->default_value(m.fallback));
        else
            add(m.name, m.help, cxxopts::value<std::string>());
    }
}

Config config_from_options(const cxxopts::ParseResult& r) {
    auto text = [&](const char* name) {
        return r.count(name) ? r[name].as<std::string>() : std::string(model_option(name).fallback);
    };
    auto whole = [&](const char* name) {
        const ModelOption& m = model_option(name);
        return int(to_int(std::string("--") + name, text(name), m.lo, m.hi));
    };
    Config c;
    c.n_layer = whole("layers");
    c.d_model = whole("d-model");
    c.n_head = whole("heads");
    c.ff_mult = whole("ff-mult");
    c.n_ctx = whole("ctx");
    c.attn.stride = whole("stride");
    c.attn.summary = whole("summary");
    c.attn.block = whole("block");
    c.dropout = float(to_real("--dropout", text("dropout"), 0, kMaxDropout));
    const std::string p = text("pattern"), m = text("mode"), pos = text("pos");
    if (!pattern_from_name(p, &c.attn.pattern))
        usage_fail("--pattern " + p + ": expected dense, local, fixed or strided");
    if (!head_mode_from_name(m, &c.attn.mode))
        usage_fail("--mode " + m + ": expected interleaved, merged or multihead");
    if (!pos_from_name(pos, &c.pos) || c.pos == PosKind::image)
        usage_fail("--pos " + pos + ": expected 1d or 2d (images: --image HxWxC)");
    if (r.count("image")) {
        const std::string s = text("image");
        int used = 0;
        if (std::sscanf(s.c_str(), "%9dx%9dx%9d%n", &c.image_h, &c.image_w, &c.image_c, &used) != 3 ||
            size_t(used) != s.size() || c.image_h < 1 || c.image_w < 1 ||
            (c.image_c != 1 && c.image_c != 3 && c.image_c != 4))
            usage_fail("--image " + s + ": expected HxWxC with C 1 (grey), 3 (RGB) or 4 (RGBA), e.g. 28x28x1");
        if (int64_t(c.image_h) * c.image_w * c.image_c > kMaxContext)
            usage_fail("--image " + s + ": too large a picture");
        c.pos = PosKind::image;
        c.n_ctx = c.image_h * c.image_w * c.image_c;
        // The paper's image models: strided attention with one image row as the stride.
        if (!r.count("pattern")) c.attn.pattern = Pattern::strided;
        if (!r.count("stride")) c.attn.stride = c.image_w * c.image_c;
    }
    const std::string why = config_check(c);
    if (!why.empty()) usage_fail(why);
    return c;
}

std::string model_option_given(const cxxopts::ParseResult& r, std::span<const std::string_view> except) {
    for (const ModelOption& m : kModelOptions)
        if (!excepted(m.name, except) && r.count(m.name)) return std::string("--") + m.name;
    return "";
}

// ---- Programs of commands ----

cxxopts::Options command_options(const std::string& program, const std::string& command, const std::string& what,
                                 const std::string& operands) {
    cxxopts::Options o(program, what);
    o.custom_help(command + " [OPTIONS]").positional_help(operands);
    return o;
}

void add_basic(cxxopts::Options& o) {
    // clang-format off
    o.add_options("common")
        ("h,help", "print this help and exit")
        ("version", "print the version and exit")
        ("q,quiet", "no summary on stderr");
    // clang-format on
}

int run_command(const char* program, const char* usage, std::span<const Command> commands, int argc, char** argv) {
    const std::string command = argc > 1 ? argv[1] : "";
    for (const Command& c : commands)
        if (command == c.name) return c.main(argc - 1, argv + 1);
    if (command == "-h" || command == "--help") {
        std::fputs(usage, stdout);
        return 0;
    }
    if (command == "--version") {
        std::printf("%s %s\n", program, ST_VERSION);
        return 0;
    }
    std::string names;  // "encode, decode or info"
    for (size_t i = 0; i < commands.size(); i++)
        names += std::string(i == 0 ? "" : i + 1 == commands.size() ? " or " : ", ") + commands[i].name;
    if (command.empty()) usage_fail("missing command: " + names);
    usage_fail("unknown command '" + command + "': expected " + names);
}

}  // namespace st::cli
