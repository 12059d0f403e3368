// Tensor storage, dtype names and conversions.
#include "tensor.h"

#include <cstdlib>
#include <new>

#include "error.h"

namespace st {

size_t dtype_size(DType t) {
    switch (t) {
        case DType::f64:
            return 8;
        case DType::f32:
            return 4;
        case DType::bf16:
            return 2;
        case DType::i32:
            return 4;
        case DType::u8:
            return 1;
    }
    return 0;
}

const char* dtype_name(DType t) {
    switch (t) {
        case DType::f64:
            return "F64";
        case DType::f32:
            return "F32";
        case DType::bf16:
            return "BF16";
        case DType::i32:
            return "I32";
        case DType::u8:
            return "U8";
    }
    return "?";
}

bool dtype_from_name(const std::string& s, DType* out) {
    for (DType t : {DType::f64, DType::f32, DType::bf16, DType::i32, DType::u8})
        if (s == dtype_name(t)) {
            *out = t;
            return true;
        }
    return false;
}

std::shared_ptr<std::byte> alloc_aligned(size_t nbytes) {
    size_t n = (nbytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, n ? n : 64);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, n ? n : 64);
    return std::shared_ptr<std::byte>(static_cast<std::byte*>(p), [](std::byte* q) { std::free(q); });
}

Tensor::Tensor(DType t, std::vector<int64_t> s) : dtype(t), shape(std::move(s)) { storage = alloc_aligned(nbytes()); }

int64_t Tensor::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

std::string Tensor::shape_str() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

static double load_as_f64(DType t, const void* p, int64_t i) {
    switch (t) {
        case DType::f64:
            return static_cast<const double*>(p)[i];
        case DType::f32:
            return static_cast<const float*>(p)[i];
        case DType::bf16:
            return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
        case DType::i32:
            return static_cast<const int32_t*>(p)[i];
        case DType::u8:
            return static_cast<const uint8_t*>(p)[i];
    }
    return 0;
}

static void store_from_f64(DType t, void* p, int64_t i, double v) {
    switch (t) {
        case DType::f64:
            static_cast<double*>(p)[i] = v;
            break;
        case DType::f32:
            static_cast<float*>(p)[i] = float(v);
            break;
        case DType::bf16:
            static_cast<uint16_t*>(p)[i] = f32_to_bf16(float(v));
            break;
        case DType::i32:
            static_cast<int32_t*>(p)[i] = int32_t(v);
            break;
        case DType::u8:
            static_cast<uint8_t*>(p)[i] = uint8_t(v);
            break;
    }
}

Tensor Tensor::to(DType t) const {
    Tensor out(t, shape);
    int64_t n = numel();
    for (int64_t i = 0; i < n; i++) store_from_f64(t, out.raw(), i, load_as_f64(dtype, raw(), i));
    return out;
}

}  // namespace st
