// Attention layouts against Child et al. 2019, section 4: the sets are written out again here, independently of
// libst/layout.cpp, and every block layout is expanded back to element sets and compared.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "error.h"
#include "layout.h"

using namespace st;

namespace {

// The paper's sets (Child et al. 2019, section 4) with st's choices (st(7), "Attention patterns"): p = 2, fixed A2 of
// head h is the length-c sub-block sub = k mod (l/c) counted from the end of each chunk, where k = h, or h / 2 in
// multihead mode (where only odd heads use A2).
bool paper_allows(const AttnSpec& s, int layer, int head, int64_t i, int64_t j) {
    if (j < 0 || j > i) return false;
    const int64_t l = s.stride, c = s.summary;
    if (s.pattern == Pattern::dense) return true;
    if (s.pattern == Pattern::local) return j >= std::max<int64_t>(0, i - l);
    bool a1, a2;
    if (s.pattern == Pattern::strided) {
        a1 = std::max<int64_t>(0, i - l) <= j;
        a2 = (i - j) % l == 0;
    } else {
        a1 = j / l == i / l;
        const int64_t sub = (s.mode == HeadMode::multihead ? head / 2 : head) % (l / c);
        a2 = l - (sub + 1) * c <= j % l && j % l < l - sub * c;
    }
    switch (s.mode) {
        case HeadMode::interleaved:
            return layer % 2 == 0 ? a1 : a2;
        case HeadMode::merged:
            return a1 || a2;
        case HeadMode::multihead:
            return head % 2 == 0 ? a1 : a2;
    }
    return false;
}

std::string describe(const AttnSpec& s, int T, int n_head, int layer) {
    std::ostringstream o;
    o << pattern_name(s.pattern) << " " << head_mode_name(s.mode) << " l " << s.stride << " c " << s.summary
      << " block " << s.block << " T " << T << " heads " << n_head << " layer " << layer;
    return o.str();
}

bool bit(const std::vector<uint64_t>& m, int64_t k) { return (m[size_t(k >> 6)] >> (k & 63)) & 1; }

// Checks one component's structure and adds the (query, key) sequence pairs it allows to cover
// (T x T counts). Returns "" or what is wrong.
std::string expand(const AttnComponent& p, int T, int b, std::vector<uint8_t>* cover) {
    const int nblk = (T + b - 1) / b;
    if (p.nblk != nblk) return "nblk";
    std::vector<int64_t> pos(static_cast<size_t>(T));
    for (int t = 0; t < T; t++) pos[size_t(t)] = p.order.empty() ? t : p.order[size_t(t)];
    if (!p.order.empty()) {
        if (int(p.order.size()) != T) return "order size";
        std::vector<int64_t> sorted = pos;
        std::sort(sorted.begin(), sorted.end());
        for (int t = 0; t < T; t++)
            if (sorted[size_t(t)] != t) return "order is not a permutation";
    }
    if (int(p.row_ptr.size()) != nblk + 1 || p.row_ptr[0] != 0 || size_t(p.row_ptr[size_t(nblk)]) != p.col.size() ||
        p.mask.size() != p.col.size())
        return "CSR sizes";
    std::set<std::vector<uint64_t>> distinct(p.masks.begin(), p.masks.end());
    if (distinct.size() != p.masks.size()) return "masks not deduplicated";
    for (const auto& m : p.masks)
        if (int64_t(m.size()) * 64 != int64_t(b) * b) return "mask size";
    std::vector<int32_t> qb_of(p.col.size());
    for (int qb = 0; qb < nblk; qb++) {
        if (p.row_ptr[size_t(qb)] > p.row_ptr[size_t(qb) + 1]) return "row_ptr not monotone";
        for (int32_t e = p.row_ptr[size_t(qb)]; e < p.row_ptr[size_t(qb) + 1]; e++) {
            qb_of[size_t(e)] = qb;
            const int kb = p.col[size_t(e)];
            if (kb < 0 || kb > qb) return "entry above the diagonal";
            if (e > p.row_ptr[size_t(qb)] && kb <= p.col[size_t(e) - 1]) return "key blocks not ascending";
            const int mi = p.mask[size_t(e)];
            if (mi < -1 || mi >= int(p.masks.size())) return "mask index";
            const int nr = std::min(b, T - qb * b), nk = std::min(b, T - kb * b);
            int64_t allowed = 0;
            for (int r = 0; r < b; r++)
                for (int c = 0; c < b; c++) {
                    const bool inside = r < nr && c < nk;
                    const bool on = mi < 0 ? inside : bit(p.masks[size_t(mi)], int64_t(r) * b + c);
                    if (!on) continue;
                    if (!inside) return "mask bit outside the sequence";
                    allowed++;
                    (*cover)[size_t(pos[size_t(qb * b + r)] * T + pos[size_t(kb * b + c)])]++;
                }
            if (allowed == 0) return "empty entry stored";
            if (mi >= 0 && allowed == int64_t(nr) * nk) return "full block stored with a mask";
        }
    }
    // The transposed CSR: every entry once, under its key block, query blocks ascending.
    if (int(p.col_ptr.size()) != nblk + 1 || p.row_of.size() != p.col.size() || p.entry_of.size() != p.col.size() ||
        p.col_ptr[0] != 0 || size_t(p.col_ptr[size_t(nblk)]) != p.col.size())
        return "transposed CSR sizes";
    std::vector<int> seen(p.col.size(), 0);
    for (int kb = 0; kb < nblk; kb++)
        for (int32_t x = p.col_ptr[size_t(kb)]; x < p.col_ptr[size_t(kb) + 1]; x++) {
            const int32_t e = p.entry_of[size_t(x)];
            if (e < 0 || size_t(e) >= p.col.size() || p.col[size_t(e)] != kb || p.row_of[size_t(x)] != qb_of[size_t(e)])
                return "transposed CSR entry";
            if (x > p.col_ptr[size_t(kb)] && p.row_of[size_t(x)] <= p.row_of[size_t(x) - 1])
                return "transposed CSR not ascending";
            seen[size_t(e)]++;
        }
    for (int s : seen)
        if (s != 1) return "transposed CSR misses or repeats an entry";
    return "";
}

// Everything about one layer: layouts, attn_allowed and attn_keys against paper_allows.
std::string check_layer(const AttnSpec& s, int T, int n_head, int layer) {
    const LayerLayout lay = layout_build(s, T, n_head, layer);
    if (lay.T != T || lay.block != s.block || int(lay.heads.size()) != n_head) return "layer sizes";
    std::vector<uint8_t> cover;
    std::vector<int64_t> keys;
    for (int h = 0; h < n_head; h++) {
        cover.assign(size_t(T) * T, 0);
        for (const AttnComponent& p : lay.heads[size_t(h)].parts) {
            std::string why = expand(p, T, s.block, &cover);
            if (!why.empty()) return "head " + std::to_string(h) + ": " + why;
        }
        for (int64_t i = 0; i < T; i++) {
            std::vector<int64_t> want;
            for (int64_t j = 0; j < T; j++) {
                const bool a = paper_allows(s, layer, h, i, j);
                const int got = cover[size_t(i * T + j)];
                auto at = [&] {
                    return "head " + std::to_string(h) + " query " + std::to_string(i) + " key " + std::to_string(j);
                };
                if (got > 1) return at() + ": covered twice (components overlap)";
                if (got != int(a)) return at() + ": layout " + std::to_string(got) + ", paper " + std::to_string(a);
                if (attn_allowed(s, n_head, layer, h, i, j) != a) return at() + ": attn_allowed disagrees";
                if (a) want.push_back(j);
            }
            if (attn_allowed(s, n_head, layer, h, i, i + 1) || attn_allowed(s, n_head, layer, h, i, -1))
                return "attn_allowed outside 0 <= j <= i";
            attn_keys(s, n_head, layer, h, i, &keys);
            if (keys != want) return "head " + std::to_string(h) + " query " + std::to_string(i) + ": attn_keys";
        }
    }
    return "";
}

}  // namespace

