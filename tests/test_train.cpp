// The training loop's promise that nothing trained is lost: when a step fails part way through a
// run (out of GPU memory, a loss that is not finite), the steps made so far are saved before the
// error is reported, and the message says where.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "checkpoint.h"
#include "engine.h"
#include "error.h"
#include "train.h"

using namespace st;

namespace {

// The CPU engine, failing at one step.
class FailingEngine final : public Engine {
   public:
    FailingEngine(std::unique_ptr<Engine> inner, int fail_at) : inner_(std::move(inner)), fail_at_(fail_at) {}
    std::string name() const override { return "failing"; }
    StepStats train_step(const uint8_t* inp, const uint8_t* tgt, int B, int T, uint64_t seed,
                         const AdamWStep& o) override {
        if (++calls_ == fail_at_) fail("out of GPU memory (simulated)");
        return inner_->train_step(inp, tgt, B, T, seed, o);
    }
    double loss(const uint8_t* inp, const uint8_t* tgt, int B, int T) override { return inner_->loss(inp, tgt, B, T); }
    double gradient(const uint8_t* inp, const uint8_t* tgt, int B, int T, std::vector<float>* g) override {
        return inner_->gradient(inp, tgt, B, T, g);
    }
    void sync_to_host() override { inner_->sync_to_host(); }

   private:
    std::unique_ptr<Engine> inner_;
    int fail_at_, calls_ = 0;
};

}  // namespace

TEST_CASE("a run that fails part way saves the steps made so far", "[train]") {
    char dir[] = "/tmp/st-test-train-XXXXXX";
    REQUIRE(mkdtemp(dir));
    const std::string out = std::string(dir) + "/m.st";
    Config c;
    c.n_layer = 1;
    c.d_model = 16;
    c.n_head = 2;
    c.n_ctx = 32;
    c.attn.stride = 8;
    c.attn.summary = 2;
    std::vector<uint8_t> text(4000);
    for (size_t i = 0; i < text.size(); i++) text[i] = uint8_t('a' + (i * 7 + i / 13) % 26);
    std::vector<uint8_t> val(text.begin(), text.begin() + 200);
    Recipe r;
    r.steps = 10;
    r.batch = 2;
    r.eval_every = 0;
    r.eval_windows = 2;
    TrainRun run;
    run.out = out;
    run.quiet = true;
    for (int fail_at : {1, 4}) {
        INFO("failing at step " << fail_at);
        std::remove(out.c_str());
        Model<float> m(c);
        m.init_weights(1);
        std::vector<float> om, ov;
        FailingEngine e(make_cpu_engine(m, om, ov), fail_at);
        std::string msg;
        try {
            train(e, m, om, ov, 0, r, run, text, val);
        } catch (const Error& err) {
            msg = err.what();
        }
        REQUIRE(msg.find("out of GPU memory (simulated)") == 0);
        if (fail_at == 1) {  // nothing trained yet: the error alone, no file written
            CHECK(msg.find("saved") == std::string::npos);
            CHECK(access(out.c_str(), F_OK) != 0);
        } else {
            CHECK(msg.find("the 3 steps so far are saved in " + out) != std::string::npos);
            Checkpoint ck = checkpoint_load(out);
            CHECK(ck.step == 3);
            CHECK(ck.model->w == m.w);
        }
    }
    std::remove(out.c_str());
    rmdir(dir);
}
