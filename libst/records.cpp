#include "records.h"

#include "error.h"

namespace st {

bool reads_records(const Config& c) { return c.pos == PosKind::image; }

std::string record_shape(const Config& c) {
    return std::to_string(c.image_h) + "x" + std::to_string(c.image_w) + "x" + std::to_string(c.image_c);
}

std::vector<uint8_t> frame_records(const uint8_t* data, size_t n, const Config& c, const std::string& name) {
    const size_t T = size_t(c.n_ctx);
    if (n == 0 || n % T != 0)
        fail(name + ": " + std::to_string(n) + " bytes is not a whole number of " + record_shape(c) + " pictures (" +
             std::to_string(T) + " bytes each)");
    std::vector<uint8_t> out;
    out.reserve(n / T * (T + 1));
    for (size_t k = 0; k < n; k += T) {
        out.push_back(0);
        out.insert(out.end(), data + k, data + k + T);
    }
    return out;
}

std::vector<int64_t> record_offsets(int64_t n, int n_ctx, int count) {
    const int64_t stride = int64_t(n_ctx) + 1, records = n / stride;
    std::vector<int64_t> offs;
    if (records < 1) return offs;
    if (count >= records) {
        for (int64_t k = 0; k < records; k++) offs.push_back(k * stride);
    } else if (count == 1) {
        offs.push_back(0);
    } else {
        for (int64_t k = 0; k < count; k++) offs.push_back(k * (records - 1) / (count - 1) * stride);
    }
    return offs;
}

}  // namespace st
