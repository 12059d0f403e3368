// What every st program shares: running main with one-line errors and exit codes, thread and
// device options, and the checks on where output goes.
#pragma once
#include <cxxopts.hpp>
#include <functional>
#include <string>

namespace st::cli {

// Runs body and turns what it throws into one line on stderr: "NAME: message". Usage errors
// (bad options, st::UsageError) exit 2, other errors 1; out of memory says so, with OOM_HINT (what
// to change) when the program knows what is likely to have taken the memory.
int run(const char* name, int argc, char** argv, const std::function<int(int, char**)>& body, const char* oom_hint = nullptr);

// The options every program has: --help, --version, --threads, --device, --quiet.
void add_common(cxxopts::Options& o);
// Parses; prints help (to stdout) or the version and returns true when the program should exit 0.
bool parse(cxxopts::Options& o, int argc, char** argv, cxxopts::ParseResult* out);
// Applies --threads (0 = every core) and resolves --device: "cpu", "cuda" or "cuda:N" (auto is
// cuda where a GPU is present).
std::string setup(const cxxopts::ParseResult& r);

// Refuses to write binary bytes to a terminal (netpbm and zstd do the same).
void refuse_terminal_stdout(const char* what);
bool stderr_is_terminal();

// Number parsing with one-line errors naming the option.
long long to_int(const std::string& option, const std::string& text, long long lo, long long hi);
double to_real(const std::string& option, const std::string& text, double lo, double hi);

}  // namespace st::cli
