// The training loop.
#include "train.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <memory>

#include "checkpoint.h"
#include "error.h"
#include "evaluate.h"
#include "io/file.h"
#include "io/json.h"
#include "memory.h"
#include "parallel/shard.h"
#include "records.h"
#include "rng.h"

namespace st {

nlohmann::json recipe_to_json(const Recipe& r) {
    return {{"steps", r.steps},
            {"batch", r.batch},
            {"lr", r.lr},
            {"lr_min", r.lr_min},
            {"warmup", r.warmup},
            {"weight_decay", r.weight_decay},
            {"clip", r.clip},
            {"beta1", r.beta1},
            {"beta2", r.beta2},
            {"eps", r.eps},
            {"seed", r.seed},
            {"val_frac", r.val_frac},
            {"eval_every", r.eval_every},
            {"eval_windows", r.eval_windows}};
}

Recipe recipe_from_json(const nlohmann::json& j) {
    Recipe r;
    try {
        const int64_t big = kMaxSteps;
        r.steps = json_int(j, "steps", 0, big);
        r.batch = int(json_int(j, "batch", 1, 1 << 20));
        r.lr = float(json_real(j, "lr", 0, 10));
        r.lr_min = float(json_real(j, "lr_min", -1, 10));
        r.warmup = json_int(j, "warmup", 1, big);
        r.weight_decay = float(json_real(j, "weight_decay", 0, 10));
        r.clip = float(json_real(j, "clip", 0, 1e9));
        r.beta1 = float(json_real(j, "beta1", 0, 1));
        r.beta2 = float(json_real(j, "beta2", 0, 1));
        r.eps = float(json_real(j, "eps", 0, 1));
        r.seed = uint64_t(json_int(j, "seed", 0, int64_t(1) << 62));
        r.val_frac = float(json_real(j, "val_frac", 0.0001, 0.9));
        r.eval_every = int(json_int(j, "eval_every", 0, 1 << 30));
        r.eval_windows = int(json_int(j, "eval_windows", 1, 1 << 24));
    } catch (const Error& e) {
        fail(std::string("bad training recipe: ") + e.what());
    }
    return r;
}

float lr_at(const Recipe& r, int64_t step) {
    double lr = r.lr, lo = r.lr_min < 0 ? r.lr / 10 : r.lr_min;
    if (step < r.warmup) return float(lr * double(step + 1) / double(r.warmup));
    double p = double(step - r.warmup) / double(std::max<int64_t>(1, r.steps - r.warmup));
    return float(lo + 0.5 * (lr - lo) * (1.0 + std::cos(3.141592653589793 * std::min(1.0, p))));
}

static volatile std::sig_atomic_t g_signal = 0;
static volatile int64_t g_signal_ns = 0;
static int64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
// The first SIGINT, SIGTERM or SIGHUP (a closed terminal) asks for a save and a clean exit. A second
// one a second or more later (Ctrl-C again) ends the process at once, removing the temporary file of
// a save in progress: the model file stays as it was. One within the second is the same request sent
// twice (timeout(1) signals the child and then its whole process group) and is ignored.
static void on_signal(int s) {
    int64_t now = monotonic_ns();
    if (!g_signal) {
        g_signal = s;
        g_signal_ns = now;
    } else if (now - g_signal_ns > 1000000000) {
        remove_partial_output();
        signal(s, SIG_DFL);
        raise(s);
    }
}

static constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};

// Steps in a row whose loss or gradient is not finite that are skipped (no update, said on stderr and
// in the log) before the run stops without saving: one bad batch is survivable, but weights that
// give no finite loss on several batches have diverged, and must not replace the last model saved.
static constexpr int kMaxSkippedSteps = 5;

