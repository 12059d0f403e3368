// Softmax cross-entropy over the byte vocabulary, fused with its backward.
#include <cmath>

#include "ops.h"

namespace st {

template <class T>
void crossentropy_forward(T* losses, const T* logits, const uint8_t* targets, int64_t N, int V) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const T* z = logits + i * V;
        T mx = z[0];
        for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        T s = 0;
        for (int v = 0; v < V; v++) s += std::exp(z[v] - mx);
        losses[i] = std::log(s) + mx - z[targets[i]];
    }
}

template <class T>
void crossentropy_backward(T* dlogits, const T* logits, const uint8_t* targets, T scale, int64_t N, int V) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const T* z = logits + i * V;
        T* d = dlogits + i * V;
        T mx = z[0];
        for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        T s = 0;
        for (int v = 0; v < V; v++) {
            d[v] = std::exp(z[v] - mx);  // z and d may alias: z[v] is read before d[v] is written
            s += d[v];
        }
        T r = scale / s;
        for (int v = 0; v < V; v++) d[v] *= r;
        d[targets[i]] -= scale;
    }
}

template void crossentropy_forward<float>(float*, const float*, const uint8_t*, int64_t, int);
template void crossentropy_forward<double>(double*, const double*, const uint8_t*, int64_t, int);
template void crossentropy_backward<float>(float*, const float*, const uint8_t*, float, int64_t, int);
template void crossentropy_backward<double>(double*, const double*, const uint8_t*, double, int64_t, int);

}  // namespace st
