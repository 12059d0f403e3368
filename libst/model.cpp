// The model: parameter layout, initialisation, forward and backward over the layers.
#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/attention.h"
#include "cpu/ops.h"
#include "error.h"
#include "rng.h"

namespace st {

// The one place that names the tensors, orders the buffer and says which named field each is: the
// fields are filled from the same add() that names them, in declaration order (designated
// initializers refuse any other), so no offset can drift from its safetensors name.
std::vector<ParamInfo> param_layout(const Config& c, ParamOffsets* named) {
    std::vector<ParamInfo> ps;
    ParamOffsets o;
    int64_t off = 0;
    auto add = [&](std::string name, std::vector<int64_t> shape, bool decay = false) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        ps.push_back({std::move(name), std::move(shape), off, n, decay});
        off += n;
        return ps.back().offset;
    };
    auto table = [&](std::string name, int64_t rows, int64_t d) {
        o.wpe.push_back(add(std::move(name), {rows, d}));
        o.wpe_rows.push_back(rows);
    };
    const int64_t d = c.d_model, f = c.ff_dim();
    o.wte = add("wte", {c.vocab, d});
    switch (c.pos) {
        case PosKind::p1d:
            table("wpe", c.n_ctx, d);
            break;
        case PosKind::p2d:
            table("wpe.row", c.n_ctx / c.attn.stride, d);
            table("wpe.col", c.attn.stride, d);
            break;
        case PosKind::image:
            table("wpe.row", c.image_h, d);
            table("wpe.col", c.image_w, d);
            table("wpe.chan", c.image_c, d);
            break;
    }
    for (int l = 0; l < c.n_layer; l++) {
        std::string p = "h." + std::to_string(l) + ".";
        o.layers.push_back({
            .ln1_w = add(p + "ln1.weight", {d}),
            .ln1_b = add(p + "ln1.bias", {d}),
            .qkv_w = add(p + "attn.qkv.weight", {3 * d, d}, true),
            .qkv_b = add(p + "attn.qkv.bias", {3 * d}),
            .proj_w = add(p + "attn.proj.weight", {d, d}, true),
            .proj_b = add(p + "attn.proj.bias", {d}),
            .ln2_w = add(p + "ln2.weight", {d}),
            .ln2_b = add(p + "ln2.bias", {d}),
            .fc_w = add(p + "mlp.fc.weight", {f, d}, true),
            .fc_b = add(p + "mlp.fc.bias", {f}),
            .fp_w = add(p + "mlp.proj.weight", {d, f}, true),
            .fp_b = add(p + "mlp.proj.bias", {d}),
        });
    }
    o.lnf_w = add("ln_f.weight", {d});
    o.lnf_b = add("ln_f.bias", {d});
    o.head = add("head.weight", {c.vocab, d}, true);
    if (named) *named = std::move(o);
    return ps;
}

template <class T> Model<T>::Model(const Config& c) : cfg(c) {
    std::string why = config_check(c);
    if (!why.empty()) fail(why);
    params = param_layout(c, &offsets);
    num_params = params.back().offset + params.back().numel;
    w.assign(num_params, T(0));
    g.assign(num_params, T(0));
    // Each position table's row for every t < n_ctx.
    auto table = [&](auto f) {
        std::vector<int32_t> v(c.n_ctx);
        for (int t = 0; t < c.n_ctx; t++) v[t] = f(t);
        pos_index_.push_back(std::move(v));
    };
    switch (c.pos) {
        case PosKind::p1d:
            table([](int t) { return t; });
            break;
        case PosKind::p2d:
            table([&](int t) { return t / c.attn.stride; });
            table([&](int t) { return t % c.attn.stride; });
            break;
        case PosKind::image:
            table([&](int t) { return t / c.image_c / c.image_w; });
            table([&](int t) { return t / c.image_c % c.image_w; });
            table([&](int t) { return t % c.image_c; });
            break;
    }
}

