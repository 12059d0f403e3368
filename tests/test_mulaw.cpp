// Tests for libst/io/mulaw: the 256 mu-law and linear codes round trip exactly, the curve's ends,
// symmetry and order, clamping. test_audio.cpp has the signal-to-noise ratio on music-like sound.
#include <catch2/catch.hpp>
#include <cmath>

#include "io/mulaw.h"

TEST_CASE("mulaw: every code decodes to a sample that encodes back to it", "[mulaw]") {
    for (int k = 0; k < 256; k++) {
        INFO("code " << k);
        CHECK(st::mulaw_encode(st::mulaw_decode(uint8_t(k))) == k);
        CHECK(st::linear_encode(st::linear_decode(uint8_t(k))) == k);
    }
}

TEST_CASE("mulaw: ends, symmetry, order, and the formula", "[mulaw]") {
    CHECK(st::mulaw_decode(0) == -1.0f);
    CHECK(st::mulaw_decode(255) == Approx(1.0f).epsilon(1e-6));
    for (int k = 0; k < 256; k++) {
        INFO("code " << k);
        CHECK(st::mulaw_decode(uint8_t(255 - k)) == -st::mulaw_decode(uint8_t(k)));
        if (k > 0) CHECK(st::mulaw_decode(uint8_t(k)) > st::mulaw_decode(uint8_t(k - 1)));
        // y = k / 127.5 - 1, x = sign(y) (256^|y| - 1) / 255, in double.
        const double y = k / 127.5 - 1;
        CHECK(st::mulaw_decode(uint8_t(k)) ==
              Approx(std::copysign(std::pow(256.0, std::fabs(y)) - 1, y) / 255).epsilon(1e-5));
    }
    CHECK(st::mulaw_encode(0.0f) == 128);
    CHECK(st::mulaw_encode(-1e-6f) == 127);
    CHECK(st::mulaw_encode(0.5f) == 239);  // 127.5 * (1 + ln(128.5) / ln(256)) = 238.6
}

TEST_CASE("mulaw and linear: out-of-range samples clamp, NaN is silence", "[mulaw]") {
    for (float x : {1.0f, 1.5f, 1e30f, INFINITY}) {
        CHECK(st::mulaw_encode(x) == 255);
        CHECK(st::mulaw_encode(-x) == 0);
        CHECK(st::linear_encode(x) == 255);
        CHECK(st::linear_encode(-x) == 0);
    }
    CHECK(st::mulaw_encode(NAN) == 128);
    CHECK(st::linear_encode(NAN) == 128);
    CHECK(st::linear_encode(0.0f) == 128);
    CHECK(st::linear_encode(0.5f) == 192);
    CHECK(st::linear_decode(0) == -1.0f);
}
