// Safetensors files as any program reads them: header length, JSON header (nesting bounded), the
// Rust crate's layout rules, the checksum.
#include "error.h"
#include "fuzz_input.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        st::SafeTensors f = st::safetensors_load(fuzz_input_file(data, size, ".safetensors"));
        for (const auto& e : f.entries)
            if (f.find(e.name) != &e || e.offset + e.nbytes > f.bytes.size()) abort();
    } catch (const st::Error&) {}
    return 0;
}
