// Choosing the GPU an engine or sampler runs on, with the one-line errors a user sees.
#pragma once
#include <string>

namespace st::gpu {

// Makes device `index` current; fails with a clear message where there is no GPU or no such index.
// Returns the device's name. Call it before creating anything on the device (cuBLASLt handles too).
std::string select_device(int index);

}  // namespace st::gpu
