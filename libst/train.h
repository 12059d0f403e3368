// The training loop: batches, schedule, clipping, evaluation, checkpoints, signals, metrics.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "engine.h"
#include "model.h"
#include "parallel/comm.h"

namespace st {

// The recipe: everything that decides the numbers a run produces. Stored in each checkpoint so that
// --resume continues the same run.
struct Recipe {
    int64_t steps = 2000;
    int batch = 16;
    float lr = 1e-3f;
    float lr_min = -1;  // < 0: lr / 10
    int64_t warmup = 100;
    float weight_decay = 0.01f;
    float clip = 1.0f;
    float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
    uint64_t seed = 1;
    float val_frac = 0.05f;  // the held-out tail of the data, unless a validation file is given
    int eval_every = 200;
    int eval_windows = 64;
};
nlohmann::json recipe_to_json(const Recipe&);
// st::Error "bad training recipe: ..." on a missing field or one outside what st-train's options allow.
Recipe recipe_from_json(const nlohmann::json&);
float lr_at(const Recipe&, int64_t step);

struct TrainRun {
    std::string out;         // checkpoint path ("-o")
    std::string log;         // JSON-lines metrics, "" for none
    std::string data_name;   // for messages
    int64_t save_every = 0;  // 0: only at the end (and on a signal)
    int64_t stop_after = 0;  // > 0: stop (and save) after this many steps of this run
    bool quiet = false;
    bool progress = false;                        // a live progress line (stderr is a terminal)
    std::map<std::string, std::string> metadata;  // stored in every checkpoint
    // Data-parallel training: the job's collectives (null: one process). Every rank draws the windows
    // of its share of the global batch (parallel/shard.h); only rank 0 writes checkpoints and the log.
    Comm* comm = nullptr;
    // Context parallelism (Engine::set_context_parallel): groups of this many consecutive ranks share
    // every sequence of their examples, each running its part of the positions (1: off); the groups
    // divide the batch. Every rank evaluates every held-out window with its group.
    int context_parallel = 1;
    bool shard_optimizer = false;  // ZeRO-1: each rank holds and updates its part of the AdamW moments
    int micro_batch = 0;           // > 0: examples per forward/backward pass (Engine::set_micro_batch)
    int64_t chunk = 0;             // --recompute's tokens at a time (Engine::set_chunk; 0: the engine's choice)
    bool offload = false;          // --offload (Engine::set_offload)
};

// Runs from ck_step to recipe.steps (or until stopped) on the engine, which works on m, opt_m and
// opt_v. Returns the exit status: 0 when done or stopped by --stop-after, 128 + signal number when
// interrupted (after saving).
int train(Engine& e, Model<float>& m, std::vector<float>& opt_m, std::vector<float>& opt_v, int64_t start_step,
          const Recipe& r, const TrainRun& run, std::span<const uint8_t> train_bytes,
          const std::vector<uint8_t>& val_bytes);

}  // namespace st
