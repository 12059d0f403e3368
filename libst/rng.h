// Counter-based random numbers: a value is a pure function of (seed, counters), so any step's
// batch, any dropout mask and any initial weight can be regenerated exactly, on any thread, after
// a resume. splitmix64 is the mixer (Steele et al., "Fast splittable pseudorandom number generators").
#pragma once
#include <cmath>
#include <cstdint>

// The mixers also compile for the GPU (kernels/ops.cu draws the same dropout masks).
#ifdef __CUDACC__
#define ST_HOST_DEVICE __host__ __device__
#else
#define ST_HOST_DEVICE
#endif

namespace st {

ST_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
ST_HOST_DEVICE inline uint64_t hash64(uint64_t a, uint64_t b) { return mix64(a ^ mix64(b)); }
inline uint64_t hash64(uint64_t a, uint64_t b, uint64_t c) { return hash64(hash64(a, b), c); }
// Uniform in [0, 1) with 53 random bits.
inline double uniform01(uint64_t h) { return double(h >> 11) * 0x1.0p-53; }

// A sequential stream for the places that want one (initialisation, sampling).
struct Rng {
    uint64_t state;
    explicit Rng(uint64_t seed) : state(mix64(seed)) {}
    uint64_t next() { return mix64(state++); }
    double uniform() { return uniform01(next()); }
    double normal() {  // Box-Muller; one value per call keeps the stream simple
        double u1 = uniform(), u2 = uniform();
        return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(6.283185307179586 * u2);
    }
};

}  // namespace st
