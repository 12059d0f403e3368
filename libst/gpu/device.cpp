// Device selection for the GPU engine and sampler.
#include "gpu/device.h"

#include <cuda_runtime.h>

#include "engine.h"
#include "error.h"
#include "kernels/check.h"

namespace st {

int gpu_count() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

bool gpu_available() { return gpu_count() > 0; }

namespace gpu {

std::string select_device(int index) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
        fail("--device cuda: no CUDA GPU found (use --device cpu)");
    if (index >= count)
        fail("--device cuda:" + std::to_string(index) + ": there " +
             (count == 1 ? "is only 1 GPU" : "are only " + std::to_string(count) + " GPUs"));
    CUDA_CHECK(cudaSetDevice(index));
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
    return prop.name;
}

}  // namespace gpu
}  // namespace st
