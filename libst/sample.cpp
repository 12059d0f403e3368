// Incremental decoding and sampling.
#include "sample.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cpu/ops.h"
#include "layout.h"

namespace st {

Decoder::Decoder(const Model<float>& m) : m_(m) {
    const Config& c = m.cfg;
    const int C = c.d_model;
    k_.assign(c.n_layer, std::vector<float>(size_t(c.n_ctx) * C));
    v_.assign(c.n_layer, std::vector<float>(size_t(c.n_ctx) * C));
    x_.resize(C);
    ln_.resize(C);
    qkv_.resize(3 * C);
    att_.resize(C);
    br_.resize(C);
    fc_.resize(c.ff_dim());
    logits_.resize(c.vocab);
    scores_.resize(c.n_ctx);
    mean_rstd_.resize(2);
    attn_.resize(size_t(c.n_layer) * size_t(c.n_head));
}

int slide_drop(const Config& c) {
    // Keep the newest half, rounded down to whole stride rows so positions keep their columns.
    int row = c.pos == PosKind::p2d ? c.attn.stride : 1;
    return std::max(row, (c.n_ctx / 2 + row - 1) / row * row);
}

namespace {

class CpuSampler final : public Sampler {
   public:
    CpuSampler(const Model<float>& m, int batch) : vocab_(m.cfg.vocab), logits_(size_t(batch) * vocab_) {
        for (int b = 0; b < batch; b++) dec_.push_back(std::make_unique<Decoder>(m));
    }
    const float* push(const uint8_t* bytes) override {
        for (size_t b = 0; b < dec_.size(); b++) {
            const float* l = dec_[b]->push(bytes[b]);
            std::copy(l, l + vocab_, logits_.begin() + b * vocab_);
        }
        return logits_.data();
    }

   private:
    size_t vocab_;
    std::vector<std::unique_ptr<Decoder>> dec_;
    std::vector<float> logits_;
};

}  // namespace

std::unique_ptr<Sampler> make_cpu_sampler(const Model<float>& m, int batch) { return std::make_unique<CpuSampler>(m, batch); }

const float* Decoder::push(uint8_t byte) {
    const Config& c = m_.cfg;
    if (t_ == c.n_ctx) {
        std::vector<uint8_t> keep(window_.begin() + slide_drop(c), window_.end());
        t_ = 0;
        window_.clear();
        for (uint8_t b : keep) step(b);
    }
    return step(byte);
}

const float* Decoder::step(uint8_t byte) {
    const Config& c = m_.cfg;
    const int C = c.d_model, F = c.ff_dim(), NH = c.n_head, Dh = c.head_dim();
    const int t = t_;
    const float* w = m_.w.data();
    // Embedding of the byte at position t: token row plus each position table's row.
    const float* e = w + size_t(byte) * C;
    std::copy(e, e + C, x_.begin());
    auto addrow = [&](const char* name, int row) {
        const float* p = m_.param(name) + size_t(row) * C;
        for (int i = 0; i < C; i++) x_[i] += p[i];
    };
    switch (c.pos) {
        case PosKind::p1d: addrow("wpe", t); break;
        case PosKind::p2d:
            addrow("wpe.row", t / c.attn.stride);
            addrow("wpe.col", t % c.attn.stride);
            break;
        case PosKind::image:
            addrow("wpe.row", t / c.image_c / c.image_w);
            addrow("wpe.col", t / c.image_c % c.image_w);
            addrow("wpe.chan", t % c.image_c);
            break;
    }
    const float scale = 1.0f / std::sqrt(float(Dh));
    for (int l = 0; l < c.n_layer; l++) {
        auto lw = m_.layer_weights(m_.w, l);
        layernorm_forward(ln_.data(), &mean_rstd_[0], &mean_rstd_[1], x_.data(), lw.ln1_w, lw.ln1_b, 1, C);
        linear_forward(qkv_.data(), ln_.data(), lw.qkv_w, lw.qkv_b, 1, C, 3 * C);
        std::copy(qkv_.begin() + C, qkv_.begin() + 2 * C, k_[l].begin() + size_t(t) * C);
        std::copy(qkv_.begin() + 2 * C, qkv_.begin() + 3 * C, v_[l].begin() + size_t(t) * C);
        for (int h = 0; h < NH; h++) {
            attn_keys(c.attn, NH, l, h, t, &keys_);
            const float* q = qkv_.data() + h * Dh;
            float mx = -INFINITY;
            for (size_t a = 0; a < keys_.size(); a++) {
                const float* k = k_[l].data() + size_t(keys_[a]) * C + h * Dh;
                float s = 0;
                for (int d = 0; d < Dh; d++) s += q[d] * k[d];
                scores_[a] = s * scale;
                mx = std::max(mx, scores_[a]);
            }
            float sum = 0;
            for (size_t a = 0; a < keys_.size(); a++) sum += scores_[a] = std::exp(scores_[a] - mx);
            if (keep_attn_) {
                Attention& kept = attn_[size_t(l) * NH + h];
                kept.keys = keys_;
                kept.probs.resize(keys_.size());
                for (size_t a = 0; a < keys_.size(); a++) kept.probs[a] = scores_[a] / sum;
            }
            float* o = att_.data() + h * Dh;
            std::fill(o, o + Dh, 0.0f);
            for (size_t a = 0; a < keys_.size(); a++) {
                const float* v = v_[l].data() + size_t(keys_[a]) * C + h * Dh;
                float p = scores_[a] / sum;
                for (int d = 0; d < Dh; d++) o[d] += p * v[d];
            }
        }
        linear_forward(br_.data(), att_.data(), lw.proj_w, lw.proj_b, 1, C, C);
        for (int i = 0; i < C; i++) x_[i] += br_[i];
        layernorm_forward(ln_.data(), &mean_rstd_[0], &mean_rstd_[1], x_.data(), lw.ln2_w, lw.ln2_b, 1, C);
        linear_forward(fc_.data(), ln_.data(), lw.fc_w, lw.fc_b, 1, C, F);
        gelu_forward(fc_.data(), fc_.data(), F);
        linear_forward(br_.data(), fc_.data(), lw.fp_w, lw.fp_b, 1, F, C);
        for (int i = 0; i < C; i++) x_[i] += br_[i];
    }
    layernorm_forward(ln_.data(), &mean_rstd_[0], &mean_rstd_[1], x_.data(), m_.param("ln_f.weight"), m_.param("ln_f.bias"), 1, C);
    linear_forward(logits_.data(), ln_.data(), m_.param("head.weight"), (const float*)nullptr, 1, C, c.vocab);
    window_.push_back(byte);
    t_++;
    return logits_.data();
}

int sample_byte(const float* logits, int vocab, const SampleOptions& o, Rng& rng, std::vector<float>& probs) {
    if (o.temperature <= 0.0f) return int(std::max_element(logits, logits + vocab) - logits);
    probs.resize(vocab);
    float mx = *std::max_element(logits, logits + vocab);
    for (int v = 0; v < vocab; v++) probs[v] = std::exp((logits[v] - mx) / o.temperature);
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
