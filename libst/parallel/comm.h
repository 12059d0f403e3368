// The collectives of data-parallel training between processes. On GPUs they are NCCL's; between CPU
// processes (st-train --gpus N --device cpu: the same job without GPUs, which is how the tests run
// it) they go over the rendezvous connections through rank 0, which adds in rank order: every rank
// gets the same bits, and the same bits on every run.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "parallel/rendezvous.h"

namespace st {

class Comm {
   public:
    virtual ~Comm() = default;
    virtual int rank() const = 0;
    virtual int world() const = 0;
    // x[0, n) = the sum over the ranks of their x[0, n) (host memory). Throws st::Error when a rank
    // went away, sent what it should not, or did not answer in time.
    virtual void allreduce_sum(float* x, size_t n) = 0;
    // Context parallelism's exchanges. x holds one segment a rank, in rank order (counts[r] values
    // for rank r). allgather: on entry this rank's segment holds its values; on return every
    // segment holds its owner's. add_to_owners: on entry x holds this rank's contribution to every
    // segment; on return this rank's segment holds the sum over the ranks (the others are left
    // undefined). Each returns how many values this rank contributed. These defaults go through
    // allreduce_sum, contributing all of x; the TCP collectives send only what the floor needs
    // (allgather its own segment, add_to_owners every segment but its own).
    virtual size_t allgather(float* x, std::span<const size_t> counts);
    virtual size_t add_to_owners(float* x, std::span<const size_t> counts);
};

// A rank waits at most env.collective_timeout_s (ST_COLLECTIVE_TIMEOUT) for another's answer, and
// at most kStopGraceS once a stop signal has reached it while it waits.
constexpr double kStopGraceS = 10;
std::unique_ptr<Comm> make_tcp_comm(const Rendezvous& rv);

// The job's ranks in consecutive groups of group_size (group g: ranks g * group_size ...): a Comm
// over the caller's group, rank and world counted inside it. Each allreduce_sum goes over the whole
// job, the group's array in its own slot of a buffer of every group's (zeros elsewhere, so exact):
// every rank must call it at the same time with the same n. Simple rather than economical, for CPU
// jobs (context parallelism within data parallelism).
std::unique_ptr<Comm> make_group_comm(Comm& job, int group_size);

// Each message of the CPU collectives is a header, then n floats. The header names the collective
// (the ranks count them alike) and n, both known to the receiver beforehand: a message that does
// not match is refused, and nothing is allocated from what a peer says.
constexpr size_t kMessageHeaderSize = 16;
std::array<uint8_t, kMessageHeaderSize> message_header(uint32_t collective, uint64_t n);
// Throws st::Error naming rank `from` unless `bytes` is the header of that collective with n floats.
void check_message_header(std::span<const uint8_t> bytes, uint32_t collective, uint64_t n, int from);

}  // namespace st
