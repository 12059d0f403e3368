// Token embedding plus factorized learned positions (Child et al. 2019, section 5).
#include "cpu/ops.h"

namespace st {

template <class T> void embedding_forward(T* out, const uint8_t* tok, const T* wte, const T* const* pos,
                                          const int32_t* const* pos_index, int npos, int64_t N, int T_, int C) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        T* o = out + i * C;
        const T* e = wte + int64_t(tok[i]) * C;
        for (int c = 0; c < C; c++) o[c] = e[c];
        for (int k = 0; k < npos; k++) {
            const T* p = pos[k] + int64_t(pos_index[k][i % T_]) * C;
            for (int c = 0; c < C; c++) o[c] += p[c];
        }
    }
}

template <class T> void embedding_backward(T* dwte, T* const* dpos, const T* dout, const uint8_t* tok,
                                           const int32_t* const* pos_index, int npos, int64_t N, int T_, int C) {
    // Many rows scatter into the same table row: split the columns among threads instead of the
    // rows, so there are no races and every sum runs in one fixed order.
    const int chunk = 32;
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += chunk) {
        int c1 = c0 + chunk < C ? c0 + chunk : C;
        for (int64_t i = 0; i < N; i++) {
            const T* g = dout + i * C;
            T* e = dwte + int64_t(tok[i]) * C;
            for (int c = c0; c < c1; c++) e[c] += g[c];
            for (int k = 0; k < npos; k++) {
                T* p = dpos[k] + int64_t(pos_index[k][i % T_]) * C;
                for (int c = c0; c < c1; c++) p[c] += g[c];
            }
        }
    }
}

template void embedding_forward<float>(float*, const uint8_t*, const float*, const float* const*, const int32_t* const*,
                                       int, int64_t, int, int);
template void embedding_forward<double>(double*, const uint8_t*, const double*, const double* const*,
                                        const int32_t* const*, int, int64_t, int, int);
template void embedding_backward<float>(float*, float* const*, const float*, const uint8_t*, const int32_t* const*, int,
                                        int64_t, int, int);
template void embedding_backward<double>(double*, double* const*, const double*, const uint8_t*, const int32_t* const*,
                                         int, int64_t, int, int);

}  // namespace st
