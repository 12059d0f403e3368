// Model files: safetensors with the config and training position in "__metadata__" and, when
// saved, the AdamW moments as "opt.m" and "opt.v". See man st.7 for the format.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model.h"

namespace st {

struct Checkpoint {
    std::unique_ptr<Model<float>> model;
    std::vector<float> opt_m, opt_v;              // empty when the file holds no optimizer state
    std::map<std::string, std::string> metadata;  // everything in __metadata__
    int64_t step = 0;                             // training steps done
};

// Whether x[0, n) holds no NaN or infinity: what a model file must satisfy, saved or loaded.
bool all_finite(const float* x, size_t n);

// Atomic; ".zst" compresses. opt_m / opt_v may be null (a model without optimizer state).
void checkpoint_save(const std::string& path, const Model<float>& m, const float* opt_m, const float* opt_v,
                     int64_t step, const std::map<std::string, std::string>& extra_metadata);
// Throws st::Error naming PATH when the file is not an st model, is truncated or corrupted, its
// tensors do not match its config, a weight or moment is not finite, a second moment is negative, or
// the step is not a whole number from 0 to kMaxSteps.
Checkpoint checkpoint_load(const std::string& path);

}  // namespace st
