// Model files as st-sample, st-eval and st-train --resume load them: the safetensors layer, then the
// config, the tensors against it, the optimizer state and the step.
#include <cmath>

#include "checkpoint.h"
#include "error.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        st::Checkpoint ck = st::checkpoint_load(fuzz_input_file(data, size, ".st"));
        for (float w : ck.model->w)
            if (!std::isfinite(w)) abort();  // the loader promises finite weights
    } catch (const st::Error&) {}
    return 0;
}