template <class T> void Model<T>::init_weights(uint64_t seed) {
    Rng rng(seed);
    const double d = cfg.d_model;
    const int npos = int(pos_index_.size());
    for (const auto& p : params) {
        T* x = w.data() + p.offset;
        const std::string& n = p.name;
        auto ends = [&](const char* s) {
            return n.size() >= std::strlen(s) && n.compare(n.size() - std::strlen(s), std::string::npos, s) == 0;
        };
        double sd = 0, fill = 0;
        if (n == "wte")
            sd = 0.125 / std::sqrt(d);
        else if (n.rfind("wpe", 0) == 0)
            sd = 0.125 / std::sqrt(d * npos);
        else if (n == "head.weight")
            sd = 0;  // the paper starts the logits at zero
        else if (ends("ln1.weight") || ends("ln2.weight") || ends("ln_f.weight"))
            fill = 1;
        else if (p.shape.size() == 2) {
            sd = 0.125 / std::sqrt(double(p.shape[1]));
            if (ends("attn.proj.weight") || ends("mlp.proj.weight")) sd /= std::sqrt(2.0 * cfg.n_layer);
        }
        for (int64_t i = 0; i < p.numel; i++) x[i] = sd > 0 ? T(sd * rng.normal()) : T(fill);
    }
}

template <class T> const LayerLayout& Model<T>::layout(int layer, int seq) {
    // Sets depend on the layer only through its parity (interleaved mode), so one or two layouts serve all.
    if (layouts_seq_ != seq) {
        layouts_.clear();
        for (int l = 0; l < std::min(cfg.n_layer, layout_period(cfg.attn)); l++)
            layouts_.push_back(layout_build(cfg.attn, seq, cfg.n_head, l));
        layouts_seq_ = seq;
        shared_.clear();
    }
    return layouts_[size_t(layer) % layouts_.size()];
}

template <class T> void Model<T>::ensure_buffers(int B, int seq, int local) {
    const int64_t N = int64_t(B) * local, Nf = int64_t(B) * seq;
    batch_ = B;
    seq_ = seq;
    if (N <= cap_tokens_ && (split() ? Nf : 0) <= cap_full_ && recompute == cap_recompute_) return;
    const int64_t C = cfg.d_model, F = cfg.ff_dim(), V = cfg.vocab, L = cfg.n_layer, NH = cfg.n_head;
    const int64_t nacts = recompute ? 1 : L;
    const int64_t whole = split() ? Nf : 0;  // split: one layer's attention over every position at a time
    int64_t per_layer = N * (7 * C + 2 * F) + 4 * N + N * NH;                                // the fields of Acts
    int64_t total = nacts * per_layer + (L + 1) * N * C + N * C + 2 * N + N * V + N + N * C  // forward
                    + N * C * 4 + N * 3 * C + N * F                                          // backward scratch
                    + whole * (8 * C + NH);                                                  // split
    arena_.assign(total, T(0));
    T* p = arena_.data();
    auto take = [&](int64_t n) {
        T* q = p;
        p += n;
        return q;
    };
    acts_.assign(nacts, Acts{});
    for (auto& a : acts_) {
        a.ln1 = take(N * C);
        a.ln1_mean = take(N);
        a.ln1_rstd = take(N);
        a.qkv = take(N * 3 * C);
        a.att = take(N * C);
        a.lse = take(N * NH);
        a.x1 = take(N * C);
        a.ln2 = take(N * C);
        a.ln2_mean = take(N);
        a.ln2_rstd = take(N);
        a.fch = take(N * F);
        a.fcg = take(N * F);
    }
    resid_.resize(L + 1);
    for (auto& r : resid_) r = take(N * C);
    branch_ = take(N * C);
    lnf_ = take(N * C);
    lnf_mean_ = take(N);
    lnf_rstd_ = take(N);
    logits_ = take(N * V);
    losses_ = take(N);
    dresid_ = take(N * C);
    dbranch_ = take(N * C);
    datt_ = take(N * C);
    dln_ = take(N * C);
    dqkv_ = take(N * 3 * C);
    dfc_ = take(N * F);
    if (split()) {
        qkv_full_ = take(Nf * 3 * C);
        att_full_ = take(Nf * C);
        lse_full_ = take(Nf * NH);
        datt_full_ = take(Nf * C);
        dqkv_full_ = take(Nf * 3 * C);
    }
    kv_shared_.assign(size_t(cfg.n_layer), {});
    cap_tokens_ = N;
    cap_full_ = whole;
    cap_recompute_ = recompute;
}

