// Comm's exchanges for context parallelism, on top of allreduce_sum (parallel/comm.h).
#include <algorithm>
#include <numeric>

#include "parallel/comm.h"

namespace st {

size_t Comm::allgather(float* x, std::span<const size_t> counts) {
    const size_t n = std::accumulate(counts.begin(), counts.end(), size_t(0));
    const size_t lo = std::accumulate(counts.begin(), counts.begin() + rank(), size_t(0));
    std::fill(x, x + lo, 0.0f);  // every other segment is its owner's alone in the sum
    std::fill(x + lo + counts[size_t(rank())], x + n, 0.0f);
    allreduce_sum(x, n);
    return n;
}

size_t Comm::add_to_owners(float* x, std::span<const size_t> counts) {
    const size_t n = std::accumulate(counts.begin(), counts.end(), size_t(0));
    allreduce_sum(x, n);
    return n;
}

}  // namespace st
