// Errors a user can act on. Library code throws st::Error with a message that names the file or
// option and says what went wrong; the tools print it as one line and exit 1 (usage errors: 2).
#pragma once
#include <stdexcept>
#include <string>

namespace st {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A bad command-line value: the tool prints it and exits 2.
struct UsageError : Error {
    using Error::Error;
};

// A setting that every rank of a data-parallel job finds wrong the same way: rank 0 reports it, the
// other ranks exit quietly, so the job prints one line.
struct JobError : Error {
    using Error::Error;
};

[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }
[[noreturn]] inline void usage_fail(const std::string& msg) { throw UsageError(msg); }

}  // namespace st
