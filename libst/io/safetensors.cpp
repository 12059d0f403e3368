// Safetensors read/write with the Rust crate's validation rules, plus st's "st.crc32" checksum.
#include "io/safetensors.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "error.h"
#include "io/file.h"
#include "io/json.h"

namespace st {

static_assert(std::endian::native == std::endian::little,
              "safetensors data are little-endian; st copies them as they are");

using ordered_json = nlohmann::ordered_json;

// The Rust crate refuses larger headers (MAX_HEADER_SIZE), so st neither writes nor reads them.
static constexpr uint64_t max_header_size = 100'000'000;
static const char* const crc_key = "st.crc32";

const SafeTensorsEntry* SafeTensors::find(const std::string& name) const {
    auto it = index.find(name);
    return it == index.end() ? nullptr : &entries[it->second];
}

static std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// numel(shape) * dtype_size(dtype), or false when a dimension is negative or the product overflows.
static bool tensor_bytes(const std::vector<int64_t>& shape, DType dtype, size_t* out) {
    size_t n = dtype_size(dtype);
    for (int64_t d : shape) {
        if (d < 0) return false;
        if (d != 0 && n > std::numeric_limits<size_t>::max() / size_t(d)) return false;
        n *= size_t(d);
    }
    *out = n;
    return true;
}

void safetensors_save(const std::string& file_name, const std::vector<SafeTensorsWrite>& tensors,
                      const std::map<std::string, std::string>& metadata) {
    const std::string path = output_name(file_name);
    std::vector<size_t> sizes;
    std::set<std::string> names;
    uint32_t crc = 0;
    for (const auto& t : tensors) {
        if (t.name == "__metadata__") fail(path + ": '__metadata__' cannot name a tensor");
        if (!names.insert(t.name).second) fail(path + ": two tensors named '" + t.name + "'");
        size_t n;
        if (!tensor_bytes(t.shape, t.dtype, &n))
            fail(path + ": tensor '" + t.name + "' has a bad shape " + shape_text(t.shape));
        if (n > 0 && !t.data) fail(path + ": tensor '" + t.name + "' has no data");
        crc = crc32(t.data, n, crc);
        sizes.push_back(n);
    }

    // "__metadata__" first and the tensors in data order, as the Rust crate writes them.
    std::map<std::string, std::string> meta = metadata;
    meta[crc_key] = std::to_string(crc);
    ordered_json header = ordered_json::object();
    header["__metadata__"] = meta;
    size_t offset = 0;
    for (size_t i = 0; i < tensors.size(); i++) {
        ordered_json e = ordered_json::object();
        e["dtype"] = dtype_name(tensors[i].dtype);
        e["shape"] = tensors[i].shape;
        e["data_offsets"] = ordered_json::array({offset, offset + sizes[i]});
        header[tensors[i].name] = std::move(e);
        offset += sizes[i];
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::exception&) {
        fail(path + ": tensor names and metadata must be valid UTF-8");
    }
    // Padding keeps the data section 8-byte aligned in the file, as the Rust crate does.
    text.append((8 - text.size() % 8) % 8, ' ');
    if (text.size() > max_header_size)
        fail(path + ": the safetensors header would take " + std::to_string(text.size()) +
             " bytes, more than the format's limit of " + std::to_string(max_header_size));

    uint64_t header_len = text.size();
    write_file_atomic(
        file_name,
        [&](const ByteSink& sink) {
            sink(&header_len, 8);
            sink(text.data(), text.size());
            for (size_t i = 0; i < tensors.size(); i++) sink(tensors[i].data, sizes[i]);
        },
        8 + text.size() + offset);
}

// A non-negative JSON integer, as the Rust crate's usize fields require.
static bool as_size(const ordered_json& v, size_t* out) {
    if (!v.is_number_unsigned()) return false;
    *out = v.get<size_t>();
    return true;
}

SafeTensors safetensors_load(const std::string& file_name) {
    std::vector<uint8_t> file = read_file(file_name);
    const std::string path = input_name(file_name);
    auto not_safetensors = [&](const std::string& why) { fail(path + ": not a safetensors file (" + why + ")"); };
    auto invalid = [&](const std::string& why) { fail(path + ": invalid safetensors header: " + why); };

    if (file.empty()) fail(path + ": empty file");
    if (file.size() < 8) not_safetensors(std::to_string(file.size()) + " bytes, too short for a header");
    uint64_t n;
    std::memcpy(&n, file.data(), 8);
    const size_t rest = file.size() - 8;
    if (n > rest) {
        // A plausible header cut short is a truncated file; anything else was never safetensors.
        if (n <= max_header_size && rest > 0 && file[8] == '{')
            fail(path + ": truncated: the header needs " + std::to_string(n) + " bytes, the file has " +
                 std::to_string(rest));
        not_safetensors("header length " + std::to_string(n) + " is larger than the file");
    }
    if (n > max_header_size) not_safetensors("header length " + std::to_string(n) + " is over the format's limit");
    if (n == 0 || file[8] != '{') not_safetensors("the header is not a JSON object");

    // ordered_json keeps the file's key order, so tensors sharing an offset (empty ones) keep theirs.
    const std::string_view header_text(reinterpret_cast<const char*>(file.data()) + 8, n);
    if (json_depth(header_text, kJsonMaxDepth) > kJsonMaxDepth)
        not_safetensors("the header nests more than " + std::to_string(kJsonMaxDepth) + " levels deep");
    ordered_json header;
    try {
        header = ordered_json::parse(file.begin() + 8, file.begin() + 8 + n);
    } catch (const nlohmann::json::parse_error& e) {
        not_safetensors("the header is not valid JSON, at byte " + std::to_string(8 + e.byte));
    } catch (const nlohmann::json::exception&) {  // a number beyond a double's range: out_of_range
        not_safetensors("the header holds a number out of range");
    }
    if (!header.is_object()) not_safetensors("the header is not a JSON object");

    SafeTensors out;
    for (const auto& [key, value] : header.items()) {
        if (key == "__metadata__") {
            if (value.is_null()) continue;  // the Rust crate reads null as no metadata
            if (!value.is_object()) not_safetensors("__metadata__ is not an object");
            for (const auto& [k, v] : value.items()) {
                if (!v.is_string()) not_safetensors("__metadata__ value '" + k + "' is not a string");
                out.metadata[k] = v.get<std::string>();
            }
            continue;
        }
        const std::string what = "tensor '" + key + "'";
        if (!value.is_object()) not_safetensors(what + " is not an object");
        auto dtype_it = value.find("dtype"), shape_it = value.find("shape"), offsets_it = value.find("data_offsets");
        if (dtype_it == value.end() || !dtype_it->is_string()) not_safetensors(what + " has no \"dtype\" string");
        if (shape_it == value.end() || !shape_it->is_array()) not_safetensors(what + " has no \"shape\" array");
        if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2)
            not_safetensors(what + " has no \"data_offsets\" pair");

        SafeTensorsEntry e;
        e.name = key;
        const std::string dtype = dtype_it->get<std::string>();
        if (!dtype_from_name(dtype, &e.dtype))
            fail(path + ": " + what + " has dtype " + dtype + ", which st does not read (F64, F32, BF16, I32, U8)");
        for (const auto& d : *shape_it) {
            size_t v;
            if (!as_size(d, &v) || v > size_t(std::numeric_limits<int64_t>::max()))
                invalid(what + " has a shape entry that is not a non-negative integer");
            e.shape.push_back(int64_t(v));
        }
        size_t begin, end;
        if (!as_size((*offsets_it)[0], &begin) || !as_size((*offsets_it)[1], &end))
            invalid(what + " has data_offsets that are not non-negative integers");
        if (end < begin)
            invalid(what + " has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                    "] that run backwards");
        if (!tensor_bytes(e.shape, e.dtype, &e.nbytes)) invalid(what + " has a shape too large to address");
        if (end - begin != e.nbytes)
            invalid(what + ": shape " + shape_text(e.shape) + " of " + dtype + " needs " + std::to_string(e.nbytes) +
                    " bytes, data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] hold " +
                    std::to_string(end - begin));
        e.offset = begin;
        out.entries.push_back(std::move(e));
    }