template <class T> T* Model<T>::local_rows(T* dst, const T* full, int64_t width, int64_t groups) const {
    for (int64_t b = 0; b < batch_ * groups; b++)
        std::memcpy(dst + b * local_ * width, full + (b * seq_ + lo_) * width, sizeof(T) * size_t(local_ * width));
    return dst;
}

template <class T> T* Model<T>::full_rows(T* dst, const T* local, int64_t width, int64_t groups) const {
    std::memset(dst, 0, sizeof(T) * size_t(int64_t(batch_) * groups * seq_ * width));
    for (int64_t b = 0; b < batch_ * groups; b++)
        std::memcpy(dst + (b * seq_ + lo_) * width, local + b * local_ * width, sizeof(T) * size_t(local_ * width));
    return dst;
}

// The dropout masks number each element by its place in the whole global batch (examples, positions,
// channels), so that data- and context-parallel processes draw the masks one process would.
template <class T> void Model<T>::residual(T* out, const T* x, const T* y, float p, uint64_t seed) const {
    const int64_t C = cfg.d_model, n = int64_t(local_) * C;
    for (int64_t b = 0; b < batch_; b++)
        residual_forward(out + b * n, x + b * n, y + b * n, p, seed, n, ((dropout_first + b) * seq_ + lo_) * C);
}

template <class T> void Model<T>::residual_branch(T* dy, const T* dout, float p, uint64_t seed) const {
    const int64_t C = cfg.d_model, n = int64_t(local_) * C;
    for (int64_t b = 0; b < batch_; b++)
        residual_backward_branch(dy + b * n, dout + b * n, p, seed, n, ((dropout_first + b) * seq_ + lo_) * C);
}

// Split: the shared positions of a layer (the layout's), and the key and value columns of their rows
// in a (B, seq_, 3C) buffer, packed into kv or put back from it: owner by owner (the rows are
// ascending, so each owner's are consecutive), each owner's rows of every sequence one segment.
template <class T> const std::vector<int32_t>& Model<T>::shared(int layer) {
    layout(layer, seq_);
    if (shared_.empty())
        for (const LayerLayout& lay : layouts_) shared_.push_back(shared_positions(lay, split_world));
    return shared_[size_t(layer) % shared_.size()];
}

// The shared rows of each owner: [first[r], first[r + 1]).
static std::vector<size_t> owners_first(const std::vector<int32_t>& rows, int seq, int world) {
    std::vector<size_t> first(size_t(world) + 1, rows.size());
    for (int r = 0; r < world; r++)
        first[size_t(r)] =
            size_t(std::lower_bound(rows.begin(), rows.end(), sequence_part(seq, r, world).lo) - rows.begin());
    return first;
}

template <class T> std::vector<size_t> Model<T>::segments(int layer) {
    const std::vector<size_t> first = owners_first(shared(layer), seq_, split_world);
    std::vector<size_t> counts(static_cast<size_t>(split_world));
    for (size_t r = 0; r < counts.size(); r++)
        counts[r] = size_t(batch_) * (first[r + 1] - first[r]) * 2 * size_t(cfg.d_model);
    return counts;
}

