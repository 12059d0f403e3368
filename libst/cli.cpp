// Shared command-line plumbing.
#include "cli.h"

#include <omp.h>
#include <unistd.h>

#include <cstdio>
#include <new>

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
        std::fprintf(stderr, "%s: out of memory%s%s%s\n", name, oom_hint ? " (" : "", oom_hint ? oom_hint : "", oom_hint ? ")" : "");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", name, e.what());
        return 1;
    }
}

void add_common(cxxopts::Options& o) {
    o.add_options("common")
        ("h,help", "print this help and exit")
        ("version", "print the version and exit")
        ("threads", "CPU threads (0 = every core)", cxxopts::value<std::string>()->default_value("0"))
        ("device", "auto, cpu or cuda[:N]", cxxopts::value<std::string>()->default_value("auto"))
        ("q,quiet", "no progress or summary on stderr");
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
        to_int("--device", dev.substr(5), 0, 1023);   // the index; the engine checks that it exists
        return dev;
    }
    usage_fail("--device " + dev + ": expected auto, cpu or cuda[:N]");
}

void refuse_terminal_stdout(const char* what) {
    if (isatty(STDOUT_FILENO)) fail(std::string("refusing to write ") + what + " to a terminal (redirect stdout to a file or a pipe)");
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
    if (v < lo || v > hi) usage_fail(option + " " + text + ": must be between " + std::to_string(lo) + " and " + std::to_string(hi));
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

}  // namespace st::cli
