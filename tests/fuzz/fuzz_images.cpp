// libFuzzer target: st-image's reader (images_from_bytes) on any bytes. PNG, JPEG, BMP and PGM/PPM
// through stb_image, IDX raw and gzip, and CIFAR-10, told apart by content. An st::Error is a clean
// refusal; a crash, a sanitizer report, a leak or an allocation past -malloc_limit_mb is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "error.h"
#include "io/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        std::string format;
        for (const st::Image& im : st::images_from_bytes(std::vector<uint8_t>(data, data + size), "input", &format))
            if (im.h < 1 || im.w < 1 || im.px.size() != size_t(im.h) * size_t(im.w) * size_t(im.c) || format.empty())
                __builtin_trap();
    } catch (const st::Error&) {}
    return 0;
}
