#include "parallel/shard.h"

#include <algorithm>

namespace st {

Range batch_share(int B, int rank, int world) {
    const int base = B / world, extra = B % world;
    Range r;
    r.begin = int64_t(rank) * base + std::min(rank, extra);
    r.end = r.begin + base + (rank < extra ? 1 : 0);
    return r;
}

int64_t shard_size(int64_t n, int world) {
    constexpr int64_t kAlign = 64;
    const int64_t per = (n + world - 1) / world;
    return (per + kAlign - 1) / kAlign * kAlign;
}

Range shard_range(int64_t n, int rank, int world) {
    const int64_t size = shard_size(n, world);
    Range r;
    r.begin = std::min(n, int64_t(rank) * size);
    r.end = std::min(n, r.begin + size);
    return r;
}

}  // namespace st
