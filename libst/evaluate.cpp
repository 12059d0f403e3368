// Held-out evaluation: mean cross-entropy over windows of a byte stream.
#include "evaluate.h"

#include <algorithm>
#include <memory>

#include "cpu/ops.h"
#include "error.h"
#include "sample.h"

namespace st {

std::vector<int64_t> spread_offsets(int64_t n, int ctx, int count) {
    std::vector<int64_t> offs;
    int64_t span = n - ctx - 1;
    if (span < 0) return offs;
    if (count <= 1) return {0};
    for (int k = 0; k < count; k++) offs.push_back(int64_t(k) * span / (count - 1));
    return offs;
}

double eval_windows(Engine& e, const uint8_t* data, const std::vector<int64_t>& offsets, int ctx, int batch) {
    std::vector<uint8_t> inp, tgt;
    double total = 0;
    for (size_t k0 = 0; k0 < offsets.size(); k0 += batch) {
        int b = int(std::min<size_t>(batch, offsets.size() - k0));
        if (b == 1) {  // one window is read where it lies (a long context is not copied twice)
            const uint8_t* w = data + offsets[k0];
            total += e.loss(w, w + 1, 1, ctx);
            continue;
        }
        inp.resize(size_t(b) * ctx);
        tgt.resize(size_t(b) * ctx);
        for (int i = 0; i < b; i++) {
            const uint8_t* w = data + offsets[k0 + i];
            std::copy(w, w + ctx, inp.begin() + size_t(i) * ctx);
            std::copy(w + 1, w + 1 + ctx, tgt.begin() + size_t(i) * ctx);
        }
        total += e.loss(inp.data(), tgt.data(), b, ctx) * b;
    }
    return total / double(offsets.size());
}

double decode_windows(const std::string& device, const Model<float>& m, const uint8_t* data,
                      const std::vector<int64_t>& offsets, int ctx, int batch) {
    double total = 0;
    std::vector<uint8_t> bytes, next;
    std::vector<float> losses;
    for (size_t k0 = 0; k0 < offsets.size(); k0 += size_t(batch)) {
        const int b = int(std::min<size_t>(size_t(batch), offsets.size() - k0));
        std::unique_ptr<Sampler> s = make_sampler(device, m, b);  // a fresh cache: each window from its start
        bytes.resize(size_t(b)), next.resize(size_t(b)), losses.resize(size_t(b));
        for (int t = 0; t < ctx; t++) {
            for (int i = 0; i < b; i++) {
                bytes[size_t(i)] = data[offsets[k0 + size_t(i)] + t];
                next[size_t(i)] = data[offsets[k0 + size_t(i)] + t + 1];
            }
            crossentropy_forward(losses.data(), s->push(bytes.data()), next.data(), b, m.cfg.vocab);
            for (float x : losses) total += x;
        }
    }
    return total / (double(offsets.size()) * ctx);
}

double eval_stream(const WindowsLoss& windows, const uint8_t* data, int64_t n, int ctx, int batch) {
    if (n < 2) fail("need at least 2 bytes to evaluate");
    std::vector<int64_t> full;
    for (int64_t o = 0; o + ctx + 1 <= n; o += ctx) full.push_back(o);
    double nats = full.empty() ? 0 : windows(data, full, ctx, batch) * double(full.size()) * ctx;
    int64_t done = int64_t(full.size()) * ctx;  // predictions made so far
    int64_t rest = n - 1 - done;                // a shorter last window
    if (rest > 0) nats += windows(data + done, {0}, int(rest), 1) * double(rest);
    return nats / double(n - 1);
}

}  // namespace st
