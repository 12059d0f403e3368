// Attention patterns (Child et al. 2019, section 4) and the per-head block layouts the kernels walk.
// A pattern is defined twice: element by element (attn_allowed, attn_keys: the paper's sets, used by
// incremental decoding and as the truth in tests) and as block layouts (layout_build: what the CPU
// and GPU kernels run). Both must give the same set for every query.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace st {

enum class Pattern { dense, local, fixed, strided };
enum class HeadMode { interleaved, merged, multihead };

const char* pattern_name(Pattern p);
bool pattern_from_name(const std::string& s, Pattern* out);
const char* head_mode_name(HeadMode m);
bool head_mode_from_name(const std::string& s, HeadMode* out);

struct AttnSpec {
    Pattern pattern = Pattern::fixed;
    HeadMode mode = HeadMode::merged;
    int stride = 128;  // l
    int summary = 32;  // c (fixed only)
    int block = 64;    // 32, 64 or 128
};

// "" when the spec is usable for context n_ctx with n_head heads, else a one-line reason.
std::string attn_spec_check(const AttnSpec& spec, int n_ctx, int n_head);

// Which of the two factorized parts (the paper: A1 the local part, A2 the strided or summary part) a
// layer and head use: both when merged, by layer parity when interleaved, by head parity in multihead.
struct Uses {
    bool a1, a2;
};
Uses attn_uses(const AttnSpec& spec, int layer, int head);
// Fixed A2 of a head: the key positions j with j mod l in [lo, hi), a different length-c sub-block per head.
struct Summary {
    int64_t lo, hi;
};
Summary attn_summary(const AttnSpec& spec, int head);

// Does query i attend to key j in this layer and head? Always false for j > i or j < 0.
bool attn_allowed(const AttnSpec& spec, int n_head, int layer, int head, int64_t i, int64_t j);

// The sorted keys query i attends to (incremental decoding). Cost O(|set|), not O(i).
void attn_keys(const AttnSpec& spec, int n_head, int layer, int head, int64_t i, std::vector<int64_t>* out);

// One component of a head: a block-sparse layout over the sequence taken in some order. Rows and
// keys are positions in that order (t), order[t] the sequence position. Only pairs inside the
// sequence (t < T) mean anything: a block of the last, partial block row or column is "full" when
// every such pair is allowed, and kernels clip to T.
struct AttnComponent {
    std::vector<int32_t> order;    // order[t] = sequence position of row t in this component; empty = identity
    int nblk = 0;                  // ceil(T / block)
    std::vector<int32_t> row_ptr;  // CSR by query block: entries row_ptr[qb] .. row_ptr[qb+1]-1
    std::vector<int32_t> col;      // key block of each entry (ascending within a query block, <= qb)
    std::vector<int32_t> mask;     // per entry: -1 = every (q, k) pair of the block is allowed, else index into masks
    std::vector<int32_t> col_ptr, row_of,
        entry_of;  // the same entries by key block, query blocks ascending (for the backward)
    std::vector<std::vector<uint64_t>>
        masks;  // block*block bits, bit (r*block + c): query row r may see key c; deduplicated
};
// Fills col_ptr, row_of and entry_of (the entries by key block) from nblk, row_ptr and col.
void component_index_by_key(AttnComponent* c);

struct HeadLayout {
    std::vector<AttnComponent> parts;
};  // disjoint key sets whose union is the head's set
struct LayerLayout {
    int T = 0, block = 0;
    std::vector<HeadLayout> heads;
};

// The layout of one layer for sequence length T (1 <= T; a prefix of the context is fine). Cost is
// proportional to the stored blocks, never T^2 candidates. Throws st::Error when the spec is unusable.
LayerLayout layout_build(const AttnSpec& spec, int T, int n_head, int layer);
// How many layers apart the layouts repeat: 2 where layers alternate the factorized parts
// (interleaved mode), else 1 (every layer's layout is layer 0's).
int layout_period(const AttnSpec& spec);

// Context parallelism: the positions [lo, hi) of a sequence of seq that process rank of world runs,
// consecutive parts whose lengths differ by at most one.
struct SequencePart {
    int lo, hi;
};
SequencePart sequence_part(int seq, int rank, int world);
// With the sequence of lay.T split into world such parts: the positions whose keys and values a
// query of another part attends to in some head of the layout, ascending. What the processes must
// exchange, and no more: the fixed pattern's summaries and the chunks a part's edge cuts, the
// strided pattern's columns. Costs a pass over the layout's allowed pairs.
std::vector<int32_t> shared_positions(const LayerLayout& lay, int world);
// The same split: how many (process, position of another part) pairs there are whose position a
// query of that process attends to. The floor of what the processes must exchange in a layer: each
// such row's key and value sent once to its reader, and in the backward their gradients once back.
int64_t foreign_reads(const LayerLayout& lay, int world);

}  // namespace st
