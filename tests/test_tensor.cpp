// Tensors: dtypes, sizes, names and conversions (bf16 rounds to nearest even).
#include <catch2/catch.hpp>
#include <cmath>

#include "tensor.h"

using namespace st;

TEST_CASE("dtype names and sizes", "[tensor]") {
    for (DType t : {DType::f64, DType::f32, DType::bf16, DType::i32, DType::u8}) {
        DType back;
        REQUIRE(dtype_from_name(dtype_name(t), &back));
        CHECK(back == t);
    }
    CHECK(dtype_size(DType::bf16) == 2);
    DType x;
    CHECK_FALSE(dtype_from_name("F16", &x));
}

TEST_CASE("bf16 rounds to nearest even and keeps NaN and infinities", "[tensor]") {
    CHECK(bf16_to_f32(f32_to_bf16(1.0f)) == 1.0f);
    CHECK(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)) == 1.0f);               // a tie rounds to even (down)
    CHECK(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)) == 1.0f + 4.0f / 256);  // a tie rounds to even (up)
    CHECK(bf16_to_f32(f32_to_bf16(1.0f + 1.5f / 256)) == 1.0f + 2.0f / 256);
    CHECK(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
    CHECK(std::isinf(bf16_to_f32(f32_to_bf16(INFINITY))));
}

TEST_CASE("tensors convert between dtypes", "[tensor]") {
    Tensor a(DType::f64, {2, 3});
    CHECK(a.numel() == 6);
    CHECK(a.nbytes() == 48);
    CHECK(a.shape_str() == "[2, 3]");
    for (int i = 0; i < 6; i++) a.data<double>()[i] = i * 1.5;
    Tensor b = a.to(DType::f32), c = a.to(DType::bf16), d = a.to(DType::i32), e = a.to(DType::u8);
    for (int i = 0; i < 6; i++) {
        CHECK(b.data<float>()[i] == float(i * 1.5));
        CHECK(bf16_to_f32(c.data<uint16_t>()[i]) == float(i * 1.5));  // exact in bf16
        CHECK(d.data<int32_t>()[i] == int32_t(i * 1.5));
        CHECK(e.data<uint8_t>()[i] == uint8_t(i * 1.5));
    }
    CHECK(reinterpret_cast<uintptr_t>(a.raw()) % 64 == 0);
}