    // The Rust crate's rule: in offset order, each tensor starts where the previous one ended and the
    // last one ends where the file does.
    std::stable_sort(out.entries.begin(), out.entries.end(), [](const SafeTensorsEntry& a, const SafeTensorsEntry& b) {
        return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
    });
    size_t covered = 0;
    for (const auto& e : out.entries) {
        if (e.offset < covered) invalid("tensor '" + e.name + "' overlaps the tensor before it");
        if (e.offset > covered)
            invalid("a gap of " + std::to_string(e.offset - covered) + " bytes before tensor '" + e.name + "'");
        covered = e.offset + e.nbytes;
    }
    for (size_t i = 0; i < out.entries.size(); i++) out.index.emplace(out.entries[i].name, i);
    const size_t data_len = rest - n;
    if (covered > data_len)
        fail(path + ": truncated: the tensors need " + std::to_string(covered) + " bytes of data, the file has " +
             std::to_string(data_len));
    if (covered < data_len)
        fail(path + ": corrupted: " + std::to_string(data_len - covered) + " bytes after the last tensor");

    const uint8_t* data = file.data() + 8 + n;
    if (auto it = out.metadata.find(crc_key); it != out.metadata.end()) {
        const std::string& s = it->second;
        uint32_t want;
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), want);
        if (ec != std::errc() || end != s.data() + s.size() || s.empty())
            fail(path + ": corrupted: " + crc_key + " is '" + s + "', not a number");
        if (crc32(data, data_len, 0) != want) fail(path + ": corrupted: checksum mismatch");
    }

    // The data section moves to the front in place: no second copy of a large model.
    file.erase(file.begin(), file.begin() + ptrdiff_t(8 + n));
    out.bytes = std::move(file);
    return out;
}

}  // namespace st
