// st-complete: an image model finishes pictures. For each input picture it keeps the top rows, draws
// the rest several times, and writes one PNG grid: a row per picture, the original and then its
// completions.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "checkpoint.h"
#include "cli.h"
#include "error.h"
#include "io/file.h"
#include "io/image.h"
#include "records.h"
#include "sample.h"

using namespace st;

static int complete_main(int argc, char** argv) {
    cxxopts::Options o("st-complete", "Complete the bottom of pictures with an image model; writes one PNG grid.");
    o.positional_help("MODEL PICTURE...").custom_help("[OPTIONS]");
    // clang-format off
    o.add_options()
        ("model", "image model (st-train --image)", cxxopts::value<std::string>())
        ("pictures", "picture files (PNG, JPEG, BMP, PGM/PPM, IDX, CIFAR-10), - for stdin",
            cxxopts::value<std::vector<std::string>>())
        ("o,output", "the PNG grid to write", cxxopts::value<std::string>())
        ("records", "the inputs are raw records of the model's HxWxC bytes (st-image encode's output)")
        ("keep", "fraction of rows kept from the top of each picture",
            cxxopts::value<std::string>()->default_value("0.5"))
        ("k,samples", "completions per picture", cxxopts::value<std::string>()->default_value("4"))
        ("count", "pictures taken from the inputs, in order", cxxopts::value<std::string>()->default_value("8"))
        ("t,temperature", "sampling temperature (0 = always the most likely byte)",
            cxxopts::value<std::string>()->default_value("1"))
        ("top-k", "sample among the k most likely bytes (0 = all)", cxxopts::value<std::string>()->default_value("0"))
        ("top-p", "sample among the most likely bytes whose probability reaches p",
            cxxopts::value<std::string>()->default_value("1"))
        ("min-p", "sample among the bytes at least p times as likely as the likeliest (0 = all)",
            cxxopts::value<std::string>()->default_value("0"))
        ("scale", "each picture drawn this many times larger (default: about 96 pixels a side)",
            cxxopts::value<std::string>())
        ("seed", "random seed", cxxopts::value<std::string>()->default_value("1"));
    // clang-format on
    cli::add_common(o);
    o.parse_positional({"model", "pictures"});
    cxxopts::ParseResult r;
    if (cli::parse(o, argc, argv, &r)) return 0;
    const std::string device = cli::setup(r);
    if (!r.count("model") || !r.count("pictures")) usage_fail("usage: st-complete MODEL PICTURE... -o OUT.png");
    if (!r.count("output")) usage_fail("missing -o OUT.png: where to write the grid");
    const std::string out = r["output"].as<std::string>();
    if (out == "-") cli::refuse_terminal_stdout("a PNG");
    const double keep = cli::to_real("--keep", r["keep"].as<std::string>(), 0, 1);
    const int k = int(cli::to_int("--samples", r["samples"].as<std::string>(), 1, 1024));
    const int count = int(cli::to_int("--count", r["count"].as<std::string>(), 1, 1 << 16));
    int scale = r.count("scale") ? int(cli::to_int("--scale", r["scale"].as<std::string>(), 1, 64))
                                 : 0;  // 0: from the model's size
    SampleOptions so;
    so.temperature = float(cli::to_real("--temperature", r["temperature"].as<std::string>(), 0, 100));
    so.top_k = int(cli::to_int("--top-k", r["top-k"].as<std::string>(), 0, 256));
    so.top_p = float(cli::to_real("--top-p", r["top-p"].as<std::string>(), 1e-6, 1));
    so.min_p = float(cli::to_real("--min-p", r["min-p"].as<std::string>(), 0, 1));
    Rng rng(uint64_t(cli::to_int("--seed", r["seed"].as<std::string>(), 0, 1ll << 62)));

    const std::string model_path = r["model"].as<std::string>();
    std::vector<std::pair<std::string, std::string>> inputs = {{"MODEL", model_path}};
    for (const std::string& p : r["pictures"].as<std::vector<std::string>>()) inputs.push_back({"a PICTURE", p});
    refuse_input_as_output("-o", out, inputs);
    Checkpoint ck = checkpoint_load(model_path);
    const Model<float>& m = *ck.model;
    const Config& c = m.cfg;
    if (!reads_records(c)) fail(model_path + ": not an image model (train one with st-train --image HxWxC)");
    if (scale == 0) scale = std::max(1, 96 / std::max(c.image_h, c.image_w));

    std::vector<Image> pics;
    for (const std::string& path : r["pictures"].as<std::vector<std::string>>()) {
        const std::string name = input_name(path);
        std::vector<Image> got;
        if (r.count("records")) {
            std::vector<uint8_t> bytes = read_file(path);
            got = images_from_records(bytes.data(), bytes.size(), c.image_h, c.image_w, c.image_c, name);
        } else {
            got = read_images(path);
        }
        if (got.empty()) fail(name + ": no pictures");
        for (Image& im : got) {
            if (im.h != c.image_h || im.w != c.image_w || im.c != c.image_c)
                fail(name + ": a picture of " + std::to_string(im.h) + "x" + std::to_string(im.w) + "x" +
                     std::to_string(im.c) + ", the model draws " + record_shape(c) + " (st-image encode --size " +
                     record_shape(c) + " --resize makes them fit; then --records)");
            if (int(pics.size()) < count) pics.push_back(std::move(im));
        }
        if (int(pics.size()) >= count) break;
    }

    // The grid's size is known now: a PNG too large to write is refused before the sampling.
    const ImageSize size = grid_size(pics.size() * size_t(k + 1), c.image_h, c.image_w, k + 1, 2 * scale, scale);
    if (std::string problem = image_size_problem(size.h, size.w, c.image_c); !problem.empty())
        fail(output_name(out) + ": " + problem + "; use a smaller --scale, fewer --samples or a smaller --count");

    // Every picture's k completions decode side by side: sequence b completes picture b / k.
    const int n_pics = int(pics.size()), B = n_pics * k, T = c.n_ctx;
    const int kept = int(std::lround(keep * c.image_h)) * c.image_w * c.image_c;
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<Sampler> dec = make_sampler(device, m, B);
    std::vector<Image> done(size_t(B), pics[0]);
    std::vector<uint8_t> step(size_t(B), 0);
    const float* logits = dec->push(step.data());  // the start byte every picture was trained after
    // Positions 0..T-1 hold the start byte and the first T-1 pixels: the last pixel is never read
    // (pushing it would overflow the context and slide the window when --keep keeps every row).
    for (int t = 0; t < std::min(kept, T - 1); t++) {
        for (int b = 0; b < B; b++) step[size_t(b)] = pics[size_t(b / k)].px[size_t(t)];
        logits = dec->push(step.data());
    }
    std::vector<float> probs;
    for (int t = kept; t < T; t++) {
        for (int b = 0; b < B; b++)
            step[size_t(b)] = uint8_t(sample_byte(logits + size_t(b) * c.vocab, c.vocab, so, rng, probs));
        for (int b = 0; b < B; b++) done[size_t(b)].px[size_t(t)] = step[size_t(b)];
        if (t + 1 < T) logits = dec->push(step.data());
    }
    for (int b = 0; b < B; b++)
        std::copy(pics[size_t(b / k)].px.begin(), pics[size_t(b / k)].px.begin() + kept, done[size_t(b)].px.begin());
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::vector<Image> cells;
    for (int p = 0; p < n_pics; p++) {
        cells.push_back(pics[size_t(p)]);
        for (int j = 0; j < k; j++) cells.push_back(done[size_t(p * k + j)]);
    }
    Image grid = image_grid(cells, k + 1, 2 * scale, scale);
    write_png(out, grid);
    if (!r.count("quiet"))
        std::fprintf(stderr, "st-complete: %d completions of %d bytes each in %.2f s on %s; wrote %s (%dx%d)\n", B,
                     T - kept, secs, device == "cpu" ? "the CPU" : "the GPU", output_name(out).c_str(), grid.h, grid.w);
    return 0;
}

int main(int argc, char** argv) { return cli::run("st-complete", argc, argv, complete_main); }
