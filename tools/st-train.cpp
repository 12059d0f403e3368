// st-train: train a Sparse Transformer on a byte stream and write a model file.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "error.h"
#include "heldout.h"
#include "io/file.h"
#include "io/json.h"
#include "memory.h"
#include "parallel/comm.h"
#include "parallel/launch.h"
#include "parallel/nccl.h"
#include "parallel/spawn.h"
#include "records.h"
#include "train.h"

using namespace st;

static void recipe_from_options(const cxxopts::ParseResult& r, Recipe* rc, bool only_given) {
    auto given = [&](const char* n) { return !only_given || r.count(n); };
    auto s = [&](const char* n) { return r[n].as<std::string>(); };
    if (given("steps")) rc->steps = cli::to_int("--steps", s("steps"), 0, kMaxSteps);
    if (given("batch")) rc->batch = int(cli::to_int("--batch", s("batch"), 1, 1 << 20));
    if (given("lr")) rc->lr = float(cli::to_real("--lr", s("lr"), 0, 10));
    if (given("lr-min")) rc->lr_min = r.count("lr-min") ? float(cli::to_real("--lr-min", s("lr-min"), 0, 10)) : -1.0f;
    if (given("warmup")) rc->warmup = cli::to_int("--warmup", s("warmup"), 1, kMaxSteps);
    if (given("weight-decay")) rc->weight_decay = float(cli::to_real("--weight-decay", s("weight-decay"), 0, 10));
    if (given("clip")) rc->clip = float(cli::to_real("--clip", s("clip"), 0, 1e9));
    if (given("seed")) rc->seed = uint64_t(cli::to_int("--seed", s("seed"), 0, (1ll << 62)));
    if (given("val-frac")) rc->val_frac = float(cli::to_real("--val-frac", s("val-frac"), 0.0001, 0.9));
    if (given("eval-every")) rc->eval_every = int(cli::to_int("--eval-every", s("eval-every"), 0, 1 << 30));
    if (given("eval-windows")) rc->eval_windows = int(cli::to_int("--eval-windows", s("eval-windows"), 1, 1 << 24));
}

// Training data is marked text or binary in the model so that st-sample knows whether a terminal
// may receive its output.
static bool looks_like_text(std::span<const uint8_t> d) {
    size_t n = std::min<size_t>(d.size(), 1 << 20), ctrl = 0;
    for (size_t i = 0; i < n; i++)
        ctrl += (d[i] < 0x20 && d[i] != '\n' && d[i] != '\r' && d[i] != '\t') || d[i] == 0x7f;
    return ctrl * 100 <= n;
}

static int64_t chunk_option(const cxxopts::ParseResult& r) {
    return cli::to_int("--chunk", r["chunk"].as<std::string>(), 0, kMaxContext);
}

static bool offload_option(const cxxopts::ParseResult& r, const std::string& device) {
    if (!r.count("offload")) return false;
    if (!r.count("recompute")) usage_fail("--offload moves --recompute's layer inputs to the host: add --recompute");
    if (device == "cpu") usage_fail("--offload moves layer inputs off a GPU; add --device cuda");
    return true;
}

// st-train --plan: the model of the options (or of --resume) on this process's GPU, nothing trained.
static int print_plan(const cxxopts::ParseResult& r, const std::string& device) {
    if (device == "cpu") usage_fail("--plan: the plan is of a GPU's memory; add --device cuda");
    Recipe recipe;
    std::unique_ptr<Model<float>> model;
    if (r.count("resume")) {
        Checkpoint ck = checkpoint_load(r["resume"].as<std::string>());
        model = std::move(ck.model);
        if (auto rec = ck.metadata.find("recipe"); rec != ck.metadata.end())
            recipe = recipe_from_json(json_parse(rec->second, "training recipe"));
        recipe_from_options(r, &recipe, true);
    } else {
        recipe_from_options(r, &recipe, false);
        model = std::make_unique<Model<float>>(cli::config_from_options(r));
    }
    model->recompute = r.count("recompute") > 0;
    std::vector<float> opt_m, opt_v;
    std::unique_ptr<Engine> engine = make_engine(device, *model, opt_m, opt_v);
    engine->set_micro_batch(int(cli::to_int("--micro-batch", r["micro-batch"].as<std::string>(), 0, 1 << 20)));
    engine->set_chunk(chunk_option(r));
    engine->set_offload(offload_option(r, device));
    const int B = recipe.batch, T = model->cfg.n_ctx;
    const MemoryPlan p = engine->memory_plan(B, T, true);
    const Fit f = memory_fit(*engine, model->cfg, B, T);
    std::printf("st-train --plan: %lld parameters, batch %d of context %d on %s\n%s", (long long)model->num_params, B,
                T, engine->name().c_str(), memory_plan_text(p).c_str());
    std::printf("  fits: %s; the longest --ctx at --batch %d: %d; the largest --batch at --ctx %d: %d\n",
                p.total() <= p.available ? "yes" : "no", B, f.ctx, T, f.batch);
    return 0;
}