TEST_CASE("layouts expand to exactly the paper's sets", "[layout]") {
    struct Geometry {
        int stride, summary;
    };
    const Geometry geometries[] = {{16, 4}, {48, 16}, {128, 32}};
    int checked = 0;
    for (Pattern pat : {Pattern::dense, Pattern::local, Pattern::strided, Pattern::fixed})
        for (HeadMode mode : {HeadMode::interleaved, HeadMode::merged, HeadMode::multihead})
            for (int block : {32, 64, 128})
                for (Geometry g : geometries) {
                    AttnSpec s{pat, mode, g.stride, g.summary, block};
                    std::set<int> lengths{1, 7, block - 3, block, 3 * block + 7, std::min(2 * g.stride + 9, 400)};
                    for (int T : lengths)
                        for (int n_head : {1, 2, 4, 8}) {
                            if (mode == HeadMode::multihead && n_head < 2 &&
                                (pat == Pattern::fixed || pat == Pattern::strided))
                                continue;
                            // Keeps the suite fast: long sequences with 4 heads (every summary sub-block here).
                            if (T > block && n_head != 4) continue;
                            for (int layer : {0, 1}) {
                                INFO(describe(s, T, n_head, layer));
                                REQUIRE(check_layer(s, T, n_head, layer) == "");
                                checked++;
                            }
                        }
                }
    CHECK(checked > 2000);
}

