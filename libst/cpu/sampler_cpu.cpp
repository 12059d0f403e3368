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
    const float* push(const uint8_t* bytes) override {
        for (size_t b = 0; b < dec_.size(); b++) {
            const float* l = dec_[b]->push(bytes[b]);
            std::copy(l, l + vocab_, logits_.begin() + b * vocab_);
        }
        return logits_.data();
    }

   private:
    size_t vocab_;
    std::vector<std::unique_ptr<Decoder>> dec_;
    std::vector<float> logits_;
};

}  // namespace

std::unique_ptr<Sampler> make_cpu_sampler(const Model<float>& m, int batch) {
    return std::make_unique<CpuSampler>(m, batch);
}

}  // namespace st
