// Config checks and (de)serialisation.
#include "config.h"

#include <limits>

#include "error.h"
#include "io/json.h"

namespace st {

const char* pos_name(PosKind p) {
    switch (p) {
        case PosKind::p1d:
            return "1d";
        case PosKind::p2d:
            return "2d";
        case PosKind::image:
            return "image";
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
    auto bad = [](const std::string& what, long v, const std::string& why) {
        return what + " " + std::to_string(v) + ": " + why;
    };
    auto out_of = [&](const std::string& what, long v, long lo, long hi) {
        return v < lo || v > hi ? bad(what, v, "must be between " + std::to_string(lo) + " and " + std::to_string(hi))
                                : std::string();
    };
    for (const std::string& why :
         {out_of("layers", c.n_layer, 1, kMaxLayers), out_of("heads", c.n_head, 1, kMaxHeads),
          out_of("d_model", c.d_model, 1, kMaxDModel), out_of("ff multiplier", c.ff_mult, 1, kMaxFFMult),
          out_of("context", c.n_ctx, 2, kMaxContext)})
        if (!why.empty()) return why;
    if (c.d_model % c.n_head != 0)
        return "heads " + std::to_string(c.n_head) + " do not divide d_model " + std::to_string(c.d_model);
    if (c.vocab < 2 || c.vocab > 256) return bad("vocab", c.vocab, "tokens are bytes: 2 to 256");
    if (!(c.dropout >= 0.0f && c.dropout < 1.0f)) return "dropout " + std::to_string(c.dropout) + ": must be in [0, 1)";
    if (c.pos == PosKind::image) {
        if (c.image_h < 1 || c.image_w < 1 || c.image_c < 1) return "image size must be HxWxC with each at least 1";
        if (int64_t(c.image_h) * c.image_w > c.n_ctx || int64_t(c.image_h) * c.image_w * c.image_c != c.n_ctx)
            return "image " + std::to_string(c.image_h) + "x" + std::to_string(c.image_w) + "x" +
                   std::to_string(c.image_c) + " does not match the context " + std::to_string(c.n_ctx);
    }
    if (c.pos == PosKind::p2d && (c.attn.stride < 1 || c.n_ctx % c.attn.stride != 0))
        return "stride " + std::to_string(c.attn.stride) + " does not divide the context " + std::to_string(c.n_ctx);
    return attn_spec_check(c.attn, c.n_ctx, c.n_head);
}

nlohmann::json config_to_json(const Config& c) {
    nlohmann::json j = {{"n_layer", c.n_layer},
                        {"d_model", c.d_model},
                        {"n_head", c.n_head},
                        {"ff_mult", c.ff_mult},
                        {"n_ctx", c.n_ctx},
                        {"vocab", c.vocab},
                        {"pattern", pattern_name(c.attn.pattern)},
                        {"mode", head_mode_name(c.attn.mode)},
                        {"stride", c.attn.stride},
                        {"summary", c.attn.summary},
                        {"block", c.attn.block},
                        {"pos", pos_name(c.pos)},
                        {"dropout", c.dropout}};
    if (c.pos == PosKind::image) j["image"] = {c.image_h, c.image_w, c.image_c};
    return j;
}

Config config_from_json(const nlohmann::json& j) {
    Config c;
    try {
        auto i = [&](const char* key) { return int(json_int(j, key, 0, std::numeric_limits<int>::max())); };
        c.n_layer = i("n_layer");
        c.d_model = i("d_model");
        c.n_head = i("n_head");
        c.ff_mult = i("ff_mult");
        c.n_ctx = i("n_ctx");
        c.vocab = i("vocab");
        c.attn.stride = i("stride");
        c.attn.summary = i("summary");
        c.attn.block = i("block");
        c.dropout = float(json_real(j, "dropout", 0, 1));
        if (!pattern_from_name(json_string(j, "pattern"), &c.attn.pattern)) fail("unknown attention pattern");
        if (!head_mode_from_name(json_string(j, "mode"), &c.attn.mode)) fail("unknown head mode");
        if (!pos_from_name(json_string(j, "pos"), &c.pos)) fail("unknown position kind");
        if (c.pos == PosKind::image) {
            const auto& im = j.at("image");
            if (!im.is_array() || im.size() != 3) fail("\"image\" is not [h, w, c]");
            const nlohmann::json hwc = {{"h", im[0]}, {"w", im[1]}, {"c", im[2]}};
            c.image_h = int(json_int(hwc, "h", 1, kMaxContext));
            c.image_w = int(json_int(hwc, "w", 1, kMaxContext));
            c.image_c = int(json_int(hwc, "c", 1, kMaxContext));
        }
    } catch (const nlohmann::json::exception& e) {
        fail(std::string("bad model config: ") + e.what());
    } catch (const Error& e) {
        fail(std::string("bad model config: ") + e.what());
    }
    std::string why = config_check(c);
    if (!why.empty()) fail("bad model config: " + why);
    return c;
}

}  // namespace st
