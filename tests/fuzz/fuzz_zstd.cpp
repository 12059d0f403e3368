// Data files ending in .zst, read as st-train and st-eval read them: any number of frames, with or
// without a content size, never trusting a claimed size.
#include "fuzz_input.h"
#include "error.h"
#include "io/file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        st::read_file(fuzz_input_file(data, size, ".zst"), size_t(256) << 20);
    } catch (const st::Error&) {
    }
    return 0;
}
