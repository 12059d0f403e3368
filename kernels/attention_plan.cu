// Uploading a LayerLayout for the GPU kernels: every index array of every distinct component goes
// into one device allocation, with the launch schedules and the transposed masks the backward reads.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>

#include "kernels/attention.h"
#include "kernels/check.h"

namespace st::gpu {

namespace {

// Block indices ordered by descending work (ties: ascending index): the longest rows start first,
// so a launch does not end on one long straggler.
std::vector<int32_t> schedule(const std::vector<int32_t>& ptr) {
    std::vector<int32_t> s(ptr.size() - 1);
    std::iota(s.begin(), s.end(), 0);
    std::stable_sort(s.begin(), s.end(),
                     [&](int32_t a, int32_t b) { return ptr[a + 1] - ptr[a] > ptr[b + 1] - ptr[b]; });
    return s;
}

std::vector<uint64_t> transpose_masks(const std::vector<std::vector<uint64_t>>& masks, int bs) {
    std::vector<uint64_t> out(masks.size() * size_t(bs) * bs / 64, 0);
    for (size_t m = 0; m < masks.size(); m++) {
        uint64_t* o = out.data() + m * size_t(bs) * bs / 64;
        for (int r = 0; r < bs; r++)
            for (int c = 0; c < bs; c++) {
                int bit = r * bs + c, tbit = c * bs + r;
                if ((masks[m][size_t(bit) >> 6] >> (bit & 63)) & 1) o[tbit >> 6] |= uint64_t(1) << (tbit & 63);
            }
    }
    return out;
}

}  // namespace

std::string attention_gpu_check(int block, int C, int NH) {
    if (block != 64 && block != 128)
        return "the GPU attention needs --block 64 or 128 (not " + std::to_string(block) + ")";
    if (NH < 1 || C % NH != 0) return "n_head must divide d_model";
    int D = C / NH;
    if (D != 32 && D != 64 && D != 128)
        return "the GPU attention needs a head size (d_model / n_head) of 32, 64 or 128, not " + std::to_string(D);
    return "";
}

namespace {

// Offsets into the blob of a component's arrays (-1: absent), in AttnPartDev's order.
struct Offs {
    int64_t o[11];
};

// Whether two components hold the same blocks (the by-key index follows from these).
bool same_component(const AttnComponent& a, const AttnComponent& b) {
    return a.nblk == b.nblk && a.order == b.order && a.row_ptr == b.row_ptr && a.col == b.col && a.mask == b.mask &&
           a.masks == b.masks;
}

// The host image of a plan's one allocation: 8-byte aligned pieces, recorded as offsets.
std::vector<uint64_t> plan_blob(const LayerLayout& lay, int nblk, int slots, std::vector<Offs>* offs) {
    const int n_head = int(lay.heads.size()), block = lay.block;
    std::vector<uint64_t> blob;
    auto put32 = [&](const std::vector<int32_t>& v) -> int64_t {
        if (v.empty()) return -1;
        int64_t off = int64_t(blob.size()) * 8;
        blob.resize(blob.size() + (v.size() + 1) / 2, 0);
        std::memcpy(reinterpret_cast<char*>(blob.data()) + off, v.data(), v.size() * 4);
        return off;
    };
    auto put64 = [&](const std::vector<uint64_t>& v) -> int64_t {
        if (v.empty()) return -1;
        int64_t off = int64_t(blob.size()) * 8;
        blob.insert(blob.end(), v.begin(), v.end());
        return off;
    };
    offs->assign(size_t(slots) * n_head, Offs{});
    for (auto& o : *offs) std::fill(o.o, o.o + 11, int64_t(-1));
    std::vector<std::pair<const AttnComponent*, const Offs*>> put;  // each distinct component once
    for (int h = 0; h < n_head; h++)
        for (size_t k = 0; k < lay.heads[h].parts.size(); k++) {
            const AttnComponent& c = lay.heads[h].parts[k];
            if (c.nblk != nblk)
                fail("attention plan: a component of " + std::to_string(c.nblk) + " blocks, expected " +
                     std::to_string(nblk));
            Offs& o = (*offs)[k * n_head + h];
            // Heads of one rule have equal components (layout_build): they share one copy on the card.
            auto same =
                std::find_if(put.begin(), put.end(), [&](const auto& p) { return same_component(*p.first, c); });
            if (same != put.end()) {
                o = *same->second;
                continue;
            }
            put.push_back({&c, &o});
            std::vector<uint64_t> masks;
            for (const auto& m : c.masks) masks.insert(masks.end(), m.begin(), m.end());
            o.o[0] = put32(c.order);
            o.o[1] = put32(c.row_ptr);
            o.o[2] = put32(c.col);
            o.o[3] = put32(c.mask);
            o.o[4] = put32(c.col_ptr);
            o.o[5] = put32(c.row_of);
            std::vector<int32_t> mask_t(c.entry_of.size());  // one load in the dK/dV walk, not two
            for (size_t x = 0; x < mask_t.size(); x++) mask_t[x] = c.mask[size_t(c.entry_of[x])];
            o.o[6] = put32(mask_t);
            o.o[7] = put32(schedule(c.row_ptr));
            o.o[8] = put32(schedule(c.col_ptr));
            o.o[9] = put64(masks);
            o.o[10] = put64(transpose_masks(c.masks, block));
        }
    if (blob.empty()) blob.push_back(0);
    return blob;
}

int plan_slots(const LayerLayout& lay) {
    int slots = 0;
    for (const auto& h : lay.heads) slots = std::max(slots, int(h.parts.size()));
    return slots;
}

}  // namespace

size_t AttnPlan::bytes_for(const LayerLayout& lay) {
    std::vector<Offs> offs;
    const int slots = plan_slots(lay);
    return plan_blob(lay, (lay.T + lay.block - 1) / lay.block, slots, &offs).size() * 8 +
           offs.size() * sizeof(AttnPartDev);
}

AttnPlan::AttnPlan(const LayerLayout& lay) : T(lay.T), block(lay.block), n_head(int(lay.heads.size())) {
    nblk = (T + block - 1) / block;
    slots = plan_slots(lay);
    std::vector<Offs> offs;
    const std::vector<uint64_t> blob = plan_blob(lay, nblk, slots, &offs);
    CUDA_CHECK(cudaMalloc(&ints_, blob.size() * 8));
    CUDA_CHECK(cudaMemcpy(ints_, blob.data(), blob.size() * 8, cudaMemcpyHostToDevice));
    std::vector<AttnPartDev> parts(offs.size());
    char* base = static_cast<char*>(ints_);
    for (size_t i = 0; i < offs.size(); i++) {
        auto p32 = [&](int k) {
            return offs[i].o[k] < 0 ? nullptr : reinterpret_cast<const int32_t*>(base + offs[i].o[k]);
        };
        auto p64 = [&](int k) {
            return offs[i].o[k] < 0 ? nullptr : reinterpret_cast<const uint64_t*>(base + offs[i].o[k]);
        };
        parts[i] = {p32(0), p32(1), p32(2), p32(3), p32(4), p32(5), p32(6), p32(7), p32(8), p64(9), p64(10)};
    }
    CUDA_CHECK(cudaMalloc(&parts_, parts.size() * sizeof(AttnPartDev)));
    CUDA_CHECK(cudaMemcpy(parts_, parts.data(), parts.size() * sizeof(AttnPartDev), cudaMemcpyHostToDevice));
    bytes = blob.size() * 8 + parts.size() * sizeof(AttnPartDev);
}

void AttnPlan::release() {
    if (ints_) cudaFree(ints_);
    if (parts_) cudaFree(parts_);
    ints_ = nullptr;
    parts_ = nullptr;
}

AttnPlan::~AttnPlan() { release(); }

AttnPlan::AttnPlan(AttnPlan&& o) noexcept { *this = std::move(o); }

AttnPlan& AttnPlan::operator=(AttnPlan&& o) noexcept {
    if (this != &o) {
        release();
        T = o.T, block = o.block, n_head = o.n_head, nblk = o.nblk, slots = o.slots, bytes = o.bytes;
        ints_ = o.ints_, parts_ = o.parts_;
        o.ints_ = nullptr, o.parts_ = nullptr;
    }
    return *this;
}

}  // namespace st::gpu
