// Whole files in and out: reading (a path, "-" for stdin, ".zst" decompressed as a stream), atomic
// writing (temporary file, fsync, rename), and the CRC-32 that model files carry as a checksum.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace st {

// The whole content of PATH; "-" reads stdin (as it is, named "stdin" in errors); a name ending in
// ".zst" is decompressed (any number of zstd frames, with or without a content size). Throws st::Error
// naming PATH: "PATH: No such file or directory", "PATH: not a zstd stream", "PATH: truncated zstd
// stream", ... A device other than a terminal (/dev/zero) is refused, and so is more than LIMIT bytes
// (0: this machine's memory), plain or decompressed, before they are all read.
std::vector<uint8_t> read_file(const std::string& path, size_t limit = 0);
size_t memory_bytes();  // this machine's physical memory

// The same bytes, mapped into memory (read-only) where PATH is a plain, uncompressed, non-empty
// file, and read as read_file reads them otherwise. Processes that map one file share its pages, and
// each touches only what it reads: the ranks of a data-parallel job hold the training data once.
// (Like any mapping, it assumes the file is not cut short while mapped; st never writes its inputs.)
class FileBytes {
   public:
    explicit FileBytes(const std::string& path);
    ~FileBytes();
    FileBytes(const FileBytes&) = delete;
    FileBytes& operator=(const FileBytes&) = delete;
    std::span<const uint8_t> bytes() const {
        return map_ ? std::span<const uint8_t>(map_, size_) : std::span<const uint8_t>(read_);
    }

   private:
    const uint8_t* map_ = nullptr;
    size_t size_ = 0;
    std::vector<uint8_t> read_;
};

// A writer hands the bytes of a file, piece by piece, in order.
using ByteSink = std::function<void(const void*, size_t)>;

// Writes PATH atomically: a temporary file beside it ("PATH.tmp.*"), fsync, rename over PATH, fsync
// the directory, so a crash leaves the old file or the new one, never half of one. A name ending in
// ".zst" is compressed (zstd level 3, multithreaded, with a content checksum). "-" writes to stdout
// (named "stdout" in errors), uncompressed and without atomicity. On failure the temporary file is removed, PATH is
// untouched and st::Error is thrown; an exception from PRODUCE is passed on after the same clean-up. TOTAL, when given,
// is the exact number of bytes PRODUCE hands over: it goes into the zstd frame so that read_file sizes its buffer once,
// and a different count is an error.
//
// A signal handler that ends the process during such a write calls remove_partial_output() first (it
// is async-signal-safe); what a SIGKILL leaves behind, prepare_output removes on the next run.
void write_file_atomic(const std::string& path, const void* data, size_t n);
void write_file_atomic(const std::string& path, const std::function<void(const ByteSink&)>& produce,
                       std::optional<uint64_t> total = std::nullopt);

void remove_partial_output();

// Before long work that ends in write_file_atomic(PATH): st::Error now, not hours later, when PATH
// cannot be written (no such folder, no permission, a name too long for the temporary suffix); and
// the temporaries of earlier writes of PATH whose process is gone (a SIGKILL during a save) are
// removed. Only names of the form "PATH.tmp.PID.N" that st makes are touched. "-" checks nothing.
void prepare_output(const std::string& path);

// st::Error when OUTPUT (given as OPTION) is the same file as one of INPUTS, each a (what, path) pair
// with "-" for stdin: the same device and inode, whatever the names, so that `--log data.txt` or
// `-o held-out.txt` never destroys what is being read. An OUTPUT that does not exist yet is fine.
void refuse_input_as_output(const std::string& option, const std::string& output,
                            const std::vector<std::pair<std::string, std::string>>& inputs);

// CRC-32 (IEEE 802.3, as zlib and PNG), slice-by-8. Chainable: crc32(b, nb, crc32(a, na)) is the
// CRC of a followed by b.
uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);

bool ends_with(const std::string& s, const std::string& suffix);

// How messages name PATH: "-" is "stdin" as an input and "stdout" as an output, as read_file and
// write_file_atomic name them in their errors.
std::string input_name(const std::string& path);
std::string output_name(const std::string& path);

}  // namespace st
