// Residual additions with dropout on the branch (the only place the paper applies dropout). Element i
// of a tensor keeps its branch value unless hash(seed, i0 + i) says drop: i0 numbers the elements of a
// data-parallel rank's share from where one process on the whole batch would, so the masks agree.
#include "cpu/ops.h"
#include "rng.h"

namespace st {

static inline bool keep(uint64_t seed, int64_t i, float p) { return uniform01(hash64(seed, uint64_t(i))) >= p; }

template <class T>
void residual_forward(T* out, const T* x, const T* y, float p, uint64_t seed, int64_t n, int64_t i0) {
    if (p == 0.0f) {
#pragma omp parallel for schedule(static) if (n >= kParallelMinValues)
        for (int64_t i = 0; i < n; i++) out[i] = x[i] + y[i];
        return;
    }
    const T s = T(1) / (T(1) - T(p));
#pragma omp parallel for schedule(static) if (n >= kParallelMinValues)
    for (int64_t i = 0; i < n; i++) out[i] = x[i] + (keep(seed, i0 + i, p) ? y[i] * s : T(0));
}

template <class T> void residual_backward_branch(T* dy, const T* dout, float p, uint64_t seed, int64_t n, int64_t i0) {
    const T s = T(1) / (T(1) - T(p));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dy[i] = p == 0.0f ? dout[i] : (keep(seed, i0 + i, p) ? dout[i] * s : T(0));
}

template void residual_forward<float>(float*, const float*, const float*, float, uint64_t, int64_t, int64_t);
template void residual_forward<double>(double*, const double*, const double*, float, uint64_t, int64_t, int64_t);
template void residual_backward_branch<float>(float*, const float*, float, uint64_t, int64_t, int64_t);
template void residual_backward_branch<double>(double*, const double*, float, uint64_t, int64_t, int64_t);

}  // namespace st
