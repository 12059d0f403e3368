// st-eval: bits per byte of a model on a byte stream, one line on stdout.
#include <climits>
#include <cstdio>

#include "checkpoint.h"
#include "cli.h"
#include "error.h"
#include "evaluate.h"
#include "io/file.h"
#include "records.h"

using namespace st;

static int eval_main(int argc, char** argv) {
    cxxopts::Options o("st-eval", "Print a model's bits per byte on a byte stream (a file, - for stdin, or FILE.zst).");
    o.positional_help("MODEL DATA").custom_help("[OPTIONS]");
    // clang-format off
    o.add_options()
        ("model", "model file", cxxopts::value<std::string>())
        ("data", "bytes to evaluate", cxxopts::value<std::string>())
        ("batch", "windows per forward pass", cxxopts::value<std::string>()->default_value("8"))
        ("decoder", "score one byte at a time with st-sample's decoder (its cache of keys and values) instead "
                    "of whole windows: the same figure, a check of sampling");
    // clang-format on
    cli::add_common(o);
    o.parse_positional({"model", "data"});
    cxxopts::ParseResult r;
    if (cli::parse(o, argc, argv, &r)) return 0;
    const std::string device = cli::setup(r);
    if (!r.count("model") || !r.count("data")) usage_fail("usage: st-eval MODEL DATA");
    int batch = int(cli::to_int("--batch", r["batch"].as<std::string>(), 1, 1 << 20));
    Checkpoint ck = checkpoint_load(r["model"].as<std::string>());
    const std::string path = r["data"].as<std::string>(), name = input_name(path);
    std::vector<uint8_t> data = read_file(path);
    if (data.size() < 2) fail(name + ": need at least 2 bytes to evaluate, got " + std::to_string(data.size()));
    std::vector<float> opt_m, opt_v;
    const Config& c = ck.model->cfg;
    // An image model: every byte of every picture, each picture from its start byte (records.h).
    const bool records = reads_records(c);
    const std::vector<uint8_t> framed =
        records ? frame_records(data.data(), data.size(), c, name) : std::vector<uint8_t>{};
    std::unique_ptr<Engine> engine;
    WindowsLoss windows;
    if (r.count("decoder")) {
        windows = [&](const uint8_t* d, const std::vector<int64_t>& offs, int ctx, int b) {
            return decode_windows(device, *ck.model, d, offs, ctx, b);
        };
    } else {
        engine = make_engine(device, *ck.model, opt_m, opt_v);
        windows = [&](const uint8_t* d, const std::vector<int64_t>& offs, int ctx, int b) {
            return eval_windows(*engine, d, offs, ctx, b);
        };
    }
    if (records) {
        const std::vector<int64_t> offs = record_offsets(int64_t(framed.size()), c.n_ctx, INT32_MAX);
        double nats = windows(framed.data(), offs, c.n_ctx, batch);
        std::printf("%.4f bits per dim (%zu pictures of %s)\n", nats / kLn2, offs.size(), record_shape(c).c_str());
        return 0;
    }
    double nats = eval_stream(windows, data.data(), int64_t(data.size()), c.n_ctx, batch);
    std::printf("%.4f bits per byte (%zu bytes)\n", nats / kLn2, data.size() - 1);
    return 0;
}

int main(int argc, char** argv) { return cli::run("st-eval", argc, argv, eval_main); }
