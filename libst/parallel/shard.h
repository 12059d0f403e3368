// How the work of one step is divided among the ranks of a job, so that any number of GPUs learns
// what one GPU learns: the examples of the global batch, and (with --shard-optimizer) the part of
// the parameter buffer whose optimizer state and update each rank owns.
#pragma once
#include <cstdint>

namespace st {

struct Range {
    int64_t begin = 0, end = 0;
    int64_t size() const { return end - begin; }
};

// Examples [begin, end) of a global batch of B that rank r of w computes: the first B % w ranks take
// one more. Every rank draws the same windows as one process would (the batch does not depend on w).
Range batch_share(int B, int rank, int world);

// The parameter buffer of n floats, padded to world * shard_size(n, world) (NCCL's reduce-scatter
// and all-gather need equal parts): rank r owns [r * size, (r + 1) * size) of it, each part a
// multiple of 64 floats (256 bytes: aligned for every kernel).
int64_t shard_size(int64_t n, int world);
Range shard_range(int64_t n, int rank, int world);  // the owned part, clipped to [0, n)

}  // namespace st
