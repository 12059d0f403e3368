// Linear layers (nn.Linear convention, weight (OC, IC)) on top of the packed GEMM.
#include "cpu/gemm.h"
#include "cpu/ops.h"

namespace st {

template <class T>
void linear_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t N, int IC, int OC) {
    gemm<T>(false, true, int(N), OC, IC, T(1), inp, IC, weight, IC, T(0), out, OC);
    if (!bias) return;
#pragma omp parallel for schedule(static) if (N * OC >= kParallelMinValues)
    for (int64_t i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) out[i * OC + o] += bias[o];
}

template <class T> void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                                        int64_t N, int IC, int OC) {
    if (dinp) gemm<T>(false, false, int(N), IC, OC, T(1), dout, OC, weight, IC, T(1), dinp, IC);
    gemm<T>(true, false, OC, IC, int(N), T(1), dout, OC, inp, IC, T(1), dweight, IC);
    if (!dbias) return;
    const int chunk = 32;  // columns per thread: each bias sum runs in one fixed order
#pragma omp parallel for schedule(static)
    for (int o0 = 0; o0 < OC; o0 += chunk) {
        int o1 = o0 + chunk < OC ? o0 + chunk : OC;
        for (int64_t i = 0; i < N; i++)
            for (int o = o0; o < o1; o++) dbias[o] += dout[i * OC + o];
    }
}

template void linear_forward<float>(float*, const float*, const float*, const float*, int64_t, int, int);
template void linear_forward<double>(double*, const double*, const double*, const double*, int64_t, int, int);
template void linear_backward<float>(float*, float*, float*, const float*, const float*, const float*, int64_t, int,
                                     int);
template void linear_backward<double>(double*, double*, double*, const double*, const double*, const double*, int64_t,
                                      int, int);

}  // namespace st