// A run resumed from step K goes on from K: the lines a killed run logged after its last checkpoint
// (steps past K) describe steps that are made again, so they go, and the log reads as one run.
static void cut_log_after(const std::string& path, int64_t step) {
    if (::access(path.c_str(), F_OK) != 0) return;
    const std::vector<uint8_t> bytes = read_file(path);
    std::string kept;
    size_t dropped = 0;
    for (size_t at = 0; at < bytes.size();) {
        const uint8_t* end = static_cast<const uint8_t*>(std::memchr(bytes.data() + at, '\n', bytes.size() - at));
        const size_t next = end ? size_t(end - bytes.data()) + 1 : bytes.size();
        const std::string line(bytes.begin() + ptrdiff_t(at), bytes.begin() + ptrdiff_t(next));
        at = next;
        if (json_depth(line, kJsonMaxDepth) > kJsonMaxDepth) {  // not st's: kept as it is
            kept += line;
            continue;
        }
        const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);  // not JSON: kept as it is
        const auto it = j.is_object() ? j.find("step") : j.end();
        if (j.is_object() && it != j.end() && it->is_number_integer() && it->get<int64_t>() > step) {
            dropped++;
            continue;
        }
        kept += line;
    }
    if (dropped > 0) write_file_atomic(path, kept.data(), kept.size());
}

static void format_duration(char* buf, size_t n, double s) {
    if (s < 90)
        std::snprintf(buf, n, "%.0fs", s);
    else if (s < 5400)
        std::snprintf(buf, n, "%.0fm", s / 60);
    else
        std::snprintf(buf, n, "%.1fh", s / 3600);
}

// Context parallelism: the values a process of the P sharing each of B examples must exchange in a
// training step, on average: in every layer, the keys and values of the rows its queries read from
// the others' parts, and in the backward their gradients. (The layouts alternate by layer.)
static double exchange_floor(Model<float>& m, int P, int B) {
    const int T = m.cfg.n_ctx, L = m.cfg.n_layer;
    int64_t rows = 0;
    for (int l = 0; l < std::min(L, 2); l++) rows += foreign_reads(m.layout(l, T), P) * ((L - l + 1) / 2);
    return double(rows) * 2 * 2 * m.cfg.d_model * B / P;
}

