// Times GPU decoding (libst/gpu/sampler_gpu.cpp) without a model file: a random model of the given
// shape, B sequences, K steps after a warm-up; prints one JSON line per batch size: ms a step and
// tokens/s. The host's sampling is left out (the same bytes are fed back), so this is the device
// step plus its round trip. The first steps attend to few keys; the attention of a later position,
// whose cost grows with it, is timed on its own at each of POSITIONS (one layer, random cache), and
// so is each of a layer's four matrix products (decode_linear) at every batch size.
// Environment: LAYERS=12 DMODEL=512 HEADS=8 CTX=65536 PATTERN=fixed STRIDE=1024 SUMMARY=128 STEPS=2048
//              BATCHES=1,16 POSITIONS=1024,16384,32768,65535 (ST_DECODE=one: the one-launch step
//              up to 4 sequences, sampler_gpu.cpp)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu/buffer.h"
#include "kernels/check.h"
#include "kernels/decode.h"
#include "rng.h"
#include "sample.h"

using namespace st;

static int env_int(const char* name, int dflt) {
    const char* v = std::getenv(name);
    return v ? std::atoi(v) : dflt;
}

static std::vector<int> env_list(const char* name, const char* dflt) {
    std::stringstream ss(std::getenv(name) ? std::getenv(name) : dflt);
    std::vector<int> v;
    for (std::string x; std::getline(ss, x, ',');) v.push_back(std::stoi(x));
    return v;
}

// Microseconds of one launch: the median of 9 runs of 50 launches, after one run of warm-up.
template <class F> static double median_us(F launch) {
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    std::vector<double> us;
    for (int rep = 0; rep < 10; rep++) {
        CUDA_CHECK(cudaEventRecord(e0));
        for (int i = 0; i < 50; i++) launch();
        CUDA_CHECK(cudaEventRecord(e1));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (rep > 0) us.push_back(ms * 1e3 / 50);
    }
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    std::sort(us.begin(), us.end());
    return us[us.size() / 2];
}

// Microseconds of one layer's decode_attention at position t.
static double time_attention(const Config& c, int B, int t) {
    using gpu::bf16;
    const int NH = c.n_head, D = c.head_dim();
    std::vector<gpu::DecodeHead> heads;
    int S = 0;
    for (int h = 0; h < NH; h++) {
        int slots = 0;
        heads.push_back(gpu::decode_head(c.attn, NH, 0, h, c.n_ctx, &slots));
        S = std::max(S, slots);
    }
    gpu::Buf<gpu::DecodeHead> heads_d(heads.size());
    heads_d.upload(heads.data(), nullptr);
    const size_t cache = size_t(B) * NH * S * D, nqkv = size_t(B) * 3 * NH * D;
    std::vector<bf16> host(cache);
    Rng r(3);
    for (auto& x : host) x = __float2bfloat16(float(r.normal()));
    gpu::Buf<bf16> kc(cache), vc(cache), qkv(nqkv), out(size_t(B) * NH * D);
    kc.upload(host.data(), nullptr);
    vc.upload(host.data(), nullptr);
    qkv.upload(host.data(), nullptr);
    gpu::Buf<char> scratch(gpu::decode_scratch(B, NH, D, S));
    CUDA_CHECK(cudaMemset(scratch.p, 0, scratch.n));
    gpu::Buf<int> t_d(1);
    t_d.upload(&t, nullptr);
    return median_us(
        [&] { gpu::decode_attention(out.p, scratch.p, qkv.p, kc.p, vc.p, heads_d.p, t_d.p, B, NH, D, S, nullptr); });
}