template <class T> void Model<T>::shared_rows(std::vector<T>& kv, T* full, int layer, bool pack) {
    const std::vector<int32_t>& rows = shared(layer);
    const std::vector<size_t> first = owners_first(rows, seq_, split_world);
    const int64_t C = cfg.d_model;
    kv.resize(size_t(batch_) * rows.size() * size_t(2 * C));
    T* packed = kv.data();
    for (int r = 0; r < split_world; r++)
        for (int64_t b = 0; b < batch_; b++)
            for (size_t i = first[size_t(r)]; i < first[size_t(r) + 1]; i++, packed += 2 * C) {
                T* row = full + (b * seq_ + rows[i]) * 3 * C + C;
                std::memcpy(pack ? packed : row, pack ? row : packed, sizeof(T) * size_t(2 * C));
            }
}

// The attention's view of every position before a layer's attention: this process's rows of qkv, and
// the keys and values of the shared rows, each its owner's, gathered into kv_shared_ (unless they
// were: --recompute's rerun of the layer finds them there).
template <class T> void Model<T>::gather_keys(const T* qkv, int layer, bool gathered) {
    std::vector<T>& kv = kv_shared_[size_t(layer)];
    full_rows(qkv_full_, qkv, 3 * cfg.d_model);
    if (!gathered) {
        shared_rows(kv, qkv_full_, layer, true);
        if (!kv.empty()) split_values += int64_t(split_gather(kv.data(), segments(layer)));
    }
    shared_rows(kv, qkv_full_, layer, false);
}

template <class T> void Model<T>::layer_forward(int l, Acts& a, const T* x, T* out, bool train, bool rerun) {
    const int64_t N = int64_t(batch_) * local_;
    const int C = cfg.d_model, F = cfg.ff_dim();
    const auto lw = at(w.data(), offsets.layers[size_t(l)]);
    const float p = train ? cfg.dropout : 0.0f;
    layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, lw.ln1_w, lw.ln1_b, N, C);
    linear_forward(a.qkv, a.ln1, lw.qkv_w, lw.qkv_b, N, C, 3 * C);
    if (split()) {  // the attention of this process's queries over the keys and values they read
        gather_keys(a.qkv, l, rerun);
        attention_forward(att_full_, lse_full_, qkv_full_, layout(l, seq_), batch_, seq_, C, cfg.n_head,
                          {lo_, lo_ + local_});
        local_rows(a.att, att_full_, C);
        local_rows(a.lse, lse_full_, 1, cfg.n_head);
    } else {
        attention_forward(a.att, a.lse, a.qkv, layout(l, seq_), batch_, seq_, C, cfg.n_head);
    }
    linear_forward(branch_, a.att, lw.proj_w, lw.proj_b, N, C, C);
    residual(a.x1, x, branch_, p, hash64(dropout_seed, uint64_t(l), 0));
    layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.x1, lw.ln2_w, lw.ln2_b, N, C);
    linear_forward(a.fch, a.ln2, lw.fc_w, lw.fc_b, N, C, F);
    gelu_forward(a.fcg, a.fch, N * F);
    linear_forward(branch_, a.fcg, lw.fp_w, lw.fp_b, N, F, C);
    residual(out, a.x1, branch_, p, hash64(dropout_seed, uint64_t(l), 1));
}

