// Samples as bytes: mu-law companding (mu = 255) to 8 bits, the paper's audio format, and plain
// 8-bit linear samples to compare it with. Pure functions; the files and resampling are in
// libst/audio, apart from the library because they need libsndfile and libsoxr.
#pragma once
#include <cstdint>

namespace st {

// mu-law as WaveNet defines it (the paper says only "mu-law, 8 bits"), continuous rather than G.711's
// segments: y = sign(x) ln(1 + 255 |x|) / ln 256 for x in [-1, 1] (clamped; NaN is 0), rounded to
// the nearest of 256 equally spaced levels from -1 (code 0) to 1 (code 255). The codes rise with the
// sample, so bytes that are near are sounds that are near; silence lies between codes 127 and 128
// (+-0.000086), and a step is 1/5600 of full scale near silence, 1/23 near full scale.
uint8_t mulaw_encode(float x);
// The sample at the code's level: mulaw_encode(mulaw_decode(k)) == k for every k.
float mulaw_decode(uint8_t code);

// Linear 8-bit samples as 8-bit WAV files hold them: code = 128 + 128 x, rounded and clamped to
// 0..255; silence is 128.
uint8_t linear_encode(float x);
float linear_decode(uint8_t code);

}  // namespace st
