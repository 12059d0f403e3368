// Data files ending in .zst, read as st-train and st-eval read them: any number of frames, with or
// without a content size, never trusting a claimed size.
#include "error.h"
#include "fuzz_input.h"
#include "io/file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        // A limit far below the programs' (the machine's memory) keeps each input fast: a few bytes of
        // zstd can describe megabytes, and the code paths are the same at any limit.
        st::read_file(fuzz_input_file(data, size, ".zst"), size_t(8) << 20);
    } catch (const st::Error&) {}
    return 0;
}