static int train_main(int argc, char** argv) {
    cxxopts::Options o("st-train", "Train a Sparse Transformer on a byte stream (a file, - for stdin, or FILE.zst).");
    o.positional_help("DATA").custom_help("[OPTIONS] -o MODEL");
    // clang-format off
    o.add_options()
        ("o,output", "model file to write (checkpoints go there too; .zst compresses)", cxxopts::value<std::string>())
        ("resume", "continue the run saved in this model file", cxxopts::value<std::string>())
        ("val", "held-out data (default: the last --val-frac of DATA)", cxxopts::value<std::string>())
        ("data", "training data", cxxopts::value<std::string>());
    // clang-format on
    cli::add_model_options(o, "model");
    // clang-format off
    o.add_options("training")
        ("steps", "optimizer steps in all", cxxopts::value<std::string>()->default_value("2000"))
        ("batch", "examples per step", cxxopts::value<std::string>()->default_value("16"))
        ("lr", "peak learning rate", cxxopts::value<std::string>()->default_value("0.001"))
        ("lr-min", "learning rate at the end of the cosine decay (default lr/10)", cxxopts::value<std::string>())
        ("warmup", "linear warm-up steps", cxxopts::value<std::string>()->default_value("100"))
        ("weight-decay", "AdamW weight decay of the matrices", cxxopts::value<std::string>()->default_value("0.01"))
        ("clip", "gradient clipping: largest global norm (0 = off)", cxxopts::value<std::string>()->default_value("1"))
        ("seed", "random seed (weights, batches, dropout)", cxxopts::value<std::string>()->default_value("1"))
        ("val-frac", "fraction of DATA held out when there is no --val",
            cxxopts::value<std::string>()->default_value("0.05"))
        ("eval-every", "evaluate on held-out data every K steps (0 = only at the end)",
            cxxopts::value<std::string>()->default_value("200"))
        ("eval-windows", "held-out windows per evaluation", cxxopts::value<std::string>()->default_value("64"))
        ("recompute", "keep only each layer's input, in bf16, and redo the layer in the backward pass; the "
                      "token-local work runs in chunks (far less memory, about a third more time)")
        ("chunk", "with --recompute: tokens whose LayerNorms, products, MLP and head run at a time (0: the "
                  "largest of up to 32768 that fits)",
         cxxopts::value<std::string>()->default_value("0"))
        ("offload", "with --recompute: keep the layer inputs, all but the last two, in pinned host memory, "
                    "copied out and back behind the compute (longer sequences on one GPU)")
        ("plan", "print the GPU memory a step will need, by part, and the longest --ctx and largest --batch "
                 "that fit on the card; train nothing")
        ("micro-batch", "examples per forward and backward pass; the gradients of batch / M passes are added "
                        "before each update (less memory, the same learning)",
         cxxopts::value<std::string>()->default_value("0"));
    o.add_options("run")
        ("save-every", "write a checkpoint every K steps (0 = only at the end)",
            cxxopts::value<std::string>()->default_value("0"))
        ("stop-after", "stop after K steps of this run, saving (continue with --resume)",
            cxxopts::value<std::string>()->default_value("0"))
        ("log", "JSON-lines metrics, one object per step and per evaluation", cxxopts::value<std::string>())
        ("gpus", "data-parallel on N GPUs of this host, one process each (under torchrun, mpirun or srun: "
                 "the job's processes instead)",
         cxxopts::value<std::string>()->default_value("1"))
        ("shard-optimizer",
            "with several processes, each keeps and updates only its part of the AdamW moments (ZeRO-1)")
        ("context-parallel", "groups of P processes share every sequence, each running its consecutive part of "
                             "the positions in every layer; the groups divide the batch (CPU processes for now)",
         cxxopts::value<std::string>()->default_value("1"));
    // clang-format on
    cli::add_common(o);
    o.parse_positional({"data"});
    cxxopts::ParseResult r;
    if (cli::parse(o, argc, argv, &r)) return 0;
    const std::string device = cli::setup(r);
    if (r.count("plan")) return print_plan(r, device);
    if (!r.count("output")) usage_fail("missing -o MODEL: where to write the model");
    if (!r.count("data")) usage_fail("missing DATA: a file of training bytes, or - for stdin");
    const std::string out = r["output"].as<std::string>(), data_path = r["data"].as<std::string>();
    if (out == "-") cli::refuse_terminal_stdout("a model");
    if (out == "-" && r.count("save-every"))
        usage_fail("--save-every: with -o - each checkpoint would follow the last on stdout; write to a file");
    // Outputs never overwrite inputs (the model being resumed may be rewritten: that is what resuming
    // in place means), and they can be written before any work starts.
    std::vector<std::pair<std::string, std::string>> inputs = {{"DATA", data_path}};
    if (r.count("val")) inputs.push_back({"--val", r["val"].as<std::string>()});
    refuse_input_as_output("-o", out, inputs);
    if (r.count("resume")) inputs.push_back({"--resume", r["resume"].as<std::string>()});
    inputs.push_back({"-o", out});
    if (r.count("log")) refuse_input_as_output("--log", r["log"].as<std::string>(), inputs);

    // Several processes: this one starts them (--gpus N), or it is one of them (a launcher's variables).
    const int gpus = int(cli::to_int("--gpus", r["gpus"].as<std::string>(), 1, 1024));
    const DistEnv job = dist_env();
    // --context-parallel P: groups of P processes share each sequence (CPU processes for now).
    const int context_parallel =
        int(cli::to_int("--context-parallel", r["context-parallel"].as<std::string>(), 1, 1024));
    if (context_parallel > 1) {
        if (device != "cpu")
            usage_fail("--context-parallel: on CPU processes for now (--device cpu); --gpus divides the batch");
        if (std::max(gpus, job.world) % context_parallel)
            usage_fail("--context-parallel " + std::to_string(context_parallel) + " does not divide the job's " +
                       std::to_string(std::max(gpus, job.world)) + " processes (--gpus)");
        if (r.count("shard-optimizer")) usage_fail("--shard-optimizer: not with --context-parallel yet");
    }
    if (job.rank == 0) prepare_output(out);  // the writer: fail now, not after the run, where -o cannot be written
    if (gpus > 1 && job.world == 1) {
        if (data_path == "-" || out == "-" || (r.count("val") && r["val"].as<std::string>() == "-"))
            usage_fail(
                "--gpus: every process reads DATA and rank 0 writes the model: use files, not - (stdin / stdout)");
        const int have = device == "cpu" ? gpus : gpu_count();
        if (gpus > have)
            usage_fail("--gpus " + std::to_string(gpus) + ": this machine has " + std::to_string(have) + " GPU" +
                       (have == 1 ? "" : "s") + " (--device cpu runs the job on CPU processes)");
        for (const char* input : {"data", "val", "resume"})  // once here, not once from every rank
            if (r.count(input) && access(r[input].as<std::string>().c_str(), R_OK) != 0)
                fail(r[input].as<std::string>() + ": " + std::strerror(errno));
        return run_local_job(gpus, argv);
    }
    if (r.count("gpus") && gpus != job.world)
        usage_fail("--gpus " + std::to_string(gpus) + ": this process is one of a job of " + std::to_string(job.world) +
                   " (" + job.launcher + ")");
    // The ranks meet (rank 0 hands out NCCL's job id on GPUs); CPU ranks then sum over TCP, GPU ranks
    // through NCCL on their own GPU, and since NCCL would wait forever for a dead peer, a watcher
    // ends this rank as soon as the rendezvous connections say one died.
    std::string rank_device = device;
    std::unique_ptr<Rendezvous> meeting;
    std::unique_ptr<Comm> comm;
    if (job.world > 1) {
        const bool gpu = device != "cpu";
        if (gpu && device != "cuda")
            usage_fail("--device " + device +
                       ": in a job of several processes each takes the GPU of its LOCAL_RANK (--device cuda)");
        if (gpu) rank_device = "cuda:" + std::to_string(job.local_rank);
        const char* wait = std::getenv("ST_RENDEZVOUS_TIMEOUT");  // seconds for the ranks to meet (default 120)
        const double timeout = wait ? cli::to_real("ST_RENDEZVOUS_TIMEOUT", wait, 0.1, 86400) : 120;
        meeting =
            std::make_unique<Rendezvous>(job, gpu && job.rank == 0 ? nccl_job_id() : std::vector<uint8_t>{}, timeout);
        if (gpu) {
            comm = make_nccl_comm(meeting->blob(), job.rank, job.world, job.local_rank);
            meeting->watch([](const std::string& why) {
                std::fprintf(stderr, "st-train: %s; this rank stops too\n", why.c_str());
                std::_Exit(1);
            });
        } else {
            comm = make_tcp_comm(*meeting);
        }
    }

    Recipe recipe;
    std::unique_ptr<Model<float>> model;
    std::vector<float> opt_m, opt_v;
    int64_t start = 0;
    bool text = true;
    if (r.count("resume")) {
        if (const std::string given = cli::model_option_given(r); !given.empty())
            usage_fail(given + " cannot change when resuming: the model comes from the checkpoint");
        std::string path = r["resume"].as<std::string>();
        Checkpoint ck = checkpoint_load(path);
        auto rec = ck.metadata.find("recipe");
        if (rec == ck.metadata.end() || ck.opt_m.empty())
            fail(path + ": holds no training state to resume (a model saved without its optimizer)");
        try {
            recipe = recipe_from_json(json_parse(rec->second, "training recipe"));
        } catch (const Error& e) {
            fail(path + ": " + e.what());
        }
        recipe_from_options(r, &recipe, true);
        model = std::move(ck.model);
        opt_m = std::move(ck.opt_m);
        opt_v = std::move(ck.opt_v);
        start = ck.step;
        text = ck.metadata.count("data") == 0 || ck.metadata["data"] == "text";
        if (start >= recipe.steps)
            fail(path + ": already trained " + std::to_string(start) + " of " + std::to_string(recipe.steps) +
                 " steps (raise --steps to go on)");
    } else {
        recipe_from_options(r, &recipe, false);
        model = std::make_unique<Model<float>>(cli::config_from_options(r));
        model->init_weights(recipe.seed);
    }
    model->recompute = r.count("recompute") > 0;
    const int ctx = model->cfg.n_ctx;

    // The training bytes are mapped, not copied, where DATA is a plain file (io/file.h); pictures are
    // framed into a buffer of their own.
    const FileBytes data(data_path);
    const std::string name = input_name(data_path);
    const TrainData split = split_heldout(data.bytes(), name, model->cfg, recipe.val_frac,
                                          r.count("val") ? std::optional(r["val"].as<std::string>()) : std::nullopt);
    const std::span<const uint8_t> bytes = split.train();
    const std::vector<uint8_t>& val = split.val;
    if (start == 0) text = !reads_records(model->cfg) && looks_like_text(bytes);

    const size_t unit_bytes = reads_records(model->cfg) ? size_t(ctx) + 1 : 1;  // framed pictures or bytes
    TrainRun run;
    run.out = out;
    run.data_name = name;
    run.log = r.count("log") ? r["log"].as<std::string>() : "";
    run.save_every = cli::to_int("--save-every", r["save-every"].as<std::string>(), 0, kMaxSteps);
    run.stop_after = cli::to_int("--stop-after", r["stop-after"].as<std::string>(), 0, kMaxSteps);
    run.quiet = r.count("quiet") > 0 || job.rank > 0;  // rank 0 speaks for the job
    run.progress = !run.quiet && cli::stderr_is_terminal();
    run.comm = comm.get();
    run.context_parallel = context_parallel;
    run.shard_optimizer = r.count("shard-optimizer") > 0;
    run.micro_batch = int(cli::to_int("--micro-batch", r["micro-batch"].as<std::string>(), 0, 1 << 20));
    run.chunk = chunk_option(r);
    run.offload = offload_option(r, device);
    std::unique_ptr<Engine> engine =
        make_engine(rank_device, *model, opt_m, opt_v);  // fails first where there is no GPU
    if (!run.quiet)
        std::fprintf(
            stderr,
            "st-train: %lld parameters, %d layers, d %d, %d heads, context %d, %s/%s; %zu training %s, %zu held out\n",
            (long long)model->num_params, model->cfg.n_layer, model->cfg.d_model, model->cfg.n_head, ctx,
            pattern_name(model->cfg.attn.pattern), head_mode_name(model->cfg.attn.mode), bytes.size() / unit_bytes,
            reads_records(model->cfg) ? "pictures" : "bytes", val.size() / unit_bytes);
    run.metadata = {{"data", text ? "text" : "binary"}};
    if (!run.quiet && device != "cpu") std::fprintf(stderr, "st-train: on %s\n", engine->name().c_str());
    if (!run.quiet && job.world > 1)
        std::fprintf(stderr, "st-train: %d processes (%s)\n", job.world, job.launcher.c_str());
    try {
        return train(*engine, *model, opt_m, opt_v, start, recipe, run, bytes, val);
    } catch (const JobError&) {
        if (job.rank == 0) throw;
        // Rank 0 says it for the job. Leaving at once would have the launcher stop the job, rank 0
        // perhaps before its message is out; the launcher ends this rank when rank 0 has left.
        std::this_thread::sleep_for(std::chrono::seconds(5));
        return 1;
    }
}

int main(int argc, char** argv) {
    // Inputs are checked against their real size before they are read, so memory runs out on the model.
    return cli::run("st-train", argc, argv, train_main,
                    "the model's activations: try a smaller --batch or --ctx, --micro-batch, or --recompute");
}
