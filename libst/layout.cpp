// Attention patterns: names, checks, the element sets of Child et al. 2019, section 4 and their block layouts.
#include "layout.h"

#include <algorithm>
#include <array>
#include <bit>
#include <unordered_map>

#include "error.h"

namespace st {

const char* pattern_name(Pattern p) {
    switch (p) {
        case Pattern::dense:
            return "dense";
        case Pattern::local:
            return "local";
        case Pattern::fixed:
            return "fixed";
        case Pattern::strided:
            return "strided";
    }
    return "?";
}

bool pattern_from_name(const std::string& s, Pattern* out) {
    for (Pattern p : {Pattern::dense, Pattern::local, Pattern::fixed, Pattern::strided})
        if (s == pattern_name(p)) {
            *out = p;
            return true;
        }
    return false;
}

const char* head_mode_name(HeadMode m) {
    switch (m) {
        case HeadMode::interleaved:
            return "interleaved";
        case HeadMode::merged:
            return "merged";
        case HeadMode::multihead:
            return "multihead";
    }
    return "?";
}

bool head_mode_from_name(const std::string& s, HeadMode* out) {
    for (HeadMode m : {HeadMode::interleaved, HeadMode::merged, HeadMode::multihead})
        if (s == head_mode_name(m)) {
            *out = m;
            return true;
        }
    return false;
}

namespace {

bool factorized(Pattern p) { return p == Pattern::fixed || p == Pattern::strided; }

// The checks that do not depend on the context (layout_build may run on any prefix length).
std::string spec_reason(const AttnSpec& s, int n_head) {
    if (s.block != 32 && s.block != 64 && s.block != 128) return "block must be 32, 64 or 128";
    if (n_head < 1) return "n_head must be at least 1";
    if (s.pattern == Pattern::dense) return "";
    if (s.stride < 1) return "stride must be at least 1";
    if (s.pattern == Pattern::fixed) {
        if (s.summary < 1) return "summary must be at least 1";
        if (s.stride % s.summary != 0)
            return "summary " + std::to_string(s.summary) + " does not divide the stride " + std::to_string(s.stride);
    }
    if (factorized(s.pattern) && s.mode == HeadMode::multihead && n_head < 2)
        return "multihead mode needs at least 2 heads (one per pattern)";
    return "";
}

}  // namespace

// Which of A1 and A2 this layer and head use (p = 2).
Uses attn_uses(const AttnSpec& s, int layer, int head) {
    switch (s.mode) {
        case HeadMode::interleaved:
            return {layer % 2 == 0, layer % 2 != 0};
        case HeadMode::multihead:
            return {head % 2 == 0, head % 2 != 0};
        case HeadMode::merged:
            break;
    }
    return {true, true};
}

// Fixed A2 of a head: key positions j with j mod l in [lo, hi), a different length-c sub-block per head.
// In multihead mode only the odd heads use A2, so they count among themselves (h / 2): otherwise
// with l/c even they would see only the odd sub-blocks.
Summary attn_summary(const AttnSpec& s, int head) {
    int64_t k = s.mode == HeadMode::multihead ? head / 2 : head;
    int64_t sub = k % (s.stride / s.summary);
    return {s.stride - (sub + 1) * s.summary, s.stride - sub * s.summary};
}

std::string attn_spec_check(const AttnSpec& spec, int n_ctx, int n_head) {
    if (n_ctx < 1) return "context must be at least 1";
    std::string why = spec_reason(spec, n_head);
    if (!why.empty()) return why;
    if (factorized(spec.pattern) && n_ctx % spec.stride != 0)
        return "stride " + std::to_string(spec.stride) + " does not divide the context " + std::to_string(n_ctx);
    return "";
}

bool attn_allowed(const AttnSpec& s, int, int layer, int head, int64_t i, int64_t j) {
    if (j < 0 || j > i) return false;
    const int64_t l = s.stride;
    switch (s.pattern) {
        case Pattern::dense:
            return true;
        case Pattern::local:
            return i - j <= l;
        case Pattern::strided: {
            Uses u = attn_uses(s, layer, head);
            return (u.a1 && i - j <= l) || (u.a2 && (i - j) % l == 0);
        }
        case Pattern::fixed: {
            Uses u = attn_uses(s, layer, head);
            Summary sm = attn_summary(s, head);
            return (u.a1 && j / l == i / l) || (u.a2 && j % l >= sm.lo && j % l < sm.hi);
        }
    }
    return false;
}

void attn_keys(const AttnSpec& s, int, int layer, int head, int64_t i, std::vector<int64_t>* out) {
    out->clear();
    if (i < 0) return;
    const int64_t l = s.stride;
    auto push_range = [&](int64_t a, int64_t b) {  // [a, b)
        for (int64_t j = a; j < b; j++) out->push_back(j);
    };
    switch (s.pattern) {
        case Pattern::dense:
            push_range(0, i + 1);
            return;
        case Pattern::local:
            push_range(std::max<int64_t>(0, i - l), i + 1);
            return;
        case Pattern::strided: {
            Uses u = attn_uses(s, layer, head);
            int64_t window = u.a1 ? std::max<int64_t>(0, i - l) : i + 1;
            // The column below the window; its entries inside the window are the window's.
            if (u.a2)
                for (int64_t j = i % l; j < window; j += l) out->push_back(j);
            push_range(window, i + 1);
            return;
        }
        case Pattern::fixed: {
            Uses u = attn_uses(s, layer, head);
            Summary sm = attn_summary(s, head);
            int64_t own = (i / l) * l;
            int64_t last = u.a1 ? own : i + 1;  // summaries of chunks starting before this
            if (u.a2)
                for (int64_t q = 0; q < last; q += l) push_range(q + sm.lo, std::min(q + sm.hi, i + 1));
            if (u.a1) push_range(own, i + 1);
            return;
        }
    }
}

namespace {

// How a component's rows see keys, in component order t (rows and keys alike):
// keys [lo(t), t - skip] (the interval) plus, for fixed A2, the summary columns j <= t.
enum class Lo { none, zero, window, chunk, segment };
struct Rule {
    bool transposed = false;  // order: the positions as rows of width l, read column by column
    Lo lo = Lo::none;
    int skip = 0;
    bool summary = false;
    Summary sm{0, 0};
    bool operator==(const Rule& o) const {
        return transposed == o.transposed && lo == o.lo && skip == o.skip && summary == o.summary &&
               (!summary || (sm.lo == o.sm.lo && sm.hi == o.sm.hi));
    }
};

std::vector<Rule> head_rules(const AttnSpec& s, int layer, int head) {
    switch (s.pattern) {
        case Pattern::dense:
            return {Rule{false, Lo::zero, 0, false, {}}};
        case Pattern::local:
            return {Rule{false, Lo::window, 0, false, {}}};
        case Pattern::strided: {
            Uses u = attn_uses(s, layer, head);
            if (!u.a2) return {Rule{false, Lo::window, 0, false, {}}};
            if (!u.a1) return {Rule{true, Lo::segment, 0, false, {}}};
            // A2 minus A1: j = i - k*l with k >= 2, two rows back in the column.
            return {Rule{false, Lo::window, 0, false, {}}, Rule{true, Lo::segment, 2, false, {}}};
        }
        case Pattern::fixed: {
            Uses u = attn_uses(s, layer, head);
            return {Rule{false, u.a1 ? Lo::chunk : Lo::none, 0, u.a2, attn_summary(s, head)}};
        }
    }
    return {};
}

// The transposed order for length T: column cc of the [ceil(T/l), l] view holds positions
// cc, cc + l, ...; the first T mod l columns are one longer than the rest.
struct Columns {
    int64_t l, q, r;
    Columns(int64_t T, int64_t l_) : l(l_), q(T / l_), r(T % l_) {}
    void locate(int64_t t, int64_t* col, int64_t* row) const {
        int64_t longer = r * (q + 1);
        if (t < longer) {
            *col = t / (q + 1);
            *row = t % (q + 1);
        } else {
            *col = r + (t - longer) / q;
            *row = (t - longer) % q;
        }
    }
    int64_t segment_start(int64_t t) const {
        int64_t c, w;
        locate(t, &c, &w);
        return t - w;
    }
    int64_t position(int64_t t) const {
        int64_t c, w;
        locate(t, &c, &w);
        return w * l + c;
    }
};

using RowBits = std::array<uint64_t, 2>;  // a block row of up to 128 keys

// The bits of [a, b] (inclusive) that fall in a row of 128; nothing when b < a.
RowBits bit_range(int64_t a, int64_t b) {
    RowBits out{0, 0};
    for (int w = 0; w < 2; w++) {
        int64_t lo = std::max<int64_t>(a, w * 64), hi = std::min<int64_t>(b, w * 64 + 63);
        if (hi < lo) continue;
        int n = int(hi - lo + 1);
        uint64_t ones = n == 64 ? ~uint64_t(0) : ((uint64_t(1) << n) - 1);
        out[w] = ones << (lo - w * 64);
    }
    return out;
}

// FNV-style, over the words of a mask (the key of the deduplication).
struct MaskHash {
    size_t operator()(const std::vector<uint64_t>& m) const {
        uint64_t h = 1469598103934665603ull;
        for (uint64_t w : m) h = (h ^ w) * 1099511628211ull + (h >> 29);
        return size_t(h);
    }
};

AttnComponent build_component(const Rule& rule, const AttnSpec& s, int64_t T) {
    const int64_t b = s.block, l = s.stride;
    const Columns cols(T, std::max<int64_t>(l, 1));
    AttnComponent c;
    c.nblk = int((T + b - 1) / b);
    if (rule.transposed) {
        c.order.resize(size_t(T));
        for (int64_t t = 0; t < T; t++) c.order[size_t(t)] = int32_t(cols.position(t));
    }
    auto lo_of = [&](int64_t t) -> int64_t {
        switch (rule.lo) {
            case Lo::none:
                return t + 1;
            case Lo::zero:
                return 0;
            case Lo::window:
                return std::max<int64_t>(0, t - l);
            case Lo::chunk:
                return (t / l) * l;
            case Lo::segment:
                return cols.segment_start(t);
        }
        return t + 1;
    };
    const int words = int(b * b / 64);
    std::unordered_map<std::vector<uint64_t>, int32_t, MaskHash> mask_index;
    std::vector<int64_t> cand;
    std::vector<RowBits> rows(static_cast<size_t>(b));
    std::vector<uint64_t> bits(static_cast<size_t>(words));

    c.row_ptr.push_back(0);
    for (int64_t qb = 0; qb < c.nblk; qb++) {
        const int64_t q0 = qb * b, nr = std::min(b, T - q0);
        // Candidate key blocks, ascending: the summary blocks before the interval's range, then the range.
        cand.clear();
        int64_t first = rule.lo == Lo::none ? qb + 1 : lo_of(q0) / b;
        if (rule.summary) {
            if (l <= b) {
                for (int64_t kb = 0; kb < first; kb++) cand.push_back(kb);
            } else {
                for (int64_t ch = 0; ch <= (q0 + nr - 1) / l; ch++)
                    for (int64_t kb = (ch * l + rule.sm.lo) / b; kb <= std::min(qb, (ch * l + rule.sm.hi - 1) / b);
                         kb++)
                        if (kb < first && (cand.empty() || kb > cand.back())) cand.push_back(kb);
            }
        }
        for (int64_t kb = first; kb <= qb; kb++) cand.push_back(kb);

        for (int64_t kb : cand) {
            const int64_t k0 = kb * b, nk = std::min(b, T - k0);
            // Both ends of a row's interval rise with t: if the last row's starts by k0 and the first
            // row's reaches past the block, every row takes the whole block (most blocks of a long
            // sequence), and the rows need not be looked at one by one.
            if (lo_of(q0 + nr - 1) <= k0 && q0 - rule.skip >= k0 + nk - 1) {
                c.col.push_back(int32_t(kb));
                c.mask.push_back(-1);
                continue;
            }
            RowBits sum_bits{0, 0};
            if (rule.summary)
                for (int64_t cc = 0; cc < nk; cc++) {
                    int64_t m = (k0 + cc) % l;
                    if (m >= rule.sm.lo && m < rule.sm.hi) sum_bits[cc / 64] |= uint64_t(1) << (cc % 64);
                }
            int64_t allowed = 0;
            for (int64_t r = 0; r < nr; r++) {
                const int64_t t = q0 + r;
                RowBits row = bit_range(lo_of(t) - k0, std::min(t - rule.skip, k0 + nk - 1) - k0);
                if (rule.summary) {
                    RowBits causal = bit_range(0, std::min(t, k0 + nk - 1) - k0);
                    for (int w = 0; w < 2; w++) row[w] |= sum_bits[w] & causal[w];
                }
                rows[size_t(r)] = row;
                allowed += std::popcount(row[0]) + std::popcount(row[1]);
            }
            if (allowed == 0) continue;
            int32_t mi = -1;
            if (allowed < nr * nk) {
                std::fill(bits.begin(), bits.end(), 0);
                for (int64_t r = 0; r < nr; r++) {
                    const RowBits& row = rows[size_t(r)];
                    if (b == 32)
                        bits[size_t(r / 2)] |= row[0] << (32 * (r % 2));
                    else
                        for (int w = 0; w < b / 64; w++) bits[size_t(r * b / 64 + w)] = row[size_t(w)];
                }
                auto [it, added] = mask_index.try_emplace(bits, int32_t(c.masks.size()));
                if (added) c.masks.push_back(bits);
                mi = it->second;
            }
            c.col.push_back(int32_t(kb));
            c.mask.push_back(mi);
        }
        c.row_ptr.push_back(int32_t(c.col.size()));
    }

    component_index_by_key(&c);
    return c;
}

}  // namespace

void component_index_by_key(AttnComponent* c) {
    // A stable counting sort of the entries by key block keeps each column's query blocks ascending.
    c->col_ptr.assign(size_t(c->nblk) + 1, 0);
    for (int32_t kb : c->col) c->col_ptr[size_t(kb) + 1]++;
    for (int kb = 0; kb < c->nblk; kb++) c->col_ptr[size_t(kb) + 1] += c->col_ptr[size_t(kb)];
    c->row_of.resize(c->col.size());
    c->entry_of.resize(c->col.size());
    std::vector<int32_t> fill(c->col_ptr.begin(), c->col_ptr.end() - 1);
    for (int qb = 0; qb < c->nblk; qb++)
        for (int32_t e = c->row_ptr[size_t(qb)]; e < c->row_ptr[size_t(qb) + 1]; e++) {
            int32_t at = fill[size_t(c->col[size_t(e)])]++;
            c->row_of[size_t(at)] = qb;
            c->entry_of[size_t(at)] = e;
        }
}

int layout_period(const AttnSpec& spec) {
    return factorized(spec.pattern) && spec.mode == HeadMode::interleaved ? 2 : 1;
}

LayerLayout layout_build(const AttnSpec& spec, int T, int n_head, int layer) {
    std::string why = spec_reason(spec, n_head);
    if (!why.empty()) fail("attention layout: " + why);
    if (T < 1) fail("attention layout: sequence length " + std::to_string(T) + " must be at least 1");
    LayerLayout lay;
    lay.T = T;
    lay.block = spec.block;
    lay.heads.resize(size_t(n_head));
    // Heads of one rule get one component, built once: every head but the fixed pattern's, whose heads
    // take different summary columns.
    struct Built {
        Rule rule;
        size_t head, part;
    };
    std::vector<Built> built;
    for (int h = 0; h < n_head; h++)
        for (const Rule& r : head_rules(spec, layer, h)) {
            auto& parts = lay.heads[size_t(h)].parts;
            auto same = std::find_if(built.begin(), built.end(), [&](const Built& b) { return b.rule == r; });
            if (same == built.end()) {
                built.push_back({r, size_t(h), parts.size()});
                parts.push_back(build_component(r, spec, T));
            } else {
                parts.push_back(lay.heads[same->head].parts[same->part]);
            }
        }
    return lay;
}

SequencePart sequence_part(int seq, int rank, int world) {
    return {int(int64_t(seq) * rank / world), int(int64_t(seq) * (rank + 1) / world)};
}

namespace {

// For every query of one part and key of another that some head of lay attends: read(reader, key),
// the reader being the query's part. The parts are sequence_part's of lay.T among world.
template <class Read> void cross_reads(const LayerLayout& lay, int world, Read read) {
    const int T = lay.T, bs = lay.block;
    std::vector<int32_t> owner(static_cast<size_t>(T));
    for (int r = 0; r < world; r++) {
        const SequencePart p = sequence_part(T, r, world);
        std::fill(owner.begin() + p.lo, owner.begin() + p.hi, r);
    }
    for (const HeadLayout& head : lay.heads)
        for (const AttnComponent& part : head.parts) {
            auto pos = [&](int64_t t) { return part.order.empty() ? int32_t(t) : part.order[size_t(t)]; };
            for (int qb = 0; qb < part.nblk; qb++)
                for (int32_t e = part.row_ptr[size_t(qb)]; e < part.row_ptr[size_t(qb) + 1]; e++) {
                    const int64_t q0 = int64_t(qb) * bs, k0 = int64_t(part.col[size_t(e)]) * bs;
                    const int nr = int(std::min<int64_t>(bs, T - q0)), nk = int(std::min<int64_t>(bs, T - k0));
                    const int32_t m = part.mask[size_t(e)];
                    for (int r = 0; r < nr; r++)
                        for (int c = 0; c < nk; c++) {
                            const int bit = r * bs + c;
                            if (m >= 0 && !((part.masks[size_t(m)][size_t(bit >> 6)] >> (bit & 63)) & 1)) continue;
                            const int32_t i = pos(q0 + r), j = pos(k0 + c);
                            if (owner[size_t(i)] != owner[size_t(j)]) read(owner[size_t(i)], j);
                        }
                }
        }
}

}  // namespace

std::vector<int32_t> shared_positions(const LayerLayout& lay, int world) {
    std::vector<char> shared(static_cast<size_t>(lay.T), 0);
    cross_reads(lay, world, [&](int, int32_t j) { shared[size_t(j)] = 1; });
    std::vector<int32_t> out;
    for (int32_t j = 0; j < lay.T; j++)
        if (shared[size_t(j)]) out.push_back(j);
    return out;
}

int64_t foreign_reads(const LayerLayout& lay, int world) {
    std::vector<char> read(size_t(lay.T) * size_t(world), 0);  // (key, reader)
    cross_reads(lay, world, [&](int reader, int32_t j) { read[size_t(j) * size_t(world) + size_t(reader)] = 1; });
    return int64_t(std::count(read.begin(), read.end(), char(1)));
}

}  // namespace st