// Microseconds of one decode_linear of the given shape.
static double time_linear(int N, int IC, int OC, bool ln, gpu::DecodeEpilogue e) {
    using gpu::bf16;
    std::vector<float> host(size_t(std::max(N, 1)) * std::max(IC, OC) * 4);
    Rng r(4);
    for (auto& x : host) x = float(r.normal());
    std::vector<bf16> w(size_t(OC) * IC);
    for (auto& x : w) x = __float2bfloat16(float(0.05 * r.normal()));
    gpu::Buf<float> x32(size_t(N) * IC), resid(size_t(N) * OC), out(size_t(N) * OC), vec(size_t(std::max(IC, OC)));
    gpu::Buf<bf16> x16(size_t(N) * IC), w16(w.size());
    x32.upload(host.data(), nullptr);
    resid.upload(host.data(), nullptr);
    vec.upload(host.data(), nullptr);
    w16.upload(w.data(), nullptr);
    CUDA_CHECK(cudaMemset(x16.p, 0x3c, x16.bytes()));  // 0x3c3c: about 0.011 in every element
    gpu::DecodeLinear a;
    if (ln)
        a.in_f32 = x32.p, a.ln_w = vec.p, a.ln_b = vec.p;
    else
        a.in = x16.p;
    a.weight = w16.p, a.bias = vec.p, a.resid = resid.p, a.out = out.p, a.N = N, a.IC = IC, a.OC = OC, a.epilogue = e;
    return median_us([&] { gpu::decode_linear(a, nullptr); });
}

int main() {
    try {
        Config c;
        c.n_layer = env_int("LAYERS", 12);
        c.d_model = env_int("DMODEL", 512);
        c.n_head = env_int("HEADS", 8);
        c.n_ctx = env_int("CTX", 65536);
        const char* pattern = std::getenv("PATTERN") ? std::getenv("PATTERN") : "fixed";
        if (!pattern_from_name(pattern, &c.attn.pattern)) throw std::runtime_error(std::string("PATTERN: ") + pattern);
        c.attn.stride = env_int("STRIDE", 1024);
        c.attn.summary = env_int("SUMMARY", 128);
        c.attn.block = 128;
        c.pos = PosKind::p2d;
        Model<float> m(c);
        m.init_weights(1);
        Rng r(2);
        for (auto& x : m.w) x += float(0.02 * r.normal());  // never time on zeros (the head starts at zero)
        for (int B : env_list("BATCHES", "1,16"))
            for (int t : env_list("POSITIONS", "1024,16384,32768,65535"))
                if (t < c.n_ctx)
                    std::printf(
                        "{\"impl\": \"st-decode-attention\", \"layer\": 0, \"batch\": %d, \"t\": %d, \"us\": %.2f}\n",
                        B, t, time_attention(c, B, t));
        const int C = c.d_model, F = c.ff_dim();
        using E = gpu::DecodeEpilogue;
        struct Shape {
            const char* name;
            int IC, OC;
            bool ln;
            E e;
        };
        const Shape shapes[] = {{"qkv", C, 3 * C, true, E::bf16},
                                {"proj", C, C, false, E::residual_f32},
                                {"fc", C, F, true, E::gelu_bf16},
                                {"fc2", F, C, false, E::residual_f32}};
        for (int B : env_list("BATCHES", "1,16"))
            for (const Shape& sh : shapes)
                std::printf("{\"impl\": \"st-decode-linear\", \"product\": \"%s\", \"batch\": %d, \"us\": %.2f}\n",
                            sh.name, B, time_linear(B, sh.IC, sh.OC, sh.ln, sh.e));
        const int steps = env_int("STEPS", 2048);
        for (int B : env_list("BATCHES", "1,16")) {
            auto s = make_gpu_sampler(m, B, 0);
            std::vector<uint8_t> bytes(size_t(B), 'a');
            for (int i = 0; i < 16; i++) s->push(bytes.data());  // warm-up: the graph is captured here
            const auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < steps; i++) bytes[0] = uint8_t(s->push(bytes.data())[0] > 0 ? 'b' : 'c');
            const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::printf(
                "{\"impl\": \"st-decode\", \"layers\": %d, \"d\": %d, \"ctx\": %d, \"pattern\": \"%s\", "
                "\"batch\": %d, \"steps\": %d, \"ms_per_step\": %.4f, \"tokens_per_s\": %.0f}\n",
                c.n_layer, c.d_model, c.n_ctx, pattern, B, steps, sec * 1e3 / steps, B * steps / sec);
            std::fflush(stdout);
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "st-bench-decode: %s\n", e.what());
        return 1;
    }
}
