// The decoding cache's bookkeeping (kernels/decode.h), checked on the host (no GPU needed): for every
// pattern and mode, the keys each query reads are exactly attn_keys' set, in its order, and every
// slot read at step t still holds the key written there (no later key has overwritten it).
#include <catch2/catch.hpp>

#include <vector>

#include "kernels/decode.h"

using namespace st;

TEST_CASE("decoding reads exactly the pattern's keys from slots that still hold them", "[decode]") {
    for (Pattern p : {Pattern::dense, Pattern::local, Pattern::fixed, Pattern::strided})
        for (HeadMode mode : {HeadMode::interleaved, HeadMode::merged, HeadMode::multihead}) {
            AttnSpec spec;
            spec.pattern = p;
            spec.mode = mode;
            spec.stride = 16;
            spec.summary = 4;
            const int n_ctx = 96, NH = 4;
            for (int layer = 0; layer < 2; layer++)
                for (int h = 0; h < NH; h++) {
                    INFO(pattern_name(p) << " " << head_mode_name(mode) << " layer " << layer << " head " << h);
                    int slots = 0;
                    const gpu::DecodeHead hd = gpu::decode_head(spec, NH, layer, h, n_ctx, &slots);
                    if (p == Pattern::fixed &&
                        (mode == HeadMode::merged || (mode == HeadMode::interleaved && layer == 0) ||
                         (mode == HeadMode::multihead && h % 2 == 0)))
                        CHECK(slots < n_ctx);  // the fixed pattern's cache is smaller than the context
                    std::vector<int> holds(size_t(slots), -1);
                    std::vector<int64_t> want;
                    for (int t = 0; t < n_ctx; t++) {
                        int w[3];
                        const int nw = hd.write_slots(t, w);
                        for (int i = 0; i < nw; i++) {
                            REQUIRE(w[i] >= 0);
                            REQUIRE(w[i] < slots);
                            holds[size_t(w[i])] = t;
                        }
                        attn_keys(spec, NH, layer, h, t, &want);
                        const gpu::DecodeKeys ks(hd, t);
                        REQUIRE(ks.count() == int(want.size()));
                        for (int k = 0; k < ks.count(); k++) {
                            REQUIRE(ks.position(hd, t, k) == want[size_t(k)]);
                            const int s = ks.slot(hd, t, k);
                            REQUIRE(s >= 0);
                            REQUIRE(s < slots);
                            REQUIRE(holds[size_t(s)] == want[size_t(k)]);
                        }
                    }
                }
        }
}