// dresid_ holds dL/d(layer output) on entry and dL/d(layer input) on return.
template <class T> void Model<T>::layer_backward(int l, Acts& a, const T* x) {
    const int64_t N = int64_t(batch_) * local_;
    const int C = cfg.d_model, F = cfg.ff_dim();
    const auto lw = at(w.data(), offsets.layers[size_t(l)]);
    const auto lg = at(g.data(), offsets.layers[size_t(l)]);
    const float p = cfg.dropout;
    // MLP branch: out = x1 + dropout(proj(gelu(fc(ln2(x1)))))
    residual_branch(dbranch_, dresid_, p, hash64(dropout_seed, uint64_t(l), 1));
    std::memset(dfc_, 0, sizeof(T) * N * F);
    linear_backward(dfc_, lg.fp_w, lg.fp_b, dbranch_, a.fcg, lw.fp_w, N, F, C);
    gelu_backward(dfc_, a.fch, dfc_, N * F);  // in place: d(gelu output) -> d(fc output)
    std::memset(dln_, 0, sizeof(T) * N * C);
    linear_backward(dln_, lg.fc_w, lg.fc_b, dfc_, a.ln2, lw.fc_w, N, C, F);
    layernorm_backward(dresid_, lg.ln2_w, lg.ln2_b, dln_, a.x1, lw.ln2_w, a.ln2_mean, a.ln2_rstd, N, C);
    // Attention branch: x1 = x + dropout(proj(attend(qkv(ln1(x)))))
    residual_branch(dbranch_, dresid_, p, hash64(dropout_seed, uint64_t(l), 0));
    std::memset(datt_, 0, sizeof(T) * N * C);
    linear_backward(datt_, lg.proj_w, lg.proj_b, dbranch_, a.att, lw.proj_w, N, C, C);
    std::memset(dqkv_, 0, sizeof(T) * N * 3 * C);
    if (split()) {
        // The forward's view again (its keys and values kept), this process's outputs and log-sum-
        // exps: the other rows of a block it walks add exactly nothing (their dout is 0, their
        // queries 0, their log-sum-exp 0). Its queries' gradients for the shared rows' keys and
        // values are then added up for their owners (the other segments of kv are left undefined,
        // and so are those rows of dqkv_full_, which are not this process's).
        std::vector<T>& kv = kv_shared_[size_t(l)];
        full_rows(qkv_full_, a.qkv, 3 * C);
        shared_rows(kv, qkv_full_, l, false);
        std::memset(dqkv_full_, 0, sizeof(T) * size_t(int64_t(batch_) * seq_ * 3 * C));
        attention_backward(dqkv_full_, full_rows(datt_full_, datt_, C), qkv_full_, full_rows(att_full_, a.att, C),
                           full_rows(lse_full_, a.lse, 1, cfg.n_head), layout(l, seq_), batch_, seq_, C, cfg.n_head,
                           {lo_, lo_ + local_});
        shared_rows(kv, dqkv_full_, l, true);
        if (!kv.empty()) {
            // This process's gradients are of the mean over its local_ positions, and the owner's
            // gradient is weighed by its own part's share: put each owner's rows on its scale.
            const std::vector<size_t> counts = segments(l);
            T* x = kv.data();
            for (int r = 0; r < split_world; r++) {
                const SequencePart part = sequence_part(seq_, r, split_world);
                const T scale = T(double(local_) / double(part.hi - part.lo));
                for (size_t i = 0; i < counts[size_t(r)]; i++) x[i] *= scale;
                x += counts[size_t(r)];
            }
            split_values += int64_t(split_add(kv.data(), counts));
        }
        shared_rows(kv, dqkv_full_, l, false);
        local_rows(dqkv_, dqkv_full_, 3 * C);
    } else {
        attention_backward(dqkv_, datt_, a.qkv, a.att, a.lse, layout(l, seq_), batch_, seq_, C, cfg.n_head);
    }
    std::memset(dln_, 0, sizeof(T) * N * C);
    linear_backward(dln_, lg.qkv_w, lg.qkv_b, dqkv_, a.ln1, lw.qkv_w, N, C, 3 * C);
    layernorm_backward(dresid_, lg.ln1_w, lg.ln1_b, dln_, x, lw.ln1_w, a.ln1_mean, a.ln1_rstd, N, C);
}

