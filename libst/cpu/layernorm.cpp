// LayerNorm forward and backward (eps 1e-5, biased variance, as nn.LayerNorm).
#include <cmath>

#include "cpu/ops.h"

namespace st {

template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias, int64_t N, int C) {
    const T eps = T(1e-5);
#pragma omp parallel for schedule(static) if (N * C >= kParallelMinValues)
    for (int64_t i = 0; i < N; i++) {
        const T* x = inp + i * C;
        T m = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        T var = 0;
        for (int c = 0; c < C; c++) var += (x[c] - m) * (x[c] - m);
        T s = T(1) / std::sqrt(var / C + eps);
        T* o = out + i * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[i] = m;
        rstd[i] = s;
    }
}

template <class T> void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                                           const T* mean, const T* rstd, int64_t N, int C) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const T* x = inp + i * C;
        const T* g = dout + i * C;
        T m = mean[i], s = rstd[i];
        T sum_g = 0, sum_gx = 0;  // means of dnorm and dnorm * norm over the row
        for (int c = 0; c < C; c++) {
            T dn = g[c] * weight[c];
            sum_g += dn;
            sum_gx += dn * (x[c] - m) * s;
        }
        sum_g /= C;
        sum_gx /= C;
        T* d = dinp + i * C;
        for (int c = 0; c < C; c++) {
            T n = (x[c] - m) * s;
            d[c] += s * (g[c] * weight[c] - sum_g - n * sum_gx);
        }
    }
    // Weight and bias gradients sum over rows: split the columns among threads so each sum runs
    // in one fixed order.
    const int chunk = 32;
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += chunk) {
        int c1 = c0 + chunk < C ? c0 + chunk : C;
        for (int64_t i = 0; i < N; i++) {
            const T* x = inp + i * C;
            const T* g = dout + i * C;
            T m = mean[i], s = rstd[i];
            for (int c = c0; c < c1; c++) {
                dweight[c] += g[c] * (x[c] - m) * s;
                dbias[c] += g[c];
            }
        }
    }
}

template void layernorm_forward<float>(float*, float*, float*, const float*, const float*, const float*, int64_t, int);
template void layernorm_forward<double>(double*, double*, double*, const double*, const double*, const double*, int64_t,
                                        int);
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*, const float*, const float*,
                                        const float*, int64_t, int);
template void layernorm_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                         const double*, const double*, int64_t, int);

}  // namespace st
