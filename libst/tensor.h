// Tensor: a typed, shaped array in host memory, as a model file holds one (io/safetensors.h reads and
// writes them; checkpoint.cpp converts them to the model's float32). The engines do not use it: their
// ops take typed pointers and sizes over one parameter buffer (model.h), as llm.c's do.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace st {

enum class DType : uint8_t { f64, f32, bf16, i32, u8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // safetensors spelling: "F64", "F32", "BF16", "I32", "U8"
bool dtype_from_name(const std::string& s, DType* out);

// bf16 is the top half of an f32; rounding to nearest even, NaN kept NaN.
inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return uint16_t(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
    uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

struct Tensor {
    DType dtype = DType::f32;
    std::vector<int64_t> shape;
    std::shared_ptr<std::byte> storage;  // 64-byte aligned
    size_t offset = 0;                   // bytes into storage

    Tensor() = default;
    Tensor(DType t, std::vector<int64_t> shape);  // zero-filled

    int64_t numel() const;
    size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
    void* raw() const { return storage.get() + offset; }
    template <class T> T* data() const { return reinterpret_cast<T*>(raw()); }
    std::string shape_str() const;  // "[256, 512]"
    Tensor to(DType t) const;       // a converted copy (cpu)
};

// Aligned heap memory for buffers that are not Tensors (parameter buffers, arenas).
std::shared_ptr<std::byte> alloc_aligned(size_t nbytes);

}  // namespace st
