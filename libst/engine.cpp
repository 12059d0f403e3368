// make_engine: the engine --device names (libst/cpu/engine_cpu.cpp or libst/gpu/engine_gpu.cpp).
#include "engine.h"

namespace st {

std::unique_ptr<Engine> make_engine(const std::string& device, Model<float>& m, std::vector<float>& opt_m,
                                    std::vector<float>& opt_v) {
    if (device == "cpu") return make_cpu_engine(m, opt_m, opt_v);
    GpuOptions o;
    if (device.rfind("cuda:", 0) == 0) o.device = std::stoi(device.substr(5));
    return make_gpu_engine(m, opt_m, opt_v, o);
}

}  // namespace st
