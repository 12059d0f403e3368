// A build without CUDA: the GPU engine's entry points say so.
#include "engine.h"
#include "error.h"
#include "parallel/nccl.h"
#include "sample.h"

namespace st {

int gpu_count() { return 0; }
bool gpu_available() { return false; }

std::unique_ptr<Engine> make_gpu_engine(Model<float>&, std::vector<float>&, std::vector<float>&, const GpuOptions&) {
    fail("this build of st has no CUDA support (rebuild with nvcc installed, or use --device cpu)");
}

std::unique_ptr<Sampler> make_gpu_sampler(const Model<float>&, int, int) {
    fail("this build of st has no CUDA support (rebuild with nvcc installed, or use --device cpu)");
}

std::vector<uint8_t> nccl_job_id() {
    fail(
        "this build of st has no CUDA support: no training on several GPUs (--device cpu runs the job on CPU "
        "processes)");
}

std::unique_ptr<NcclComm> make_nccl_comm(const std::vector<uint8_t>&, int, int, int) {
    fail(
        "this build of st has no CUDA support: no training on several GPUs (--device cpu runs the job on CPU "
        "processes)");
}

}  // namespace st
