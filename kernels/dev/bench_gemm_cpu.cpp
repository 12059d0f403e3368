// Times st::gemm (float32) on the GEMMs of a transformer block and its 256-way head, forward and both
// backward products, and prints ms and GFLOP/s per shape (median of --runs after warm-up).
// kernels/dev/bench_gemm_cpu.py times PyTorch/OpenBLAS on the same shapes in the same format, to run side by side.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cxxopts.hpp>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cpu/gemm.h"

namespace {

struct Layer {
    const char* name;
    int n, k;  // out features, in features
};

std::vector<Layer> layer_shapes(int d) {
    return {{"qkv", 3 * d, d}, {"attn.proj", d, d}, {"fc", 4 * d, d}, {"fc.proj", d, 4 * d}, {"head", 256, d}};
}

std::vector<float> random_vector(size_t n, std::mt19937& rng, float scale) {
    std::normal_distribution<float> g(0, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = g(rng);
    return v;
}

double median_seconds(const std::function<void()>& fn, int runs) {
    for (int i = 0; i < 3; ++i) fn();
    std::vector<double> t(runs);
    for (auto& s : t) {
        const auto t0 = std::chrono::steady_clock::now();
        fn();
        s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    std::nth_element(t.begin(), t.begin() + runs / 2, t.end());
    return t[runs / 2];
}

}  // namespace

int main(int argc, char** argv) {
    cxxopts::Options opts("st-bench-gemm-cpu", "Time st::gemm on the GEMM shapes of a transformer layer");
    // clang-format off
    opts.add_options()
        ("bt", "tokens per batch (rows of x)", cxxopts::value<int>()->default_value("4096"))
        ("widths", "model widths d, comma separated", cxxopts::value<std::string>()->default_value("128,256,512"))
        ("threads", "OpenMP threads", cxxopts::value<int>()->default_value("2"))
        ("runs", "timed runs per shape (median reported)", cxxopts::value<int>()->default_value("21"))
        ("h,help", "this help");
    // clang-format on
    const auto args = opts.parse(argc, argv);
    if (args.count("help")) {
        std::printf("%s", opts.help().c_str());
        return 0;
    }
    const int bt = args["bt"].as<int>(), runs = std::max(1, args["runs"].as<int>());
    omp_set_num_threads(args["threads"].as<int>());

    std::printf("st::gemm, %d threads, BT=%d, median of %d\n", omp_get_max_threads(), bt, runs);
    std::printf("%-5s %-10s %6s %6s %6s  %9s %8s\n", "op", "layer", "M", "N", "K", "ms", "GFLOP/s");
    std::mt19937 rng(0);
    double total_flops = 0, total_s = 0;
    std::stringstream widths(args["widths"].as<std::string>());
    for (std::string w; std::getline(widths, w, ',');) {
        for (const Layer& l : layer_shapes(std::stoi(w))) {
            const int n = l.n, k = l.k;
            const auto x = random_vector(size_t(bt) * k, rng, 1);      // (BT, K)
            const auto W = random_vector(size_t(n) * k, rng, 0.05f);   // (N, K)
            const auto dy = random_vector(size_t(bt) * n, rng, 1);     // (BT, N)
            std::vector<float> y(size_t(bt) * n), dx(size_t(bt) * k);  // (BT, N), (BT, K)
            std::vector<float> dW(size_t(n) * k);                      // (N, K)
            struct Case {
                const char* op;
                int M, N, K;
                std::function<void()> fn;
            };
            const Case cases[] = {
                {"fwd", bt, n, k,
                 [&] { st::gemm(false, true, bt, n, k, 1.0f, x.data(), k, W.data(), k, 0.0f, y.data(), n); }},
                {"dx", bt, k, n,
                 [&] { st::gemm(false, false, bt, k, n, 1.0f, dy.data(), n, W.data(), k, 0.0f, dx.data(), k); }},
                {"dW", n, k, bt,
                 [&] { st::gemm(true, false, n, k, bt, 1.0f, dy.data(), n, x.data(), k, 1.0f, dW.data(), k); }},
            };
            for (const Case& c : cases) {
                const double s = median_seconds(c.fn, runs), flops = 2.0 * c.M * c.N * c.K;
                total_flops += flops;
                total_s += s;
                std::printf("%-5s %-10s %6d %6d %6d  %9.3f %8.1f\n", c.op, l.name, c.M, c.N, c.K, s * 1e3,
                            flops / s * 1e-9);
            }
        }
    }
    std::printf("all shapes: %.1f GFLOP/s\n", total_flops / total_s * 1e-9);
}
