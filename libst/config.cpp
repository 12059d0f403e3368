// Config checks and (de)serialisation.
#include "config.h"

#include "error.h"

namespace st {

const char* pos_name(PosKind p) {
    switch (p) {
        case PosKind::p1d: return "1d";
        case PosKind::p2d: return "2d";
        case PosKind::image: return "image";
    }
    return "?";
}

bool pos_from_name(const std::string& s, PosKind* out) {
    for (PosKind p : {PosKind::p1d, PosKind::p2d, PosKind::image})
        if (s == pos_name(p)) {
            *out = p;
            return true;
        }
    return false;
}

std::string config_check(const Config& c) {
    auto bad = [](const std::string& what, long v, const std::string& why) { return what + " " + std::to_string(v) + ": " + why; };
    if (c.n_layer < 1) return bad("layers", c.n_layer, "need at least 1");
    if (c.n_head < 1) return bad("heads", c.n_head, "need at least 1");
    if (c.d_model < 1) return bad("d_model", c.d_model, "need at least 1");
    if (c.d_model % c.n_head != 0)
        return "heads " + std::to_string(c.n_head) + " do not divide d_model " + std::to_string(c.d_model);
    if (c.ff_mult < 1) return bad("ff multiplier", c.ff_mult, "need at least 1");
    if (c.n_ctx < 2) return bad("context", c.n_ctx, "need at least 2");
    if (c.vocab < 2 || c.vocab > 256) return bad("vocab", c.vocab, "tokens are bytes: 2 to 256");
    if (!(c.dropout >= 0.0f && c.dropout < 1.0f)) return "dropout " + std::to_string(c.dropout) + ": must be in [0, 1)";
    if (c.pos == PosKind::image) {
        if (c.image_h < 1 || c.image_w < 1 || c.image_c < 1) return "image size must be HxWxC with each at least 1";
        if (int64_t(c.image_h) * c.image_w * c.image_c != c.n_ctx)
            return "image " + std::to_string(c.image_h) + "x" + std::to_string(c.image_w) + "x" + std::to_string(c.image_c) +
                   " does not match the context " + std::to_string(c.n_ctx);
    }
    if (c.pos == PosKind::p2d && (c.attn.stride < 1 || c.n_ctx % c.attn.stride != 0))
        return "stride " + std::to_string(c.attn.stride) + " does not divide the context " + std::to_string(c.n_ctx);
    return attn_spec_check(c.attn, c.n_ctx, c.n_head);
}

nlohmann::json config_to_json(const Config& c) {
    nlohmann::json j = {{"n_layer", c.n_layer}, {"d_model", c.d_model}, {"n_head", c.n_head}, {"ff_mult", c.ff_mult},
                        {"n_ctx", c.n_ctx}, {"vocab", c.vocab}, {"pattern", pattern_name(c.attn.pattern)},
                        {"mode", head_mode_name(c.attn.mode)}, {"stride", c.attn.stride}, {"summary", c.attn.summary},
                        {"block", c.attn.block}, {"pos", pos_name(c.pos)}, {"dropout", c.dropout}};
    if (c.pos == PosKind::image) j["image"] = {c.image_h, c.image_w, c.image_c};
    return j;
}

Config config_from_json(const nlohmann::json& j) {
    Config c;
    try {
        c.n_layer = j.at("n_layer").get<int>();
        c.d_model = j.at("d_model").get<int>();
        c.n_head = j.at("n_head").get<int>();
        c.ff_mult = j.at("ff_mult").get<int>();
        c.n_ctx = j.at("n_ctx").get<int>();
        c.vocab = j.at("vocab").get<int>();
        c.attn.stride = j.at("stride").get<int>();
        c.attn.summary = j.at("summary").get<int>();
        c.attn.block = j.at("block").get<int>();
        c.dropout = j.at("dropout").get<float>();
        if (!pattern_from_name(j.at("pattern").get<std::string>(), &c.attn.pattern)) fail("unknown attention pattern");
        if (!head_mode_from_name(j.at("mode").get<std::string>(), &c.attn.mode)) fail("unknown head mode");
        if (!pos_from_name(j.at("pos").get<std::string>(), &c.pos)) fail("unknown position kind");
        if (c.pos == PosKind::image) {
            auto im = j.at("image");
            c.image_h = im.at(0).get<int>();
            c.image_w = im.at(1).get<int>();
            c.image_c = im.at(2).get<int>();
        }
    } catch (const nlohmann::json::exception& e) {
        fail(std::string("bad model config: ") + e.what());
    }
    std::string why = config_check(c);
    if (!why.empty()) fail("bad model config: " + why);
    return c;
}

}  // namespace st
