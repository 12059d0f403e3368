// Sampling: B sequences decoded in lockstep by a Sampler (libst/cpu/sampler_cpu.cpp or
// libst/gpu/sampler_gpu.cpp), and temperature, top-k and top-p draws from its logits.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model.h"
#include "rng.h"

namespace st {

struct SampleOptions {
    float temperature = 1.0f;  // 0: always the most likely byte
    int top_k = 0;             // 0: no limit
    float top_p = 1.0f;        // nucleus: the smallest set of bytes whose probability reaches top_p
    float min_p = 0.0f;        // only bytes at least min_p times as likely as the likeliest (0: off)
};

// B sequences decoded in lockstep, on the CPU (B Decoders) or the GPU (one batched step, a KV cache
// that keeps only what each head's pattern reads again).
class Sampler {
   public:
    virtual ~Sampler() = default;
    // Appends bytes[b] to sequence b at the next position; returns the logits (B, vocab) for the
    // bytes after them, valid until the next call. A full context slides as Decoder's does.
    virtual const float* push(const uint8_t* bytes) = 0;
};
std::unique_ptr<Sampler> make_cpu_sampler(const Model<float>& m, int batch);
std::unique_ptr<Sampler> make_gpu_sampler(const Model<float>& m, int batch, int device);
// The sampler --device asks for: "cpu", "cuda" or "cuda:N" (cli::setup's answer), as make_engine.
std::unique_ptr<Sampler> make_sampler(const std::string& device, const Model<float>& m, int batch);
// The first position of the window kept when a full context of n_ctx slides (Decoder's rule).
int slide_drop(const Config& c);

// Draws a byte from logits (vocab) at o's temperature, among the bytes that top-k, then top-p, then
// min-p keep (the likeliest is always kept); probs is scratch.
int sample_byte(const float* logits, int vocab, const SampleOptions& o, Rng& rng, std::vector<float>& probs);

}  // namespace st
