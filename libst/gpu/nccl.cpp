// NCCL through dlopen (parallel/nccl.h): the few entry points st uses, resolved once.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "error.h"
#include "gpu/buffer.h"
#include "gpu/device.h"
#include "kernels/check.h"
#include "parallel/nccl.h"

namespace st {

namespace {

struct Nccl {
    decltype(&ncclGetUniqueId) get_unique_id;
    decltype(&ncclCommInitRank) init_rank;
    decltype(&ncclAllReduce) all_reduce;
    decltype(&ncclReduceScatter) reduce_scatter;
    decltype(&ncclAllGather) all_gather;
    decltype(&ncclCommDestroy) destroy;
    decltype(&ncclGetErrorString) error_string;
};

const Nccl& nccl() {
    static const Nccl lib = [] {
        void* h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
        if (!h) h = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
        if (!h)
            fail(std::string("several GPUs need NCCL, and libnccl.so.2 cannot be loaded: ") + dlerror() +
                 " (install NCCL, e.g. libnccl2)");
        auto sym = [&](const char* name) {
            void* p = dlsym(h, name);
            if (!p) fail(std::string("NCCL: ") + name + " is missing from libnccl.so.2");
            return p;
        };
        Nccl n;
        n.get_unique_id = reinterpret_cast<decltype(n.get_unique_id)>(sym("ncclGetUniqueId"));
        n.init_rank = reinterpret_cast<decltype(n.init_rank)>(sym("ncclCommInitRank"));
        n.all_reduce = reinterpret_cast<decltype(n.all_reduce)>(sym("ncclAllReduce"));
        n.reduce_scatter = reinterpret_cast<decltype(n.reduce_scatter)>(sym("ncclReduceScatter"));
        n.all_gather = reinterpret_cast<decltype(n.all_gather)>(sym("ncclAllGather"));
        n.destroy = reinterpret_cast<decltype(n.destroy)>(sym("ncclCommDestroy"));
        n.error_string = reinterpret_cast<decltype(n.error_string)>(sym("ncclGetErrorString"));
        return n;
    }();
    return lib;
}

void check(ncclResult_t r, const char* what) {
    if (r != ncclSuccess) fail(std::string("NCCL ") + what + ": " + nccl().error_string(r));
}

class NcclJob final : public NcclComm {
   public:
    NcclJob(const std::vector<uint8_t>& id, int rank, int world) : rank_(rank), world_(world) {
        ncclUniqueId u;
        if (id.size() != sizeof u)
            fail("NCCL: the job id from rank 0 has " + std::to_string(id.size()) + " bytes, not " +
                 std::to_string(sizeof u));
        std::memcpy(&u, id.data(), sizeof u);
        check(nccl().init_rank(&comm_, world, u, rank), "init");
        CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
    }
    ~NcclJob() override {
        cudaStreamDestroy(s_);
        nccl().destroy(comm_);
    }
    int rank() const override { return rank_; }
    int world() const override { return world_; }
    void allreduce_sum(float* x, size_t n) override {  // host memory: staged through the device
        if (stage_.n < n) stage_ = gpu::Buf<float>(n);
        CUDA_CHECK(cudaMemcpyAsync(stage_.p, x, n * sizeof(float), cudaMemcpyHostToDevice, s_));
        allreduce_sum_device(stage_.p, n, s_);
        CUDA_CHECK(cudaMemcpyAsync(x, stage_.p, n * sizeof(float), cudaMemcpyDeviceToHost, s_));
        CUDA_CHECK(cudaStreamSynchronize(s_));
    }
    void allreduce_sum_device(float* x, size_t n, void* stream) override {
        check(nccl().all_reduce(x, x, n, ncclFloat32, ncclSum, comm_, static_cast<cudaStream_t>(stream)), "all-reduce");
    }
    void allreduce_sum_device(double* x, size_t n, void* stream) override {
        check(nccl().all_reduce(x, x, n, ncclFloat64, ncclSum, comm_, static_cast<cudaStream_t>(stream)), "all-reduce");
    }
    void reduce_scatter_sum_device(float* x, size_t part, void* stream) override {
        float* mine = x + size_t(rank_) * part;  // NCCL's in-place form: the output is the rank's part of the input
        check(nccl().reduce_scatter(x, mine, part, ncclFloat32, ncclSum, comm_, static_cast<cudaStream_t>(stream)),
              "reduce-scatter");
    }
    void all_gather_device(float* x, size_t part, void* stream) override {
        const float* mine = x + size_t(rank_) * part;
        check(nccl().all_gather(mine, x, part, ncclFloat32, comm_, static_cast<cudaStream_t>(stream)), "all-gather");
    }

   private:
    int rank_, world_;
    ncclComm_t comm_ = nullptr;
    cudaStream_t s_ = nullptr;
    gpu::Buf<float> stage_;
};

}  // namespace

std::vector<uint8_t> nccl_job_id() {
    ncclUniqueId u;
    check(nccl().get_unique_id(&u), "unique id");
    return std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(&u), reinterpret_cast<const uint8_t*>(&u) + sizeof u);
}

std::unique_ptr<NcclComm> make_nccl_comm(const std::vector<uint8_t>& id, int rank, int world, int device) {
    // NVLink multicast (NVLS) stays off unless asked for: on shared hosts it can take GPUs out of service.
    setenv("NCCL_NVLS_ENABLE", "0", 0);
    gpu::select_device(device);
    return std::make_unique<NcclJob>(id, rank, world);
}

}  // namespace st
