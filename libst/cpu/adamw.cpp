// AdamW over one contiguous parameter buffer, and the gradient-norm helpers clipping needs.
#include <cmath>

#include "cpu/ops.h"

namespace st {

template <class T> void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, float lr, float beta1, float beta2,
                                     float eps, float weight_decay, int64_t t) {
    const double c1 = 1.0 - std::pow(double(beta1), double(t));
    const double c2 = 1.0 - std::pow(double(beta2), double(t));
    const T step = T(lr / c1), rc2 = T(1.0 / std::sqrt(c2)), decay = T(1.0 - double(lr) * weight_decay);
    const T b1 = beta1, b2 = beta2;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        T g = grad[i];
        m[i] = b1 * m[i] + (T(1) - b1) * g;
        v[i] = b2 * v[i] + (T(1) - b2) * g * g;
        param[i] = param[i] * decay - step * m[i] / (std::sqrt(v[i]) * rc2 + T(eps));
    }
}

template <class T> double sum_squares(const T* x, int64_t n) {
    // Fixed chunks summed in order: the same bits for any thread count.
    const int64_t chunk = 1 << 16;
    const int64_t nchunk = (n + chunk - 1) / chunk;
    double total = 0;
#pragma omp parallel for schedule(static) ordered
    for (int64_t k = 0; k < nchunk; k++) {
        double s = 0;
        int64_t end = (k + 1) * chunk < n ? (k + 1) * chunk : n;
        for (int64_t i = k * chunk; i < end; i++) s += double(x[i]) * double(x[i]);
#pragma omp ordered
        total += s;
    }
    return total;
}

template <class T> void scale_inplace(T* x, T s, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

template void adamw_update<float>(float*, const float*, float*, float*, int64_t, float, float, float, float, float,
                                  int64_t);
template void adamw_update<double>(double*, const double*, double*, double*, int64_t, float, float, float, float, float,
                                   int64_t);
template double sum_squares<float>(const float*, int64_t);
template double sum_squares<double>(const double*, int64_t);
template void scale_inplace<float>(float*, float, int64_t);
template void scale_inplace<double>(double*, double, int64_t);

}  // namespace st
