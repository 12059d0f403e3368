// The collectives of data-parallel training between processes. On GPUs they are NCCL's; between CPU
// processes (st-train --gpus N --device cpu: the same job without GPUs, which is how the tests run
// it) they go over the rendezvous connections through rank 0, which adds in rank order: every rank
// gets the same bits, and the same bits on every run.
#pragma once
#include <cstddef>
#include <memory>

#include "dist/rendezvous.h"

namespace st {

class Comm {
   public:
    virtual ~Comm() = default;
    virtual int rank() const = 0;
    virtual int world() const = 0;
    // x[0, n) = the sum over the ranks of their x[0, n) (host memory). Throws st::Error when a rank
    // went away.
    virtual void allreduce_sum(float* x, size_t n) = 0;
};

std::unique_ptr<Comm> make_tcp_comm(const Rendezvous& rv);

}  // namespace st
