// What training and evaluation ask of a device. The CPU engine runs Model<float> in host memory;
// the GPU engine (libst/gpu/) keeps weights, optimizer state and activations on the card and
// copies them back into the host model only to save a checkpoint.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "error.h"
#include "model.h"

namespace st {

class Comm;  // parallel/comm.h

struct AdamWStep {
    float lr, beta1, beta2, eps, weight_decay;
    float clip;  // <= 0: no clipping of the global gradient norm
    int64_t t;   // 1-based step number (bias correction)
};

struct StepStats {
    double loss;       // mean cross-entropy in nats
    double grad_norm;  // before clipping
};

struct DataParallel {
    Comm* comm = nullptr;
    double share = 1;   // this rank's examples / the global batch
    int64_t first = 0;  // its first example in the global batch: numbers the dropout masks
    bool shard_optimizer =
        false;  // ZeRO-1: each rank keeps and updates its part of the AdamW moments (parallel/shard.h)
};

// Device memory a training step of B windows of T tokens holds at its peak, by part, in bytes (GPU
// engines: every allocation of st's own, what peak_gib counts; not the CUDA context).
struct MemoryPlan {
    int64_t weights = 0;      // fp32 master weights, their bf16 mirror, the gradients
    int64_t optimizer = 0;    // the AdamW moments this process holds
    int64_t activations = 0;  // one pass's activations and scratch, the batch and its indices
    int64_t attention = 0;    // the attention layouts' index arrays
    int64_t workspace = 0;    // the matrix products' workspace
    int64_t chunk = 0;        // --recompute: tokens of the token-local work at a time
    int64_t host = 0;         // --offload: the layer inputs kept in pinned host memory (not in total())
    int64_t available = 0;    // what this process can hold on its card: what it holds now plus what is free
    int64_t total() const { return weights + optimizer + activations + attention + workspace; }
};

class Engine {
   public:
    virtual ~Engine() = default;
    virtual std::string name() const = 0;          // "cpu" or the GPU's name
    virtual double peak_gib() const { return 0; }  // device memory held at most (GPU engines)
    // Forward, backward and one AdamW update on B windows of T bytes; the dropout masks are a
    // function of dropout_seed. A loss or gradient norm that is not finite makes no update.
    virtual StepStats train_step(const uint8_t* inp, const uint8_t* tgt, int B, int T, uint64_t dropout_seed,
                                 const AdamWStep& opt) = 0;
    // Mean cross-entropy (nats) of tgt given inp without dropout.
    virtual double loss(const uint8_t* inp, const uint8_t* tgt, int B, int T) = 0;
    // The same loss and its gradient (num_params floats, the host model's layout), without dropout and
    // without an update: what the parity checks compare.
    virtual double gradient(const uint8_t* inp, const uint8_t* tgt, int B, int T, std::vector<float>* grad) = 0;
    // Brings the host model's weights and the optimizer moments up to date (before a save).
    virtual void sync_to_host() = 0;
    // Data-parallel training (parallel/comm.h): train_step then sums the ranks' weighted gradients and
    // losses before the update, so that every rank makes the update one process would make on the
    // whole batch, with the same dropout masks. Every rank calls sync_to_host (with a sharded
    // optimizer it gathers the moments).
    virtual void set_data_parallel(const DataParallel& dp) {
        (void)dp;
        fail(name() + ": data-parallel training is not supported on this device yet");
    }
    // Context parallelism: the processes of comm share every sequence, each running its consecutive
    // part of the positions in every layer (Model::split_gather); train_step, loss and gradient then
    // give what one process would give on the whole sequences, and every process makes the same
    // update. Within data parallelism, comm is the group sharing this process's examples, and
    // set_data_parallel's comm the whole job.
    virtual void set_context_parallel(Comm* comm) {
        (void)comm;
        fail(name() + ": context parallelism is not supported on this device yet");
    }
    // Context parallelism: how many values (keys, values and their gradients) this process has put
    // into its group's sums, all told.
    virtual int64_t exchanged_values() const { return 0; }
    virtual double optimizer_gib() const { return 0; }  // the AdamW moments this process holds (GPU engines)
    // Examples per forward and backward pass (0: all B of a step at once): train_step then adds up
    // the gradients of B / m passes before the update, holding the activations of m examples. m must
    // divide B.
    void set_micro_batch(int m) { micro_ = m; }
    // --recompute: tokens whose token-local work (LayerNorms, products, MLP, head) runs at a time; 0
    // lets the engine choose from the free memory.
    void set_chunk(int64_t tokens) { chunk_ = tokens; }
    // --offload (with --recompute): a training pass keeps its layer inputs in pinned host memory, all
    // but the last two, copied out in the forward and back in the backward behind the compute.
    void set_offload(bool on) { offload_ = on; }
    // What a training step of B windows of T would hold (GPU engines; the CPU's is empty). With
    // layouts, builds the attention layouts for T on the host (nothing on the device); without, leaves
    // the attention part at 0, for a search over lengths to scale.
    virtual MemoryPlan memory_plan(int B, int T, bool layouts) {
        (void)B, (void)T, (void)layouts;
        return {};
    }

   protected:
    int passes(int B) const {
        if (micro_ <= 0 || micro_ >= B) return 1;
        if (B % micro_)
            fail("--micro-batch " + std::to_string(micro_) + " does not divide the " + std::to_string(B) +
                 " examples of a step");
        return B / micro_;
    }
    int micro_ = 0;
    int64_t chunk_ = 0;
    bool offload_ = false;
};

// opt_m and opt_v (the AdamW moments) are resized to the model and updated by train_step.
std::unique_ptr<Engine> make_cpu_engine(Model<float>& m, std::vector<float>& opt_m, std::vector<float>& opt_v);

struct GpuOptions {
    int device = 0;
};
// Throws st::Error with a one-line reason where there is no GPU, no CUDA support in this build, or
// the model does not fit the card.
std::unique_ptr<Engine> make_gpu_engine(Model<float>& m, std::vector<float>& opt_m, std::vector<float>& opt_v,
                                        const GpuOptions& o);
bool gpu_available();
int gpu_count();  // CUDA devices this process sees (0 without CUDA)

// The engine --device asks for: "cpu", "cuda" or "cuda:N" (cli::setup's answer).
std::unique_ptr<Engine> make_engine(const std::string& device, Model<float>& m, std::vector<float>& opt_m,
                                    std::vector<float>& opt_v);

}  // namespace st