template <class T> void Model<T>::run_forward(const uint8_t* inp, int B, int seq, bool train) {
    if (seq < 1 || seq > cfg.n_ctx)
        fail("sequence length " + std::to_string(seq) + " is outside 1.." + std::to_string(cfg.n_ctx));
    const SequencePart part = split() ? sequence_part(seq, split_rank, split_world) : SequencePart{0, seq};
    if (part.hi <= part.lo)
        fail("a sequence of " + std::to_string(seq) + " positions cannot be split among " +
             std::to_string(split_world) + " processes");
    lo_ = part.lo, local_ = part.hi - part.lo;
    ensure_buffers(B, seq, local_);
    const int64_t N = int64_t(B) * local_;
    const int C = cfg.d_model;
    inp_.resize(size_t(N));
    for (int64_t b = 0; b < B; b++) std::memcpy(inp_.data() + b * local_, inp + b * seq + lo_, size_t(local_));
    const ParamOffsets& o = offsets;
    std::vector<const T*> pos;
    std::vector<const int32_t*> idx;
    for (size_t k = 0; k < pos_index_.size(); k++) {
        pos.push_back(w.data() + o.wpe[k]);
        idx.push_back(pos_index_[k].data() + lo_);
    }
    embedding_forward(resid_[0], inp_.data(), w.data() + o.wte, pos.data(), idx.data(), int(pos.size()), N, local_, C);
    for (int l = 0; l < cfg.n_layer; l++) layer_forward(l, acts_[recompute ? 0 : l], resid_[l], resid_[l + 1], train);
    layernorm_forward(lnf_, lnf_mean_, lnf_rstd_, resid_[cfg.n_layer], w.data() + o.lnf_w, w.data() + o.lnf_b, N, C);
    linear_forward(logits_, lnf_, w.data() + o.head, (const T*)nullptr, N, C, cfg.vocab);
}

template <class T> double Model<T>::forward(const uint8_t* inp, const uint8_t* tgt, int B, int seq, bool train) {
    run_forward(inp, B, seq, train);
    const int64_t N = int64_t(B) * local_;
    tgt_.resize(size_t(N));
    for (int64_t b = 0; b < B; b++) std::memcpy(tgt_.data() + b * local_, tgt + b * seq + lo_, size_t(local_));
    crossentropy_forward(losses_, logits_, tgt_.data(), N, cfg.vocab);
    double s = 0;
    for (int64_t i = 0; i < N; i++) s += losses_[i];
    return s / double(N);
}

template <class T> const T* Model<T>::logits(const uint8_t* inp, int B, int seq) {
    if (split()) fail("logits: a model split among processes has only its part of each sequence's");
    run_forward(inp, B, seq, false);
    return logits_;
}

template <class T> void Model<T>::backward() {
    const int64_t N = int64_t(batch_) * local_;
    const int C = cfg.d_model, V = cfg.vocab;
    const ParamOffsets& o = offsets;
    crossentropy_backward(logits_, logits_, tgt_.data(), T(1.0 / double(N)), N, V);  // logits_ now holds dlogits
    std::memset(dln_, 0, sizeof(T) * N * C);
    linear_backward(dln_, g.data() + o.head, (T*)nullptr, logits_, lnf_, w.data() + o.head, N, C, V);
    std::memset(dresid_, 0, sizeof(T) * N * C);
    layernorm_backward(dresid_, g.data() + o.lnf_w, g.data() + o.lnf_b, dln_, resid_[cfg.n_layer], w.data() + o.lnf_w,
                       lnf_mean_, lnf_rstd_, N, C);
    for (int l = cfg.n_layer - 1; l >= 0; l--) {
        Acts& a = acts_[recompute ? 0 : l];
        if (recompute) layer_forward(l, a, resid_[l], resid_[l + 1], true, true);  // rewrites the same output bits
        layer_backward(l, a, resid_[l]);
    }
    std::vector<T*> dpos;
    std::vector<const int32_t*> idx;
    for (size_t k = 0; k < pos_index_.size(); k++) {
        dpos.push_back(g.data() + o.wpe[k]);
        idx.push_back(pos_index_[k].data() + lo_);
    }
    embedding_backward(g.data() + o.wte, dpos.data(), dresid_, inp_.data(), idx.data(), int(dpos.size()), N, local_, C);
}

template struct Model<float>;
template struct Model<double>;

}  // namespace st
