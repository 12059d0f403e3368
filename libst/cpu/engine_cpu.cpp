// The CPU engine: Model<float> in host memory with the AdamW and clipping of libst/cpu/ops.h.
#include <algorithm>
#include <cmath>

#include "cpu/ops.h"
#include "engine.h"
#include "error.h"
#include "parallel/comm.h"
#include "parallel/shard.h"

namespace st {

namespace {

class CpuEngine final : public Engine {
   public:
    CpuEngine(Model<float>& m, std::vector<float>& om, std::vector<float>& ov) : m_(m), om_(om), ov_(ov) {
        om_.resize(size_t(m.num_params));
        ov_.resize(size_t(m.num_params));
        own_ = {0, m.num_params};
    }
    std::string name() const override { return "cpu"; }
    StepStats train_step(const uint8_t* inp, const uint8_t* tgt, int B, int T, uint64_t dropout_seed,
                         const AdamWStep& o) override {
        m_.dropout_seed = dropout_seed;
        std::fill(m_.g.begin(), m_.g.end(), 0.0f);
        StepStats st;
        const int n = passes(B), M = B / n;
        st.loss = 0;
        for (int k = 0; k < n; k++) {  // each pass adds the gradient of its mean loss
            m_.dropout_first = first_ + int64_t(k) * M;
            st.loss += m_.forward(inp + size_t(k) * M * T, tgt + size_t(k) * M * T, M, T, true) / n;
            m_.backward();
        }
        // The mean over the passes, and over the ranks: their shares, weighted.
        const double scale = share(T) / n;
        if (scale != 1.0) scale_inplace(m_.g.data(), float(scale), m_.num_params);
        st.loss = add_ranks(comm_ ? comm_ : cp_, st.loss * share(T), true);  // the whole job's
        st.grad_norm = std::sqrt(sum_squares(m_.g.data(), m_.num_params));
        if (!std::isfinite(st.loss) || !std::isfinite(st.grad_norm)) return st;  // no update; the caller reports it
        if (o.clip > 0 && st.grad_norm > o.clip)
            scale_inplace(m_.g.data(), float(o.clip / st.grad_norm), m_.num_params);
        for (const auto& p : m_.params) {  // with a sharded optimizer, only this rank's part of each parameter
            const int64_t lo = std::max(p.offset, own_.begin), hi = std::min(p.offset + p.numel, own_.end);
            if (lo < hi)
                adamw_update(m_.w.data() + lo, m_.g.data() + lo, om_.data() + lo, ov_.data() + lo, hi - lo, o.lr,
                             o.beta1, o.beta2, o.eps, p.decay ? o.weight_decay : 0.0f, o.t);
        }
        if (shard_) gather_parts(m_.w);
        return st;
    }
    double loss(const uint8_t* inp, const uint8_t* tgt, int B, int T) override {
        const double local = m_.forward(inp, tgt, B, T, false);
        return cp_ ? add_ranks(cp_, local * part_share(T), false) : local;  // data parallel: each rank its own
    }
    double gradient(const uint8_t* inp, const uint8_t* tgt, int B, int T, std::vector<float>* grad) override {
        std::fill(m_.g.begin(), m_.g.end(), 0.0f);
        const float p = m_.cfg.dropout;
        m_.cfg.dropout = 0;
        double loss = m_.forward(inp, tgt, B, T, true);
        m_.backward();
        m_.cfg.dropout = p;
        if (cp_) {  // the group's, on its examples
            scale_inplace(m_.g.data(), float(part_share(T)), m_.num_params);
            loss = add_ranks(cp_, loss * part_share(T), true);
        }
        *grad = m_.g;
        return loss;
    }
    void sync_to_host() override {
        if (!shard_) return;
        gather_parts(om_);
        gather_parts(ov_);
    }
    void set_context_parallel(Comm* comm) override {
        cp_ = comm;
        m_.split_rank = comm->rank(), m_.split_world = comm->world();
        m_.split_gather = [comm](float* x, const std::vector<size_t>& n) { return comm->allgather(x, n); };
        m_.split_add = [comm](float* x, const std::vector<size_t>& n) { return comm->add_to_owners(x, n); };
    }
    int64_t exchanged_values() const override { return m_.split_values; }
    void set_data_parallel(const DataParallel& dp) override {
        comm_ = dp.comm, share_ = dp.share;
        first_ = dp.first;
        shard_ = dp.shard_optimizer;
        if (shard_) own_ = shard_range(m_.num_params, comm_->rank(), comm_->world());
    }

   private:
    // This process's part of the step's mean: its positions of every sequence of T (context
    // parallel), of its examples (data parallel).
    double part_share(int T) const {
        if (!cp_) return 1.0;
        const SequencePart p = sequence_part(T, cp_->rank(), cp_->world());
        return double(p.hi - p.lo) / T;
    }
    double share(int T) const { return (comm_ ? share_ : 1.0) * part_share(T); }
    // The weighted losses of c's ranks added (and, with grads, their gradients): what one process
    // would have. A loss alone is a float on the wire, as the gradients are.
    double add_ranks(Comm* c, double weighted_loss, bool grads) {
        if (!c) return weighted_loss;
        if (grads) c->allreduce_sum(m_.g.data(), size_t(m_.num_params));
        float loss = float(weighted_loss);
        c->allreduce_sum(&loss, 1);
        return loss;
    }

    // Every rank's part of x to every rank: the other parts zeroed and the ranks' x added (exact).
    // The same arithmetic as the GPUs' all-gather; on the CPU the moments are not made smaller.
    void gather_parts(std::vector<float>& x) {
        std::fill(x.begin(), x.begin() + own_.begin, 0.0f);
        std::fill(x.begin() + own_.end, x.end(), 0.0f);
        comm_->allreduce_sum(x.data(), x.size());
    }

    Model<float>& m_;
    std::vector<float>&om_, &ov_;
    Comm* comm_ = nullptr;  // data parallel: the whole job
    Comm* cp_ = nullptr;    // context parallel: the processes sharing this one's sequences
    double share_ = 1;
    int64_t first_ = 0;  // this rank's first example in the global batch: numbers the dropout masks
    bool shard_ = false;
    Range own_;  // the part of the parameters whose moments this process updates
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(Model<float>& m, std::vector<float>& opt_m, std::vector<float>& opt_v) {
    return std::make_unique<CpuEngine>(m, opt_m, opt_v);
}

}  // namespace st
