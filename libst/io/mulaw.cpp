// mu-law and linear 8-bit codes of samples in [-1, 1].
#include "io/mulaw.h"

#include <algorithm>
#include <cmath>

namespace st {

namespace {

constexpr float kMu = 255.0f;
const float kLogOnePlusMu = std::log1p(kMu);  // ln 256

// Into [-1, 1]; NaN (a floating-point file may hold one) is taken as silence.
float clamp_sample(float x) { return std::isnan(x) ? 0.0f : std::clamp(x, -1.0f, 1.0f); }

}  // namespace

uint8_t mulaw_encode(float x) {
    x = clamp_sample(x);
    const float y = std::copysign(std::log1p(kMu * std::fabs(x)) / kLogOnePlusMu, x);
    return uint8_t(std::lround((y + 1.0f) * 127.5f));
}

float mulaw_decode(uint8_t code) {
    const float y = float(2 * code - 255) / 255.0f;  // code / 127.5 - 1, and exactly -y for 255 - code
    return std::copysign(std::expm1(std::fabs(y) * kLogOnePlusMu) / kMu, y);
}

uint8_t linear_encode(float x) { return uint8_t(std::min(std::lround(128.0f + 128.0f * clamp_sample(x)), 255L)); }

float linear_decode(uint8_t code) { return (float(code) - 128.0f) / 128.0f; }

}  // namespace st
