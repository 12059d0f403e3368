// Saving and loading models and training state.
#include "checkpoint.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include "error.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "tensor.h"

namespace st {

static const char* kFormat = "st-model";

void checkpoint_save(const std::string& path, const Model<float>& m, const float* opt_m, const float* opt_v,
                     int64_t step, const std::map<std::string, std::string>& extra_metadata) {
    std::vector<SafeTensorsWrite> ts;
    for (const auto& p : m.params) ts.push_back({p.name, DType::f32, p.shape, m.w.data() + p.offset});
    if (opt_m && opt_v) {
        ts.push_back({"opt.m", DType::f32, {m.num_params}, opt_m});
        ts.push_back({"opt.v", DType::f32, {m.num_params}, opt_v});
    }
    std::map<std::string, std::string> md = extra_metadata;
    md["format"] = kFormat;
    md["version"] = "1";
    md["config"] = config_to_json(m.cfg).dump();
    md["step"] = std::to_string(step);
    safetensors_save(path, ts, md);
}

// A whole decimal number in [lo, hi], or false.
static bool parse_whole(const std::string& s, int64_t lo, int64_t hi, int64_t* out) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
    return !s.empty() && ec == std::errc() && end == s.data() + s.size() && *out >= lo && *out <= hi;
}

bool all_finite(const float* x, size_t n) {
    bool ok = true;
    for (size_t i = 0; i < n; i++) ok &= std::isfinite(x[i]);
    return ok;
}

Checkpoint checkpoint_load(const std::string& path) {
    SafeTensors f = safetensors_load(path);
    auto fmt = f.metadata.find("format");
    if (fmt == f.metadata.end() || fmt->second != kFormat)
        fail(path + ": not an st model (a safetensors file without st's metadata)");
    auto cfg_it = f.metadata.find("config");
    if (cfg_it == f.metadata.end()) fail(path + ": not an st model (no config in its metadata)");
    Config cfg;
    try {
        cfg = config_from_json(json_parse(cfg_it->second, path + ": model config"));
    } catch (const Error& e) {
        const std::string why = e.what();
        fail(why.rfind(path, 0) == 0 ? why : path + ": " + why);
    }
    // Every tensor the config asks for, checked against the file before anything of the config's size
    // is allocated: a few hundred bytes claiming a huge model must fail here, not after gigabytes.
    const size_t tensors_per_layer = 12;
    if (size_t(cfg.n_layer) * tensors_per_layer > f.entries.size())
        fail(path + ": corrupted: its config has " + std::to_string(cfg.n_layer) + " layers, the file holds " +
             std::to_string(f.entries.size()) + " tensors");
    const std::vector<ParamInfo> layout = param_layout(cfg);
    for (const auto& p : layout) {
        const SafeTensorsEntry* e = f.find(p.name);
        if (!e) fail(path + ": tensor " + p.name + " is missing");
        if (e->shape != p.shape) fail(path + ": tensor " + p.name + " has the wrong shape for the model's config");
        if (e->dtype != DType::f32 && e->dtype != DType::f64 && e->dtype != DType::bf16)
            fail(path + ": tensor " + p.name + " is not floating point");
    }
    Checkpoint ck;
    ck.metadata = f.metadata;
    ck.model = std::make_unique<Model<float>>(cfg);
    Model<float>& m = *ck.model;
    auto load_f32 = [&](const SafeTensorsEntry& e, float* dst) {
        if (e.dtype == DType::f32) {
            std::memcpy(dst, f.data(e), e.nbytes);
            return;
        }
        Tensor src;
        src.dtype = e.dtype;
        src.shape = e.shape;
        src.storage = alloc_aligned(e.nbytes);
        std::memcpy(src.raw(), f.data(e), e.nbytes);
        Tensor t = src.to(DType::f32);
        std::memcpy(dst, t.raw(), t.nbytes());
    };
    for (const auto& p : m.params) {
        load_f32(*f.find(p.name), m.w.data() + p.offset);
        if (!all_finite(m.w.data() + p.offset, size_t(p.numel)))
            fail(path + ": corrupted: tensor " + p.name + " holds values that are not finite");
    }
    const SafeTensorsEntry* om = f.find("opt.m");
    const SafeTensorsEntry* ov = f.find("opt.v");
    if (om || ov) {
        std::vector<int64_t> want = {m.num_params};
        if (!om || !ov || om->shape != want || ov->shape != want || om->dtype != DType::f32 || ov->dtype != DType::f32)
            fail(path + ": optimizer state does not match the model");
        ck.opt_m.resize(m.num_params);
        ck.opt_v.resize(m.num_params);
        load_f32(*om, ck.opt_m.data());
        load_f32(*ov, ck.opt_v.data());
        // AdamW's second moment is a running mean of squares: a negative one would make its square
        // root NaN at the first update.
        bool ok = all_finite(ck.opt_m.data(), ck.opt_m.size()) && all_finite(ck.opt_v.data(), ck.opt_v.size());
        for (float v : ck.opt_v) ok &= v >= 0;
        if (!ok)
            fail(path + ": corrupted: its optimizer state holds values that are not finite or negative second moments");
    }
    if (auto it = f.metadata.find("step"); it != f.metadata.end() && !parse_whole(it->second, 0, kMaxSteps, &ck.step))
        fail(path + ": corrupted: step '" + it->second + "' is not a whole number from 0 to " +
             std::to_string(kMaxSteps));
    return ck;
}

}  // namespace st
