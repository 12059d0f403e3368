// The CPU sampler: one Decoder (decoder.h) per sequence of the batch.
#include <algorithm>
#include <memory>

#include "cpu/decoder.h"
#include "sample.h"

namespace st {

namespace {

class CpuSampler final : public Sampler {
   public:
    CpuSampler(const Model<float>& m, int batch) : vocab_(m.cfg.vocab), logits_(size_t(batch) * vocab_) {
        for (int b = 0; b < batch; b++) dec_.push_back(std::make_unique<Decoder>(m));
    }
    // The sequences on the cores, each decoder's small products then on one thread (regions do not
    // nest): one sequence's work is too little to share, and each is decoded alone, so the bits are
    // the same on any thread count. A single sequence stays outside any region, where its ops may
    // use the threads (a region inside another, even of one thread, would start threads of its own).
    const float* push(const uint8_t* bytes) override {
        const int64_t B = int64_t(dec_.size());
        if (B == 1) {
            push_one(0, bytes[0]);
        } else {
#pragma omp parallel for schedule(static)
            for (int64_t b = 0; b < B; b++) push_one(b, bytes[b]);
        }
        return logits_.data();
    }

   private:
    void push_one(int64_t b, uint8_t byte) {
        const float* l = dec_[size_t(b)]->push(byte);
        std::copy(l, l + vocab_, logits_.begin() + b * int64_t(vocab_));
    }
    size_t vocab_;
    std::vector<std::unique_ptr<Decoder>> dec_;
    std::vector<float> logits_;
};

}  // namespace

std::unique_ptr<Sampler> make_cpu_sampler(const Model<float>& m, int batch) {
    return std::make_unique<CpuSampler>(m, batch);
}

}  // namespace st
