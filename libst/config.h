// The model's hyper-parameters, their checks and their JSON form (stored in every model file).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "layout.h"

namespace st {

enum class PosKind {
    p1d,
    p2d,
    image
};  // learned positions: one table, row + column (width = stride), row + column + channel

struct Config {
    int n_layer = 4;
    int d_model = 256;
    int n_head = 4;
    int ff_mult = 4;
    int n_ctx = 256;
    int vocab = 256;
    AttnSpec attn;
    PosKind pos = PosKind::p2d;
    int image_h = 0, image_w = 0, image_c = 0;  // pos == image: n_ctx == h * w * c
    float dropout = 0.0f;

    int head_dim() const { return d_model / n_head; }
    int ff_dim() const { return ff_mult * d_model; }
};

// The largest settings st accepts. They bound what a model file's config can make a program allocate
// before its tensors are checked: the context sizes the position tables' index (4 bytes a position
// and table), and it is four times the longest sequence st is meant to train on one GPU.
inline constexpr int kMaxLayers = 100000, kMaxHeads = 4096, kMaxDModel = 1 << 20, kMaxFFMult = 64,
                     kMaxContext = 1 << 26;
inline constexpr int64_t kMaxSteps = int64_t(1) << 40;  // optimizer steps of a run

// "" when usable, else one line naming the value and what is wrong with it.
std::string config_check(const Config&);
nlohmann::json config_to_json(const Config&);
Config config_from_json(const nlohmann::json&);  // throws st::Error on a missing or bad field
const char* pos_name(PosKind);
bool pos_from_name(const std::string&, PosKind*);

}  // namespace st
