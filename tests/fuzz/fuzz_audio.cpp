// libFuzzer target: st-audio's reader (sound_from_bytes: WAV, FLAC, OGG and the rest through
// libsndfile) on any bytes, then what st-audio encode does with a sound: resampling to 12 kHz and
// mu-law. An st::Error is a clean refusal; a crash, a sanitizer report, a leak or an allocation past
// -malloc_limit_mb is a bug.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "audio/audio.h"
#include "error.h"
#include "io/mulaw.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const st::Sound s = st::sound_from_bytes(std::vector<uint8_t>(data, data + size), "input");
        if (s.rate < st::kMinSoundRate || s.rate > st::kMaxSoundRate || s.channels < 1) __builtin_trap();
        // Resampling takes time in proportion to the sound: past a few seconds it only slows the search.
        if (s.samples.size() > (1u << 18)) return 0;
        const std::vector<float> y = st::resample(s.samples, s.rate, 12000);
        if (y.size() > s.samples.size() * 12000 / size_t(s.rate) + 17) __builtin_trap();
        std::vector<uint8_t> codes(y.size());
        for (size_t i = 0; i < y.size(); i++) codes[i] = st::mulaw_encode(y[i]);
    } catch (const st::Error&) {}
    return 0;
}
