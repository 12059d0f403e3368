// Writes what the PyTorch parity check reads: a model file (st's own format, through
// checkpoint_save) and, beside it, st's loss and float32 gradients on one batch.
//   st-parity-dump CONFIG_JSON OUT_DIR [cpu|cuda]   -> OUT_DIR/model.st, OUT_DIR/grads.st
// (cuda: the loss and gradients of the GPU engine, bf16 activations).
#include <cstdio>
#include <string>

#include "checkpoint.h"
#include "engine.h"
#include "io/safetensors.h"
#include "rng.h"

using namespace st;

int main(int argc, char** argv) {
    if (argc != 3 && argc != 4) {
        std::fprintf(stderr, "usage: st-parity-dump CONFIG_JSON OUT_DIR [cpu|cuda]\n");
        return 2;
    }
    try {
        Config c = config_from_json(nlohmann::json::parse(argv[1]));
        Model<float> m(c);
        m.init_weights(11);
        // The paper's zero head would leave every other gradient zero: give every weight a small
        // random offset so that each tensor's gradient is tested.
        Rng r(12);
        for (auto& x : m.w) x += float(0.02 * r.normal());
        const int B = 2, T = c.n_ctx;
        std::vector<uint8_t> batch(size_t(B) * (T + 1)), inp, tgt;
        for (auto& b : batch) b = uint8_t(r.next() % uint64_t(c.vocab));
        for (int b = 0; b < B; b++) {
            inp.insert(inp.end(), batch.begin() + b * (T + 1), batch.begin() + b * (T + 1) + T);
            tgt.insert(tgt.end(), batch.begin() + b * (T + 1) + 1, batch.begin() + (b + 1) * (T + 1));
        }
        std::vector<float> om, ov, grad;
        auto engine = make_engine(argc == 4 ? argv[3] : "cpu", m, om, ov);
        double loss = engine->gradient(inp.data(), tgt.data(), B, T, &grad);
        std::string dir = argv[2];
        checkpoint_save(dir + "/model.st", m, nullptr, nullptr, 0, {});
        std::vector<SafeTensorsWrite> ts = {{"batch", DType::u8, {B, T + 1}, batch.data()}};
        for (const auto& p : m.params) ts.push_back({"grad." + p.name, DType::f32, p.shape, grad.data() + p.offset});
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.17g", loss);
        safetensors_save(dir + "/grads.st", ts, {{"loss", buf}, {"config", config_to_json(c).dump()}});
    } catch (const std::exception& e) {
        std::fprintf(stderr, "st-parity-dump: %s\n", e.what());
        return 1;
    }
    return 0;
}
