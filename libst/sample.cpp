// Sampling: the sliding window's rule, the draw of a byte from logits, and the sampler --device names.
#include "sample.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace st {

int slide_drop(const Config& c) {
    // Keep the newest half, rounded down to whole stride rows so positions keep their columns.
    int row = c.pos == PosKind::p2d ? c.attn.stride : 1;
    return std::max(row, (c.n_ctx / 2 + row - 1) / row * row);
}

int sample_byte(const float* logits, int vocab, const SampleOptions& o, Rng& rng, std::vector<float>& probs) {
    if (o.temperature <= 0.0f) return int(std::max_element(logits, logits + vocab) - logits);
    probs.resize(vocab);
    float mx = *std::max_element(logits, logits + vocab);
    for (int v = 0; v < vocab; v++) probs[v] = std::exp((logits[v] - mx) / o.temperature);
    if ((o.top_k <= 0 || o.top_k >= vocab) && o.top_p >= 1.0f) {
        // No ranking needed: min-p (the likeliest byte's weight is exp(0) = 1) keeps each byte on its own
        // merits, so the draw walks the bytes in their order. No sort: it was most of a draw's time.
        auto kept = [&](int v) { return probs[v] > 0.0f && probs[v] >= o.min_p; };
        double total = 0;
        for (int v = 0; v < vocab; v++)
            if (kept(v)) total += probs[v];
        double u = rng.uniform() * total, acc = 0;
        int last = 0;
        for (int v = 0; v < vocab; v++)
            if (kept(v)) {
                acc += probs[v];
                last = v;
                if (u < acc) return v;
            }
        return last;  // u fell past the sum's rounding: the last byte kept
    }
    std::vector<int> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return probs[a] > probs[b]; });
    int keep = o.top_k > 0 ? std::min(o.top_k, vocab) : vocab;
    double total = 0;
    for (int i = 0; i < keep; i++) total += probs[order[i]];
    if (o.top_p < 1.0f) {
        double acc = 0;
        for (int i = 0; i < keep; i++) {
            acc += probs[order[i]];
            if (acc >= o.top_p * total) {
                keep = i + 1;
                total = acc;
                break;
            }
        }
    }
    if (o.min_p > 0.0f) {  // as above: the others are kept from min_p up
        int i = 1;
        while (i < keep && probs[order[i]] >= o.min_p) i++;
        keep = i;
        total = 0;
        for (int j = 0; j < keep; j++) total += probs[order[j]];
    }
    double u = rng.uniform() * total, acc = 0;
    for (int i = 0; i < keep; i++) {
        acc += probs[order[i]];
        if (u < acc) return order[i];
    }
    return order[keep - 1];
}

std::unique_ptr<Sampler> make_sampler(const std::string& device, const Model<float>& m, int batch) {
    if (device == "cpu") return make_cpu_sampler(m, batch);
    return make_gpu_sampler(m, batch, device.rfind("cuda:", 0) == 0 ? std::stoi(device.substr(5)) : 0);
}

}  // namespace st
