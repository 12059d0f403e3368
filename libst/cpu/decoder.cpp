// The CPU's incremental decoder (decoder.h): each pushed byte runs the layers over its position alone.
#include "cpu/decoder.h"

#include <algorithm>
#include <cmath>

#include "cpu/ops.h"
#include "layout.h"
#include "sample.h"

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
    const ParamOffsets& o = m_.offsets;
    // Embedding of the byte at position t: its token row plus, from each position table, the row pos_index gives t.
    const float* e = w + o.wte + size_t(byte) * C;
    std::copy(e, e + C, x_.begin());
    for (size_t k = 0; k < o.wpe.size(); k++) {
        const float* p = w + o.wpe[k] + size_t(m_.pos_index()[k][size_t(t)]) * C;
        for (int i = 0; i < C; i++) x_[i] += p[i];
    }
    const float scale = 1.0f / std::sqrt(float(Dh));
    for (int l = 0; l < c.n_layer; l++) {
        const auto lw = at(w, o.layers[size_t(l)]);
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
    layernorm_forward(ln_.data(), &mean_rstd_[0], &mean_rstd_[1], x_.data(), w + o.lnf_w, w + o.lnf_b, 1, C);
    linear_forward(logits_.data(), ln_.data(), w + o.head, (const float*)nullptr, 1, C, c.vocab);
    window_.push_back(byte);
    t_++;
    return logits_.data();
}

}  // namespace st
