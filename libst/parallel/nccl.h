// The GPUs' collectives: NCCL, opened at run time (dlopen of libnccl.so.2), so that a program that
// never runs on several GPUs neither needs nor loads it. Rank 0 makes the job's id; the rendezvous
// hands it to the others (parallel/rendezvous.h); then every rank joins the communicator on its GPU.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "parallel/comm.h"

namespace st {

// NCCL's unique id of a new job, as bytes (rank 0 only). Throws st::Error where NCCL is missing.
std::vector<uint8_t> nccl_job_id();

class NcclComm : public Comm {
   public:
    // Sums of device buffers, on `stream` (a cudaStream_t), without waiting for them.
    virtual void allreduce_sum_device(float* x, size_t n, void* stream) = 0;
    virtual void allreduce_sum_device(double* x, size_t n, void* stream) = 0;
    // ZeRO-1 (--shard-optimizer), in place on a buffer of world() * part floats: rank r's part
    // [r * part, (r + 1) * part) becomes the sum of every rank's; then every part goes to every rank.
    virtual void reduce_scatter_sum_device(float* x, size_t part, void* stream) = 0;
    virtual void all_gather_device(float* x, size_t part, void* stream) = 0;
};

// Joins the job of `id` as rank `rank` of `world` on CUDA device `device` (made the current one).
std::unique_ptr<NcclComm> make_nccl_comm(const std::vector<uint8_t>& id, int rank, int world, int device);

}  // namespace st
