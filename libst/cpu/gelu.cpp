// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
#include <cmath>

#include "ops.h"

namespace st {

template <class T>
void gelu_forward(T* out, const T* inp, int64_t n) {
    const T k = T(0.7978845608028654);  // sqrt(2 / pi)
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        T x = inp[i];
        out[i] = T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
    }
}

template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n) {
    const T k = T(0.7978845608028654);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        T x = inp[i];
        T u = k * (x + T(0.044715) * x * x * x);
        T t = std::tanh(u);
        T du = k * (T(1) + T(3 * 0.044715) * x * x);
        dinp[i] = dout[i] * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);
    }
}

template void gelu_forward<float>(float*, const float*, int64_t);
template void gelu_forward<double>(double*, const double*, int64_t);
template void gelu_backward<float>(float*, const float*, const float*, int64_t);
template void gelu_backward<double>(double*, const double*, const double*, int64_t);

}  // namespace st
