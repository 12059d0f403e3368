// The CPU engine (Model<float> with the AdamW and clipping of libst/cpu/ops.h), and make_engine,
// which picks the engine --device names.
#include <cmath>

#include "cpu/ops.h"
#include "engine.h"
#include "error.h"

namespace st {

namespace {

class CpuEngine final : public Engine {
   public:
    CpuEngine(Model<float>& m, std::vector<float>& om, std::vector<float>& ov) : m_(m), om_(om), ov_(ov) {
        om_.resize(size_t(m.num_params));
        ov_.resize(size_t(m.num_params));
    }
    std::string name() const override { return "cpu"; }
    StepStats train_step(const uint8_t* inp, const uint8_t* tgt, int B, int T, uint64_t dropout_seed,
                         const AdamWStep& o) override {
        m_.dropout_seed = dropout_seed;
        std::fill(m_.g.begin(), m_.g.end(), 0.0f);
        StepStats st;
        st.loss = m_.forward(inp, tgt, B, T, true);
        m_.backward();
        if (comm_) {   // the whole batch's mean loss and gradient: the ranks' shares, weighted
            scale_inplace(m_.g.data(), float(share_), m_.num_params);
            comm_->allreduce_sum(m_.g.data(), size_t(m_.num_params));
            float loss = float(st.loss * share_);
            comm_->allreduce_sum(&loss, 1);
            st.loss = loss;
        }
        if (!std::isfinite(st.loss)) return st;   // the caller reports it; the weights stay as they were
        st.grad_norm = std::sqrt(sum_squares(m_.g.data(), m_.num_params));
        if (o.clip > 0 && st.grad_norm > o.clip) scale_inplace(m_.g.data(), float(o.clip / st.grad_norm), m_.num_params);
        for (const auto& p : m_.params)
            adamw_update(m_.w.data() + p.offset, m_.g.data() + p.offset, om_.data() + p.offset, ov_.data() + p.offset,
                         p.numel, o.lr, o.beta1, o.beta2, o.eps, p.decay ? o.weight_decay : 0.0f, o.t);
        return st;
    }
    double loss(const uint8_t* inp, const uint8_t* tgt, int B, int T) override { return m_.forward(inp, tgt, B, T, false); }
    double gradient(const uint8_t* inp, const uint8_t* tgt, int B, int T, std::vector<float>* grad) override {
        std::fill(m_.g.begin(), m_.g.end(), 0.0f);
        const float p = m_.cfg.dropout;
        m_.cfg.dropout = 0;
        double loss = m_.forward(inp, tgt, B, T, true);
        m_.backward();
        m_.cfg.dropout = p;
        *grad = m_.g;
        return loss;
    }
    void sync_to_host() override {}
    void set_data_parallel(Comm* comm, double share, int64_t first) override {
        comm_ = comm, share_ = share;
        m_.dropout_first = first;
    }

   private:
    Model<float>& m_;
    std::vector<float>&om_, &ov_;
    Comm* comm_ = nullptr;
    double share_ = 1;
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(Model<float>& m, std::vector<float>& opt_m, std::vector<float>& opt_v) {
    return std::make_unique<CpuEngine>(m, opt_m, opt_v);
}

std::unique_ptr<Engine> make_engine(const std::string& device, Model<float>& m, std::vector<float>& opt_m,
                                    std::vector<float>& opt_v) {
    if (device == "cpu") return make_cpu_engine(m, opt_m, opt_v);
    GpuOptions o;
    if (device.rfind("cuda:", 0) == 0) o.device = std::stoi(device.substr(5));
    return make_gpu_engine(m, opt_m, opt_v, o);
}

}  // namespace st
