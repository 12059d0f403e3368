// What every st program shares: running main with one-line errors and exit codes, thread and
// device options, the checks on where output goes, the model options, and programs of commands.
#pragma once
#include <cxxopts.hpp>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "config.h"

namespace st::cli {

// Runs body and turns what it throws into one line on stderr: "NAME: message". Usage errors
// (bad options, st::UsageError) exit 2, other errors 1; out of memory says so, with OOM_HINT (what
// to change) when the program knows what is likely to have taken the memory.
int run(const char* name, int argc, char** argv, const std::function<int(int, char**)>& body,
        const char* oom_hint = nullptr);

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

// ---- The model options: --layers, --d-model, --heads, ..., --image, --dropout ----
// One table (cli.cpp) of their names, help and defaults; the ranges of the whole numbers are
// config.h's limits, so that a model st-train makes is one that st-viz-attn draws and the loader
// accepts, and the same arguments give the same Config in every program.

// Adds the options to O under GROUP, but those named in EXCEPT, which a program declares itself
// because they mean more there (st-viz-attn's --layers and --heads also pick from a model's).
void add_model_options(cxxopts::Options& o, const std::string& group, std::span<const std::string_view> except = {});
// The Config they give: each option not given (or not declared) takes the table's default; --image
// sets the context and positions, and the pattern and stride where they are not given. st::UsageError
// naming the option, or config_check's reason.
Config config_from_options(const cxxopts::ParseResult& r);
// "--NAME" of the first model option given, but those in EXCEPT; "" when none (for refusing them
// where the model comes from a file).
std::string model_option_given(const cxxopts::ParseResult& r, std::span<const std::string_view> except = {});

// ---- Programs of commands: st-image encode ..., st-audio decode ... ----

// A command's parser; its help reads "PROGRAM COMMAND [OPTIONS] OPERANDS".
cxxopts::Options command_options(const std::string& program, const std::string& command, const std::string& what,
                                 const std::string& operands);
// --help, --version and --quiet ("no summary on stderr"): add_common without --threads and
// --device, for a program that has neither to choose.
void add_basic(cxxopts::Options& o);
struct Command {
    const char* name;
    int (*main)(int argc, char** argv);
};
// Runs the command that argv[1] names on what follows it, with the command in the place of the
// program name; "-h"/"--help" prints USAGE, "--version" the version; anything else is a usage error
// naming the commands.
int run_command(const char* program, const char* usage, std::span<const Command> commands, int argc, char** argv);

}  // namespace st::cli
