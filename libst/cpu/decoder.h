// Incremental decoding on the CPU: one token at a time with a cache of keys and values, so each new
// byte costs one pass of the layers over one position. The CPU sampler runs one per sequence;
// st-viz-attn reads the attention it keeps.
#pragma once
#include <cstdint>
#include <vector>

#include "model.h"

namespace st {

class Decoder {
   public:
    explicit Decoder(const Model<float>& m);
    // Appends a byte at the next position and returns the logits (vocab) for the byte after it.
    // When the context is full, the window slides: the oldest bytes are dropped (in steps of a whole
    // number of stride rows, so that kept bytes keep their column) and the rest are replayed.
    const float* push(uint8_t byte);
    int position() const { return t_; }

    // One layer and head's attention of one query: the key positions (in the window, ascending, as
    // attn_keys gives them) and their softmax weights.
    struct Attention {
        std::vector<int64_t> keys;
        std::vector<float> probs;
    };
    // Keeps, from the next push on, every layer and head's attention of the pushed position (for
    // st-viz-attn); off by default, since sampling has no use for it.
    void keep_attention(bool on) { keep_attn_ = on; }
    // A layer and head's attention of the position pushed last while keep_attention was on (the
    // query is position() - 1 when that was the last push); empty before any such push.
    const Attention& attention(int layer, int head) const {
        return attn_[size_t(layer) * size_t(m_.cfg.n_head) + size_t(head)];
    }

   private:
    const float* step(uint8_t byte);
    const Model<float>& m_;
    int t_ = 0;                              // bytes in the window
    std::vector<uint8_t> window_;            // the bytes in the window
    std::vector<std::vector<float>> k_, v_;  // per layer (n_ctx, C)
    std::vector<float> x_, ln_, qkv_, att_, br_, fc_, logits_, scores_, mean_rstd_;
    std::vector<int64_t> keys_;
    bool keep_attn_ = false;
    std::vector<Attention> attn_;  // (n_layer, n_head)
};

}  // namespace st