TEST_CASE("layouts repeat every layout_period layers", "[layout]") {
    // What lets the engines build one layout for every layer (two in interleaved mode).
    auto same = [](const LayerLayout& a, const LayerLayout& b) {
        if (a.heads.size() != b.heads.size()) return false;
        for (size_t h = 0; h < a.heads.size(); h++) {
            const auto &pa = a.heads[h].parts, &pb = b.heads[h].parts;
            if (pa.size() != pb.size()) return false;
            for (size_t k = 0; k < pa.size(); k++)
                if (pa[k].order != pb[k].order || pa[k].row_ptr != pb[k].row_ptr || pa[k].col != pb[k].col ||
                    pa[k].mask != pb[k].mask || pa[k].masks != pb[k].masks)
                    return false;
        }
        return true;
    };
    for (Pattern pat : {Pattern::dense, Pattern::local, Pattern::strided, Pattern::fixed})
        for (HeadMode mode : {HeadMode::interleaved, HeadMode::merged, HeadMode::multihead}) {
            AttnSpec s{pat, mode, 48, 16, 64};
            INFO(pattern_name(pat) << " " << head_mode_name(mode));
            const int period = layout_period(s);
            CHECK(period ==
                  ((pat == Pattern::strided || pat == Pattern::fixed) && mode == HeadMode::interleaved ? 2 : 1));
            const LayerLayout l0 = layout_build(s, 500, 4, 0);
            CHECK(same(layout_build(s, 500, 4, period), l0));
            CHECK(same(layout_build(s, 500, 4, 1), l0) == (period == 1));
        }
}

TEST_CASE("the strided column runs in transposed order as dense blocks", "[layout]") {
    // 4096 positions, l = 64: 64 columns of 64 = two blocks of 32 each; per column two diagonal
    // blocks (one causal mask shared by all) and one full block. In sequence order it would take
    // ~nblk^2/2 = 8,000 blocks.
    AttnSpec s{Pattern::strided, HeadMode::interleaved, 64, 32, 32};
    LayerLayout lay = layout_build(s, 4096, 1, 1);
    REQUIRE(lay.heads[0].parts.size() == 1);
    const AttnComponent& p = lay.heads[0].parts[0];
    CHECK(p.order.size() == 4096);
    CHECK(p.order[1] == 64);
    CHECK(p.order[64] == 1);
    CHECK(p.col.size() == 192);
    CHECK(p.masks.size() == 1);
    CHECK(std::count(p.mask.begin(), p.mask.end(), -1) == 64);
}

