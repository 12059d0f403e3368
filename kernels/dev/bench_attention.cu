// Times st's attention kernels on the block layouts of the PyTorch peer (scripts/peer_attention.py):
// causal, fixed and strided at block 128, H 8, D 64, 65,536 tokens per batch, and prints one JSON
// line per case in the peer's format (median of timed runs after warm-up, CUDA events).
// Environment, as the peer's: SEQS=4096,16384,65536 KINDS=causal,fixed,strided H=8 D=64.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/check.h"

using namespace st;
using st::gpu::bf16;

namespace {

struct Kernels {  // a forward's and a backward's (kernels/attention_kernel.h)
    gpu::AttnKernel fwd, bwd;
};

// A one-component head from a block predicate, the diagonal blocks causal inside.
HeadLayout block_head(int T, int bs, const std::function<bool(int, int)>& allowed) {
    AttnComponent c;
    c.nblk = T / bs;
    std::vector<uint64_t> causal(size_t(bs) * bs / 64, 0);
    for (int r = 0; r < bs; r++)
        for (int k = 0; k <= r; k++) causal[size_t(r * bs + k) >> 6] |= uint64_t(1) << ((r * bs + k) & 63);
    c.masks.push_back(causal);
    c.row_ptr.push_back(0);
    for (int qb = 0; qb < c.nblk; qb++) {
        for (int kb = 0; kb <= qb; kb++)
            if (allowed(qb, kb)) {
                c.col.push_back(kb);
                c.mask.push_back(kb == qb ? 0 : -1);
            }
        c.row_ptr.push_back(int32_t(c.col.size()));
    }
    component_index_by_key(&c);
    HeadLayout h;
    h.parts.push_back(std::move(c));
    return h;
}

std::function<bool(int, int)> peer_layout(const std::string& kind, int L) {
    if (kind == "causal") return [](int, int) { return true; };
    if (kind == "fixed") return [L](int qb, int kb) { return kb / L == qb / L || kb % L == L - 1; };
    return [L](int qb, int kb) { return qb - kb < L || (qb - kb) % L == 0; };  // strided
}

float median_ms(const std::function<void()>& f, int warmup, int reps) {
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < warmup; i++) f();
    std::vector<float> t;
    for (int i = 0; i < reps; i++) {
        CUDA_CHECK(cudaEventRecord(e0));
        f();
        CUDA_CHECK(cudaEventRecord(e1));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float ms;
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    return t[t.size() / 2];
}

std::vector<std::string> split(const char* s, const char* dflt) {
    std::vector<std::string> v;
    std::stringstream in(s ? s : dflt);
    for (std::string x; std::getline(in, x, ',');) v.push_back(x);
    return v;
}

int env_int(const char* name, int dflt) {
    const char* v = std::getenv(name);
    return v ? std::atoi(v) : dflt;
}

template <class T> T* device_alloc(size_t n) {
    T* p;
    CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
    return p;
}

}  // namespace

int main() {
    try {
        const int H = env_int("H", 8), D = env_int("D", 64), C = H * D, bs = 128, tokens = 65536;
        cudaDeviceProp prop;
        CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
        std::printf("{\"device\": \"%s\"}\n", prop.name);
        // Random bf16 inputs (never zeros), one set: at these sizes the data is far larger than L2.
        const size_t N = tokens;
        std::vector<bf16> host(N * 3 * C);
        std::mt19937 rng(7);
        std::normal_distribution<float> g(0.f, 1.f);
        for (auto& x : host) x = __float2bfloat16(g(rng));
        bf16 *qkv = device_alloc<bf16>(N * 3 * C), *out = device_alloc<bf16>(N * C), *dout = device_alloc<bf16>(N * C),
             *dqkv = device_alloc<bf16>(N * 3 * C);
        float *lse = device_alloc<float>(N * H), *dsum = device_alloc<float>(N * H);
        CUDA_CHECK(cudaMemcpy(qkv, host.data(), host.size() * sizeof(bf16), cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(dout, host.data(), N * C * sizeof(bf16), cudaMemcpyHostToDevice));
        for (const std::string& ns : split(std::getenv("SEQS"), "4096,16384,65536"))
            for (const std::string& kind : split(std::getenv("KINDS"), "causal,fixed,strided")) {
                const int n = std::stoi(ns), B = tokens / n, nb = n / bs;
                const int L = n == 4096 ? 4 : n == 16384 ? 8 : n == 65536 ? 16 : std::max(2, int(std::sqrt(n / 128)));
                auto allowed = peer_layout(kind, L);
                LayerLayout lay;
                lay.T = n;
                lay.block = bs;
                lay.heads.assign(H, block_head(n, bs, allowed));
                gpu::AttnPlan plan(lay);
                long long offdiag = 0;
                for (int qb = 0; qb < nb; qb++)
                    for (int kb = 0; kb < qb; kb++) offdiag += allowed(qb, kb);
                const double pairs = double(offdiag) * bs * bs + double(nb) * bs * (bs + 1) / 2;
                const double flops = 4 * pairs * D * B * H;
                // The kernels that run here ("st"), and the mma.sync ones beside them where those are
                // not the same ("st-mma": what an A100 would run).
                const Kernels here{gpu::attention_kernel_here(gpu::AttnPass::forward, D, bs),
                                   gpu::attention_kernel_here(gpu::AttnPass::backward, D, bs)};
                std::vector<Kernels> runs{here};
                if (here.fwd != gpu::AttnKernel::mma || here.bwd != gpu::AttnKernel::mma)
                    runs.push_back({gpu::AttnKernel::mma, gpu::AttnKernel::mma});
                for (const Kernels& k : runs) {
                    auto fwd = [&] { gpu::attention_forward(k.fwd, out, lse, qkv, plan, B, n, C, H, nullptr); };
                    auto fwdbwd = [&] {
                        fwd();
                        gpu::attention_backward(k.bwd, dqkv, dout, qkv, out, lse, dsum, plan, B, n, C, H, nullptr);
                    };
                    const float tf = median_ms(fwd, 10, 50), tfb = median_ms(fwdbwd, 10, 50);
                    std::printf(
                        "{\"impl\": \"%s\", \"kernels\": \"%s/%s\", \"n\": %d, \"B\": %d, \"D\": %d, \"kind\": \"%s\", "
                        "\"L\": %d, \"bs\": %d, \"fwd_ms\": %.4f, \"fwdbwd_ms\": %.4f, \"fwd_tflops\": %.1f, "
                        "\"fwdbwd_tflops\": %.1f}\n",
                        &k == &runs[0] ? "st" : "st-mma", gpu::attention_kernel_name(k.fwd),
                        gpu::attention_kernel_name(k.bwd), n, B, D, kind.c_str(), L, bs, tf, tfb, flops / tf / 1e9,
                        3.5 * flops / tfb / 1e9);
                    std::fflush(stdout);
                }
            }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "st-bench-attention: %s\n", e.what());
        return 1;
    }
}