int train(Engine& e, Model<float>& m, std::vector<float>& opt_m, std::vector<float>& opt_v, int64_t start_step,
          const Recipe& r, const TrainRun& run, std::span<const uint8_t> train_bytes,
          const std::vector<uint8_t>& val_bytes) {
    const int T = m.cfg.n_ctx, B = r.batch;
    const int rank = run.comm ? run.comm->rank() : 0, world = run.comm ? run.comm->world() : 1;
    // The groups that divide the batch: with context parallelism, P processes share each example.
    const int P = run.context_parallel, batch_rank = rank / P, batch_world = world / P;
    // Settings every rank checks for every rank, so that all of them stop at once with one message.
    if (world % P)
        throw JobError("--context-parallel " + std::to_string(P) + " does not divide the job's " +
                       std::to_string(world) + " processes");
    if (B < batch_world)
        throw JobError("--batch " + std::to_string(B) + " is smaller than the job's " + std::to_string(batch_world) +
                       (P > 1 ? " groups of processes" : " processes") + ": each needs an example");
    if (P > 1 && B % batch_world)
        throw JobError("--batch " + std::to_string(B) + " does not divide among the job's " +
                       std::to_string(batch_world) + " groups of " + std::to_string(P) +
                       " processes (--context-parallel): each group's exchanges must be alike");
    if (T < P)
        throw JobError("--ctx " + std::to_string(T) + " is shorter than the " + std::to_string(P) +
                       " processes that share each sequence: each needs a position of it");
    for (int r = 0; r < batch_world && run.micro_batch > 0; r++) {
        const int64_t n = batch_share(B, r, batch_world).size();
        if (run.micro_batch >= n || n % run.micro_batch == 0) continue;
        std::string whose = "of each step (--batch)";
        if (batch_world > 1 && P > 1)
            whose = "each group of " + std::to_string(P) + " processes computes of each step (--batch " +
                    std::to_string(B) + " over " + std::to_string(batch_world) + " groups)";
        else if (batch_world > 1)
            whose = "rank " + std::to_string(r) + " computes of each step (--batch " + std::to_string(B) + " over " +
                    std::to_string(world) + " processes)";
        throw JobError("--micro-batch " + std::to_string(run.micro_batch) + " does not divide the " +
                       std::to_string(n) + " examples " + whose);
    }
    const Range share = batch_share(B, batch_rank, batch_world);  // the examples of each step this process computes
    std::unique_ptr<Comm> group;                                  // the processes that share this one's sequences
    if (P > 1) {
        if (P < world) group = make_group_comm(*run.comm, P);
        e.set_context_parallel(group ? group.get() : run.comm);  // one group: the job's own collectives
    }
    if (batch_world > 1) e.set_data_parallel({run.comm, double(share.size()) / B, share.begin, run.shard_optimizer});
    e.set_micro_batch(run.micro_batch);
    e.set_chunk(run.chunk);
    e.set_offload(run.offload);
    check_memory(e, m.cfg, int(share.size()), T);  // now, not after minutes of work
    const int eval_batch =
        run.micro_batch > 0 ? std::min(B, run.micro_batch) : B;  // no more memory than a training pass
    const bool writer = rank == 0;
    // Examples start anywhere in a stream, or at whole records for image models (framed bytes: records.h).
    const bool records = reads_records(m.cfg);
    const int64_t stride = records ? T + 1 : 1;
    const int64_t span =
        records ? int64_t(train_bytes.size()) / stride : int64_t(train_bytes.size()) - T;  // example starts / stride
    if (span < 1) fail(run.data_name + ": too short for one window of the context");
    const char* unit = records ? "bits per dim" : "bits per byte";  // the same number: a byte is a dimension
    const std::vector<int64_t> val_offs = records ? record_offsets(int64_t(val_bytes.size()), T, r.eval_windows)
                                                  : spread_offsets(int64_t(val_bytes.size()), T, r.eval_windows);

    std::FILE* log = nullptr;
    if (!run.log.empty() && writer) {
        if (start_step > 0) cut_log_after(run.log, start_step);
        log = std::fopen(run.log.c_str(), start_step > 0 ? "a" : "w");
        if (!log) fail(run.log + ": " + std::strerror(errno));
    }
    auto emit = [&](const nlohmann::json& j) {
        if (!log) return;
        std::fprintf(log, "%s\n", j.dump().c_str());
        std::fflush(log);
    };
    nlohmann::json recipe_json = recipe_to_json(r);
    int64_t saved_at = -1;           // the step of the last checkpoint this run wrote
    auto save = [&](int64_t step) {  // every rank: a sharded optimizer's moments are gathered
        e.sync_to_host();
        if (!writer) return;
        if (!all_finite(m.w.data(), m.w.size()) || !all_finite(opt_m.data(), opt_m.size()) ||
            !all_finite(opt_v.data(), opt_v.size()))
            fail("the weights or optimizer state are not finite after step " + std::to_string(step) + ": not saved, " +
                 run.out + " keeps the last model saved");
        auto md = run.metadata;
        md["recipe"] = recipe_json.dump();
        checkpoint_save(run.out, m, opt_m.data(), opt_v.data(), step, md);
        saved_at = step;
    };
    // Each rank evaluates its share of the held-out windows; the sum of their losses goes round. With
    // context parallelism every rank evaluates them all, with its group.
    const Range val_share = batch_share(int(val_offs.size()), P > 1 ? 0 : rank, P > 1 ? 1 : world);
    const std::vector<int64_t> my_val_offs(val_offs.begin() + val_share.begin, val_offs.begin() + val_share.end);
    auto evaluate = [&](int64_t step) {
        double nats = my_val_offs.empty() ? 0 : eval_windows(e, val_bytes.data(), my_val_offs, T, eval_batch);
        if (run.comm && P == 1) {
            float sum = float(nats * double(my_val_offs.size()));
            run.comm->allreduce_sum(&sum, 1);
            nats = double(sum) / double(val_offs.size());
        }
        emit({{"step", step}, {"val_loss", nats}, {"val_bits", nats / kLn2}});
        if (run.progress) std::fprintf(stderr, "\r\033[K");
        if (!run.quiet) std::fprintf(stderr, "step %lld: held-out %.4f %s\n", (long long)step, nats / kLn2, unit);
        return nats;
    };

    struct sigaction sa = {}, old_actions[std::size(kStopSignals)] = {};
    sa.sa_handler = on_signal;
    for (size_t i = 0; i < std::size(kStopSignals); i++) sigaction(kStopSignals[i], &sa, &old_actions[i]);
    g_signal = 0;

    const int Bl = int(share.size());
    // Several windows a step are gathered into inp and tgt; one (the long-sequence runs) is read where
    // it lies in the data, tgt being inp one byte on, so a window of 16M bytes is never copied.
    std::vector<uint8_t> inp(Bl > 1 ? size_t(Bl) * T : 0), tgt(inp.size());
    const auto t_start = std::chrono::steady_clock::now();
    int status = 0;
    int64_t step = start_step;
    int skipped = 0;  // steps in a row without an update
    bool diverged = false;
    double tok_s = 0;
    int64_t step_exchange = 0;  // context parallelism: the values this process contributed to the exchanges last step
    // A failure part way (out of GPU memory at an evaluation, a loss that is not finite) saves the
    // steps made so far before it is reported: nothing trained is lost.
    try {
        while (step < r.steps) {
            auto t0 = std::chrono::steady_clock::now();
            const uint8_t *x = inp.data(), *y = tgt.data();
            for (int i = 0; i < Bl; i++) {  // example b of the global batch: the same windows on any number of ranks
                const int64_t b = share.begin + i;
                int64_t off = int64_t(hash64(r.seed, uint64_t(step), uint64_t(b)) % uint64_t(span)) * stride;
                if (Bl == 1) {
                    x = &train_bytes[off], y = x + 1;
                    break;
                }
                std::copy(&train_bytes[off], &train_bytes[off] + T, inp.begin() + size_t(i) * T);
                std::copy(&train_bytes[off + 1], &train_bytes[off + 1] + T, tgt.begin() + size_t(i) * T);
            }
            const float lr = lr_at(r, step);
            const int64_t exchanged_before = e.exchanged_values();
            const StepStats st = e.train_step(x, y, Bl, T, hash64(r.seed ^ 0xd5a61266f0c9392cull, uint64_t(step)),
                                              {lr, r.beta1, r.beta2, r.eps, r.weight_decay, r.clip, step + 1});
            const double loss = st.loss, norm = st.grad_norm;
            step++;
            if (!std::isfinite(loss) || !std::isfinite(norm)) {
                skipped++;
                const std::string what = std::isfinite(loss) ? "gradient norm" : "loss";
                emit({{"step", step}, {"skipped", what + " not finite"}});
                if (run.progress) std::fprintf(stderr, "\r\033[K");
                if (!run.quiet)
                    std::fprintf(stderr, "step %lld: the %s is not finite; no update\n", (long long)step, what.c_str());
                if (skipped >= kMaxSkippedSteps) {
                    diverged = true;
                    fail("the loss or gradient was not finite at steps " + std::to_string(step - skipped + 1) + " to " +
                         std::to_string(step) + "; stopped without saving: " +
                         (saved_at >= 0 ? run.out + " holds step " + std::to_string(saved_at)
                                        : "this run wrote nothing to " + run.out) +
                         " (try a lower --lr)");
                }
            } else {
                skipped = 0;
            }
            double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            tok_s = double(B) * T / (ms / 1000);
            nlohmann::json line = {{"step", step}, {"loss", loss},      {"bits", loss / kLn2},
                                   {"lr", lr},     {"grad_norm", norm}, {"tokens_per_s", tok_s},
                                   {"ms", ms}};
            if (e.peak_gib() > 0) line["peak_gib"] = e.peak_gib();
            if (e.optimizer_gib() > 0) line["optimizer_gib"] = e.optimizer_gib();
            if (P > 1) {
                step_exchange = e.exchanged_values() - exchanged_before;
                line["exchanged_values"] = step_exchange;
            }
            emit(line);
            if (run.progress) {
                double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
                char eta[32];
                format_duration(eta, sizeof eta, el / double(step - start_step) * double(r.steps - step));
                std::fprintf(stderr, "\r\033[Kstep %lld/%lld  loss %.4f  %.2f bits/byte  %.0f tok/s  eta %s",
                             (long long)step, (long long)r.steps, loss, loss / kLn2, tok_s, eta);
            }
            if (r.eval_every > 0 && step % r.eval_every == 0 && step < r.steps) evaluate(step);
            float stop = g_signal ? 1.f : 0.f;  // the ranks stop together, at the same step
            if (run.comm) run.comm->allreduce_sum(&stop, 1);
            if (stop > 0) {
                status = 128 + (g_signal ? g_signal : SIGTERM);
                break;
            }
            if (run.save_every > 0 && step % run.save_every == 0 && step < r.steps) save(step);
            if (run.stop_after > 0 && step - start_step >= run.stop_after) break;
        }
    } catch (const Error& err) {
        if (log) std::fclose(log);
        // The signal handlers stay until the program has ended: a launcher's SIGTERM, sent because a
        // peer failed, must cut short neither the save nor the line that reports the failure. Only
        // rank 0 saves (a sharded optimizer's moments could not be gathered from a failing job).
        if (step == start_step || !writer || diverged) throw;
        try {
            save(step);
        } catch (const std::exception& why) {  // the device may be unusable; the previous checkpoint stays as it was
            fail(std::string(err.what()) + " (and then: " + why.what() + ")");
        }
        fail(std::string(err.what()) + " (the " + std::to_string(step) + " steps so far are saved in " + run.out +
             "; continue with --resume " + run.out + ")");
    }
    if (run.progress) std::fprintf(stderr, "\n");
    save(step);
    // A signal during the last save (or just before it) is still a request to stop: the model is
    // saved, and the exit status says the run was interrupted rather than finished.
    if (!status && g_signal) status = 128 + g_signal;
    for (size_t i = 0; i < std::size(kStopSignals); i++) sigaction(kStopSignals[i], &old_actions[i], nullptr);
    if (status) {
        if (!run.quiet)
            std::fprintf(stderr, "interrupted at step %lld; saved %s (continue with --resume %s)\n", (long long)step,
                         run.out.c_str(), run.out.c_str());
    } else if (step >= r.steps) {
        double nats = evaluate(step);
        if (!run.quiet)
            std::fprintf(stderr, "trained %lld steps, %.0f tokens/s; held-out %.4f %s; saved %s\n", (long long)step,
                         tok_s, nats / kLn2, unit, run.out.c_str());
        if (P > 1 && writer && !run.quiet && step > start_step)
            std::fprintf(stderr,
                         "context parallelism: each process sent %.0f values a step to its group; the "
                         "layout's floor is %.0f a process (the keys and values its queries read from the others, "
                         "and their gradients)\n",
                         double(step_exchange), exchange_floor(m, P, int(share.size())));
    } else if (!run.quiet) {
        std::fprintf(stderr, "stopped at step %lld of %lld; saved %s (continue with --resume %s)\n", (long long)step,
                     (long long)r.steps, run.out.c_str(), run.out.c_str());
    }
    if (log) std::fclose(log);
    return status;
}

}  // namespace st
