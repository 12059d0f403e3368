// Safetensors files (the format of Hugging Face's `safetensors`, readable by its Python package):
// 8-byte little-endian header length N, N bytes of JSON padded with spaces to a multiple of 8, then the
// data section, which the tensors cover exactly, in order. st adds the metadata key "st.crc32" (CRC-32
// of the data section, decimal) and reads and writes the whole file through zstd when it ends in ".zst".
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "tensor.h"

namespace st {

struct SafeTensorsEntry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    size_t offset = 0, nbytes = 0;  // into the data section
};

struct SafeTensors {
    std::map<std::string, std::string> metadata;                  // "__metadata__", "st.crc32" included when present
    std::vector<SafeTensorsEntry> entries;                        // in data order
    std::unordered_map<std::string, size_t> index;                // name -> position in entries
    std::vector<uint8_t> bytes;                                   // the whole data section
    const SafeTensorsEntry* find(const std::string& name) const;  // nullptr if absent
    // Aligned for the dtype only when the writer ordered tensors so; copy out with memcpy otherwise.
    const void* data(const SafeTensorsEntry& e) const { return bytes.data() + e.offset; }
};

struct SafeTensorsWrite {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const void* data;  // numel(shape) * dtype_size(dtype) bytes
};

// Writes the tensors in the given order (the data section is their bytes back to back), METADATA as
// "__metadata__" plus "st.crc32" (a caller's "st.crc32" is replaced). Atomic (write_file_atomic);
// zstd-compressed when PATH ends in ".zst". Throws st::Error for duplicate or reserved names, negative
// dimensions or metadata that is not UTF-8.
void safetensors_save(const std::string& path, const std::vector<SafeTensorsWrite>& tensors,
                      const std::map<std::string, std::string>& metadata);

// Reads and validates PATH under the Rust crate's rules and checks "st.crc32" when present. Each
// failure is one st::Error line naming PATH: "PATH: empty file", "PATH: not a safetensors file (...)",
// "PATH: invalid safetensors header: ...", "PATH: truncated: ...", "PATH: corrupted: checksum mismatch".
SafeTensors safetensors_load(const std::string& path);

}  // namespace st
