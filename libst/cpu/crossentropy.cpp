// Softmax cross-entropy over the byte vocabulary, fused with its backward.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ops.h"
#include "cpu/vexp.h"

namespace st {

template <class T> void crossentropy_forward(T* losses, const T* logits, const uint8_t* targets, int64_t N, int V) {
#pragma omp parallel
    {
        std::vector<T> e(V);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < N; i++) {
            const T* z = logits + i * V;
            T mx = *std::max_element(z, z + V);
            std::copy(z, z + V, e.begin());
            losses[i] = std::log(exp_shifted_sum(e.data(), V, mx)) + mx - z[targets[i]];
        }
    }
}

template <class T>
void crossentropy_backward(T* dlogits, const T* logits, const uint8_t* targets, T scale, int64_t N, int V) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const T* z = logits + i * V;
        T* d = dlogits + i * V;
        T mx = *std::max_element(z, z + V);
        if (d != z) std::copy(z, z + V, d);
        T r = scale / exp_shifted_sum(d, V, mx);
        for (int v = 0; v < V; v++) d[v] *= r;
        d[targets[i]] -= scale;
    }
}

template void crossentropy_forward<float>(float*, const float*, const uint8_t*, int64_t, int);
template void crossentropy_forward<double>(double*, const double*, const uint8_t*, int64_t, int);
template void crossentropy_backward<float>(float*, const float*, const uint8_t*, float, int64_t, int);
template void crossentropy_backward<double>(double*, const double*, const uint8_t*, double, int64_t, int);

}  // namespace st
