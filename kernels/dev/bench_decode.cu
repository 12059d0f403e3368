// Times GPU decoding (libst/gpu/sampler_gpu.cpp) without a model file: a random model of the given
// shape, B sequences, K steps after a warm-up; prints one JSON line per batch size: ms a step and
// tokens/s. The host's sampling is left out (the same bytes are fed back), so this is the device
// step plus its round trip.
// Environment: LAYERS=12 DMODEL=512 HEADS=8 CTX=65536 STRIDE=1024 SUMMARY=128 STEPS=2048 BATCHES=1,16
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "rng.h"
#include "sample.h"

using namespace st;

static int env_int(const char* name, int dflt) {
    const char* v = std::getenv(name);
    return v ? std::atoi(v) : dflt;
}

int main() {
    try {
        Config c;
        c.n_layer = env_int("LAYERS", 12);
        c.d_model = env_int("DMODEL", 512);
        c.n_head = env_int("HEADS", 8);
        c.n_ctx = env_int("CTX", 65536);
        c.attn.pattern = Pattern::fixed;
        c.attn.stride = env_int("STRIDE", 1024);
        c.attn.summary = env_int("SUMMARY", 128);
        c.attn.block = 128;
        c.pos = PosKind::p2d;
        Model<float> m(c);
        m.init_weights(1);
        Rng r(2);
        for (auto& x : m.w) x += float(0.02 * r.normal());   // never time on zeros (the head starts at zero)
        const int steps = env_int("STEPS", 2048);
        std::stringstream batches(std::getenv("BATCHES") ? std::getenv("BATCHES") : "1,16");
        for (std::string b; std::getline(batches, b, ',');) {
            const int B = std::stoi(b);
            auto s = make_gpu_sampler(m, B, 0);
            std::vector<uint8_t> bytes(size_t(B), 'a');
            for (int i = 0; i < 16; i++) s->push(bytes.data());   // warm-up: the graph is captured here
            const auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < steps; i++) bytes[0] = uint8_t(s->push(bytes.data())[0] > 0 ? 'b' : 'c');
            const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::printf("{\"impl\": \"st-decode\", \"layers\": %d, \"d\": %d, \"ctx\": %d, \"batch\": %d, \"steps\": %d, "
                        "\"ms_per_step\": %.4f, \"tokens_per_s\": %.0f}\n",
                        c.n_layer, c.d_model, c.n_ctx, B, steps, sec * 1e3 / steps, B * steps / sec);
            std::fflush(stdout);
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "st-bench-decode: %s\n", e.what());
        return 1;
    }
}
