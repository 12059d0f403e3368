// Saving and loading models and training state.
#include "checkpoint.h"

#include <cstring>

#include "error.h"
#include "io/safetensors.h"
#include "tensor.h"

namespace st {

static const char* kFormat = "st-model";

void checkpoint_save(const std::string& path, const Model<float>& m, const float* opt_m, const float* opt_v, int64_t step,
                     const std::map<std::string, std::string>& extra_metadata) {
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

Checkpoint checkpoint_load(const std::string& path) {
    SafeTensors f = safetensors_load(path);
    auto fmt = f.metadata.find("format");
    if (fmt == f.metadata.end() || fmt->second != kFormat)
        fail(path + ": not an st model (a safetensors file without st's metadata)");
    auto cfg_it = f.metadata.find("config");
    if (cfg_it == f.metadata.end()) fail(path + ": not an st model (no config in its metadata)");
    Config cfg;
    try {
        cfg = config_from_json(nlohmann::json::parse(cfg_it->second));
    } catch (const nlohmann::json::exception& e) {
        fail(path + ": bad model config: " + e.what());
    } catch (const Error& e) {
        fail(path + ": " + e.what());
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
        const SafeTensorsEntry* e = f.find(p.name);
        if (!e) fail(path + ": tensor " + p.name + " is missing");
        if (e->shape != p.shape) fail(path + ": tensor " + p.name + " has the wrong shape for the model's config");
        if (e->dtype != DType::f32 && e->dtype != DType::f64 && e->dtype != DType::bf16)
            fail(path + ": tensor " + p.name + " is not floating point");
        load_f32(*e, m.w.data() + p.offset);
    }
    const SafeTensorsEntry* om = f.find("opt.m");
    const SafeTensorsEntry* ov = f.find("opt.v");
    if (om && ov) {
        std::vector<int64_t> want = {m.num_params};
        if (om->shape != want || ov->shape != want || om->dtype != DType::f32 || ov->dtype != DType::f32)
            fail(path + ": optimizer state does not match the model");
        ck.opt_m.resize(m.num_params);
        ck.opt_v.resize(m.num_params);
        load_f32(*om, ck.opt_m.data());
        load_f32(*ov, ck.opt_v.data());
    }
    auto st = f.metadata.find("step");
    if (st != f.metadata.end()) {
        try {
            ck.step = std::stoll(st->second);
        } catch (const std::exception&) {
            fail(path + ": bad step in metadata");
        }
    }
    return ck;
}

}  // namespace st
