// Image models learn from whole pictures (libst/records.h): the framing, the offsets of held-out
// pictures, and that the training loop and the evaluation hand the engine exactly [0, picture] as
// input and the picture as target, never a window that straddles two pictures.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "engine.h"
#include "error.h"
#include "evaluate.h"
#include "records.h"
#include "train.h"

using namespace st;

namespace {

Config image_config(int h, int w, int c) {
    Config cfg;
    cfg.n_layer = 1;
    cfg.d_model = 16;
    cfg.n_head = 2;
    cfg.pos = PosKind::image;
    cfg.image_h = h, cfg.image_w = w, cfg.image_c = c;
    cfg.n_ctx = h * w * c;
    cfg.attn.pattern = Pattern::strided;
    cfg.attn.stride = w * c;
    return cfg;
}

// Pictures whose bytes name the picture and the position in it, so a window tells where it came from.
std::vector<uint8_t> pictures(int count, int size) {
    std::vector<uint8_t> v;
    for (int k = 0; k < count; k++)
        for (int i = 0; i < size; i++) v.push_back(uint8_t(1 + (k * 7 + i) % 251));
    return v;
}

// The CPU engine, keeping every (input, target) example it is given.
class RecordingEngine final : public Engine {
   public:
    explicit RecordingEngine(std::unique_ptr<Engine> inner) : inner_(std::move(inner)) {}
    std::string name() const override { return "recording"; }
    StepStats train_step(const uint8_t* inp, const uint8_t* tgt, int B, int T, uint64_t seed,
                         const AdamWStep& o) override {
        keep(inp, tgt, B, T);
        return inner_->train_step(inp, tgt, B, T, seed, o);
    }
    double loss(const uint8_t* inp, const uint8_t* tgt, int B, int T) override {
        keep(inp, tgt, B, T);
        return inner_->loss(inp, tgt, B, T);
    }
    double gradient(const uint8_t* inp, const uint8_t* tgt, int B, int T, std::vector<float>* g) override {
        return inner_->gradient(inp, tgt, B, T, g);
    }
    void sync_to_host() override { inner_->sync_to_host(); }
    std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> seen;

   private:
    void keep(const uint8_t* inp, const uint8_t* tgt, int B, int T) {
        for (int b = 0; b < B; b++)
            seen.push_back({std::vector<uint8_t>(inp + b * T, inp + (b + 1) * T),
                            std::vector<uint8_t>(tgt + b * T, tgt + (b + 1) * T)});
    }
    std::unique_ptr<Engine> inner_;
};

}  // namespace

TEST_CASE("records are framed by a start byte and refused when partial", "[records]") {
    const Config c = image_config(2, 3, 1);
    std::vector<uint8_t> data = pictures(3, 6);
    std::vector<uint8_t> framed = frame_records(data.data(), data.size(), c, "x");
    REQUIRE(framed.size() == 3 * 7);
    for (int k = 0; k < 3; k++) {
        CHECK(framed[size_t(k) * 7] == 0);
        CHECK(std::vector<uint8_t>(data.begin() + k * 6, data.begin() + (k + 1) * 6) ==
              std::vector<uint8_t>(framed.begin() + k * 7 + 1, framed.begin() + (k + 1) * 7));
    }
    CHECK(record_shape(c) == "2x3x1");
    CHECK_THROWS_WITH(frame_records(data.data(), 17, c, "x"),
                      "x: 17 bytes is not a whole number of 2x3x1 pictures (6 bytes each)");
    CHECK_THROWS_AS(frame_records(data.data(), 0, c, "x"), Error);
}

TEST_CASE("held-out pictures: all of them, or spread evenly", "[records]") {
    CHECK(record_offsets(5 * 7, 6, 64) == std::vector<int64_t>{0, 7, 14, 21, 28});
    CHECK(record_offsets(5 * 7, 6, 3) == std::vector<int64_t>{0, 14, 28});
    CHECK(record_offsets(5 * 7, 6, 1) == std::vector<int64_t>{0});
    CHECK(record_offsets(6, 6, 4).empty());
}

TEST_CASE("an image model trains and evaluates on whole pictures", "[records]") {
    char dir[] = "/tmp/st-test-records-XXXXXX";
    REQUIRE(mkdtemp(dir));
    const Config c = image_config(4, 4, 1);
    const int T = c.n_ctx;
    std::vector<uint8_t> train_data = pictures(20, T), val_data = pictures(5, T);
    std::vector<uint8_t> train_framed = frame_records(train_data.data(), train_data.size(), c, "train");
    std::vector<uint8_t> val_framed = frame_records(val_data.data(), val_data.size(), c, "val");
    Model<float> m(c);
    m.init_weights(1);
    std::vector<float> om, ov;
    RecordingEngine e(make_cpu_engine(m, om, ov));
    Recipe r;
    r.steps = 6;
    r.batch = 4;
    r.eval_every = 0;
    r.eval_windows = 100;  // more than there are: every held-out picture
    TrainRun run;
    run.out = std::string(dir) + "/m.st";
    run.quiet = true;
    train(e, m, om, ov, 0, r, run, train_framed, val_framed);
    // 6 steps of 4 training examples, then the 5 held-out pictures once.
    REQUIRE(e.seen.size() == 6 * 4 + 5);
    std::set<std::string> train_pics, val_pics;  // pictures as strings of their bytes
    for (int k = 0; k < 20; k++)
        train_pics.insert(std::string(train_data.begin() + k * T, train_data.begin() + (k + 1) * T));
    for (int k = 0; k < 5; k++) val_pics.insert(std::string(val_data.begin() + k * T, val_data.begin() + (k + 1) * T));
    for (size_t i = 0; i < e.seen.size(); i++) {
        const auto& [inp, tgt] = e.seen[i];
        INFO("example " << i);
        CHECK(inp[0] == 0);
        CHECK(std::vector<uint8_t>(inp.begin() + 1, inp.end()) ==
              std::vector<uint8_t>(tgt.begin(), tgt.end() - 1));  // [0, target...]
        CHECK((i < 24 ? train_pics : val_pics).count(std::string(tgt.begin(), tgt.end())) == 1);
    }
    std::remove(run.out.c_str());
    rmdir(dir);
}