TEST_CASE("layout_build is proportional to the stored blocks at T = 2^20", "[layout]") {
    // Merged strided, l = 1024, block 64. The window: query block qb sees blocks qb-16..qb. The rest of
    // the column (k >= 2): 1024 columns of 1024 = 16 blocks each, so 16 * 17 / 2 blocks per column.
    AttnSpec s{Pattern::strided, HeadMode::merged, 1024, 32, 64};
    const int T = 1 << 20;
    LayerLayout lay = layout_build(s, T, 1, 0);
    REQUIRE(lay.heads[0].parts.size() == 2);
    const int nblk = T / 64;
    size_t window = 0;
    for (int qb = 0; qb < nblk; qb++) window += size_t(std::min(qb, 16) + 1);
    CHECK(lay.heads[0].parts[0].col.size() == window);
    CHECK(lay.heads[0].parts[1].col.size() == size_t(1024 * 16 * 17 / 2));
}

TEST_CASE("attn_spec_check explains what is wrong", "[layout]") {
    AttnSpec s;  // fixed, merged, l 128, c 32, block 64
    CHECK(attn_spec_check(s, 12288, 8) == "");
    s.stride = 100;
    CHECK(attn_spec_check(s, 256, 8) == "summary 32 does not divide the stride 100");
    s.summary = 20;
    CHECK(attn_spec_check(s, 256, 8) == "stride 100 does not divide the context 256");
    s = AttnSpec{};
    s.summary = 48;
    CHECK(attn_spec_check(s, 256, 8) == "summary 48 does not divide the stride 128");
    s = AttnSpec{};
    s.block = 48;
    CHECK(attn_spec_check(s, 256, 8) == "block must be 32, 64 or 128");
    CHECK_THROWS_AS(layout_build(s, 256, 8, 0), Error);
    s = AttnSpec{};
    s.mode = HeadMode::multihead;
    CHECK(attn_spec_check(s, 256, 1) != "");
    CHECK(attn_spec_check(s, 256, 2) == "");
    s = AttnSpec{Pattern::dense, HeadMode::merged, 100, 48, 64};  // dense uses neither stride nor summary
    CHECK(attn_spec_check(s, 256, 1) == "");
    s = AttnSpec{Pattern::local, HeadMode::merged, 100, 48, 64};  // a window needs no period
    CHECK(attn_spec_check(s, 256, 1) == "");
    CHECK(attn_spec_check(AttnSpec{}, 0, 8) != "");
    CHECK_THROWS_AS(layout_build(AttnSpec{}, 0, 8, 0), Error);
}

TEST_CASE("pattern and head mode names round-trip", "[layout]") {
    for (Pattern p : {Pattern::dense, Pattern::local, Pattern::fixed, Pattern::strided}) {
        Pattern back = Pattern::dense;
        CHECK(pattern_from_name(pattern_name(p), &back));
        CHECK(back == p);
    }
    for (HeadMode m : {HeadMode::interleaved, HeadMode::merged, HeadMode::multihead}) {
        HeadMode back = HeadMode::merged;
        CHECK(head_mode_from_name(head_mode_name(m), &back));
        CHECK(back == m);
    }
    Pattern p;
    HeadMode m;
    CHECK_FALSE(pattern_from_name("sparse", &p));
    CHECK_FALSE(head_mode_from_name("Merged", &m));
    CHECK(std::string(pattern_name(Pattern::strided)) == "strided");
    CHECK(std::string(head_mode_name(HeadMode::multihead)) == "multihead");
}
