// A model small enough for float64 references and finite differences, in any pattern, head mode and
// kind of positions (an image of 2 x 4 x 3 when pos is image).
#pragma once
#include "config.h"

namespace st::test {

inline Config tiny_config(Pattern p, HeadMode mode, PosKind pos, int d_model, int n_head) {
    Config c;
    c.n_layer = 2;
    c.d_model = d_model;
    c.n_head = n_head;
    c.ff_mult = 2;
    c.n_ctx = 24;
    c.vocab = 11;
    c.attn.pattern = p;
    c.attn.mode = mode;
    c.attn.stride = 4;
    c.attn.summary = 2;
    c.attn.block = 32;
    c.pos = pos;
    if (pos == PosKind::image) {
        c.image_h = 2;
        c.image_w = 4;
        c.image_c = 3;
    }
    return c;
}

}  // namespace st::test
