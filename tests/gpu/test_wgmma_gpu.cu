// The Hopper attention's wgmma steps on one tile, against the CPU: the swizzled Q, K and V tiles,
// S = Q K^T (both operands from shared memory) and O = P V (P = S rounded to bf16 in registers, as the
// kernel does), for head sizes 64 and 128, with the tiles where the kernel's first and second buffers
// are, and the products run twice in a loop as the kernel runs them for each key tile (O then sums
// both; at D = 64 the second round once read registers ptxas had reused). Where the whole attention
// test fails on the wgmma path, this says which step is wrong.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "gpu.h"
#include "kernels/attention.h"
#include "kernels/attention_wgmma_tile.cuh"

using namespace st;
using st::gpu::bf16;

namespace {

template <int D> constexpr int probe_smem() { return 1024 + 5 * (D / 64) * gpu::kPanel; }

// One warpgroup: S (64 x 64) = q k^T and O (64 x D) = reps x bf16(S) v, q, k, v (64 x D) row-major;
// K and V in tile slots k_at and v_at of the kernel's four (K0, K1, V0, V1).
template <int D> __global__ void probe_kernel(float* S, float* O, const bf16* q, const bf16* k, const bf16* v, int k_at,
                                              int v_at, int reps) {
    constexpr int TILE = D / 64 * gpu::kPanel;
    extern __shared__ __align__(16) unsigned char raw[];
    unsigned char* sm = gpu::swizzle_base(raw);
    unsigned char* Kt = sm + k_at * TILE;
    unsigned char* Vt = sm + v_at * TILE;
    unsigned char* Qt = sm + 4 * TILE;
    gpu::load_tile_sw128<D, 128>(Kt, k, D, nullptr, 0, 64);
    gpu::load_tile_sw128<D, 128>(Vt, v, D, nullptr, 0, 64);
    gpu::load_tile_sw128<D, 128>(Qt, q, D, nullptr, 0, 64);
    gpu::mma::cp_async_commit();
    gpu::mma::cp_async_wait<0>();
    gpu::wgmma::fence_proxy();
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c4 = lane % 4;
    float s[8][4];
    float acc[D / 8][4] = {};
    for (int r = 0; r < reps; r++) {
        gpu::qk_product<D>(s, Qt, Kt);
        if (r == 0)
            for (int j = 0; j < 8; j++)
                for (int i = 0; i < 4; i++) S[(warp * 16 + g + (i / 2) * 8) * 64 + j * 8 + c4 * 2 + i % 2] = s[j][i];
        gpu::pv_product<D>(acc, s, Vt);
    }
    for (int j = 0; j < D / 8; j++)
        for (int i = 0; i < 4; i++) O[(warp * 16 + g + (i / 2) * 8) * D + j * 8 + c4 * 2 + i % 2] = acc[j][i];
}

template <int D> void check_probe(std::mt19937& rng, int k_at, int v_at, int reps) {
    INFO("head size " << D << ", K in slot " << k_at << ", V in slot " << v_at << ", " << reps << " rounds");
    std::normal_distribution<float> dist(0.f, 0.25f);
    std::vector<bf16> q(64 * D), k(64 * D), v(64 * D);
    for (auto* x : {&q, &k, &v})
        for (auto& e : *x) e = __float2bfloat16(dist(rng));
    DeviceBuffer<bf16> dq(q), dk(k), dv(v);
    DeviceBuffer<float> dS(64 * 64), dO(64 * D);
    dS.poison();
    dO.poison();
    gpu::allow_smem(reinterpret_cast<const void*>(probe_kernel<D>), probe_smem<D>());
    probe_kernel<D><<<1, 128, probe_smem<D>()>>>(dS.get(), dO.get(), dq.get(), dk.get(), dv.get(), k_at, v_at, reps);
    CUDA_CHECK(cudaGetLastError());
    std::vector<float> S = dS.download(), O = dO.download();
    auto f = [](bf16 x) { return double(__bfloat162float(x)); };
    double num = 0, den = 0;
    for (int r = 0; r < 64; r++)
        for (int c = 0; c < 64; c++) {
            double ref = 0;
            for (int d = 0; d < D; d++) ref += f(q[r * D + d]) * f(k[c * D + d]);
            num += (S[r * 64 + c] - ref) * (S[r * 64 + c] - ref);
            den += ref * ref;
        }
    CHECK(std::sqrt(num / den) < 1e-4);  // NaN (an element not written) fails too
    num = den = 0;
    for (int r = 0; r < 64; r++)
        for (int d = 0; d < D; d++) {
            double ref = 0;
            for (int c = 0; c < 64; c++)
                ref += reps * double(__bfloat162float(__float2bfloat16(S[r * 64 + c]))) * f(v[c * D + d]);
            num += (O[r * D + d] - ref) * (O[r * D + d] - ref);
            den += ref * ref;
        }
    CHECK(std::sqrt(num / den) < 1e-4);
}

}  // namespace

TEST_CASE("wgmma tile products: S = Q K^T and O = P V on swizzled tiles", "[gpu]") {
    ST_REQUIRE_GPU();
    if (!gpu::attention_hopper()) {
        WARN("not a Hopper GPU or not an sm_90a build: skipped");
        return;
    }
    std::mt19937 rng(5);
    for (auto [k_at, v_at, reps] : {std::tuple{0, 2, 1}, std::tuple{1, 3, 1}, std::tuple{1, 3, 2}}) {
        check_probe<64>(rng, k_at, v_at, reps);
        check_probe<128>(rng, k_at, v_at, reps);
    }
}
