// Central finite differences in float64 for the op and model tests.
#pragma once
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "rng.h"

namespace st::test {

inline std::vector<double> randn(size_t n, uint64_t seed, double scale = 1.0) {
    Rng r(seed);
    std::vector<double> v(n);
    for (auto& x : v) x = scale * r.normal();
    return v;
}

// max |analytic - numeric| / max |numeric| over the checked coordinates of x, where numeric is
// (loss(x + h e_i) - loss(x - h e_i)) / 2h. idx lists the coordinates (all when empty).
inline double fd_rel_error(std::vector<double>& x, const std::vector<double>& analytic,
                           const std::function<double()>& loss, std::vector<size_t> idx = {}, double h = 1e-6) {
    if (idx.empty())
        for (size_t i = 0; i < x.size(); i++) idx.push_back(i);
    double max_diff = 0, max_num = 1e-30;
    for (size_t i : idx) {
        double keep = x[i];
        x[i] = keep + h;
        double lp = loss();
        x[i] = keep - h;
        double lm = loss();
        x[i] = keep;
        double num = (lp - lm) / (2 * h);
        max_diff = std::max(max_diff, std::fabs(num - analytic[i]));
        max_num = std::max(max_num, std::fabs(num));
    }
    return max_diff / max_num;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
    return s;
}

}  // namespace st::test
