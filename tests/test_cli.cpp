// The command-line plumbing the programs share (libst/cli.h): the one table of model options, whose
// ranges are config.h's and which gives st-train and st-viz-attn the same Config for the same
// arguments; programs of commands; and st-train's held-out split (heldout.h), which its options drive.
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "cli.h"
#include "config.h"
#include "error.h"
#include "heldout.h"
#include "temp_dir.h"

using namespace st;

namespace {

cxxopts::ParseResult parse(cxxopts::Options& o, std::vector<std::string> args) {
    args.insert(args.begin(), "st-test");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return o.parse(int(argv.size()), argv.data());
}

constexpr std::string_view kPick[] = {"layers", "heads"};

// The model options as st-train declares them.
Config train_config(const std::vector<std::string>& args) {
    cxxopts::Options o("st-train");
    cli::add_model_options(o, "model");
    return cli::config_from_options(parse(o, args));
}

// As st-viz-attn declares them: --layers and --heads its own (they also pick from a model's).
Config viz_config(const std::vector<std::string>& args) {
    cxxopts::Options o("st-viz-attn");
    o.add_options()("layers", "layers", cxxopts::value<std::string>())("heads", "heads", cxxopts::value<std::string>());
    cli::add_model_options(o, "model", kPick);
    return cli::config_from_options(parse(o, args));
}

std::string usage_error(const std::vector<std::string>& args) {
    try {
        train_config(args);
    } catch (const UsageError& e) {
        return e.what();
    }
    return "";
}

std::string range(const std::string& option, long long value, long long lo, long long hi) {
    return "--" + option + " " + std::to_string(value) + ": must be between " + std::to_string(lo) + " and " +
           std::to_string(hi);
}

}  // namespace

TEST_CASE("model options: the defaults are st-train's") {
    const Config c = train_config({});
    CHECK(c.n_layer == 4);
    CHECK(c.d_model == 256);
    CHECK(c.n_head == 4);
    CHECK(c.ff_mult == 4);
    CHECK(c.n_ctx == 256);
    CHECK(c.attn.pattern == Pattern::fixed);
    CHECK(c.attn.mode == HeadMode::merged);
    CHECK(c.attn.stride == 64);
    CHECK(c.attn.summary == 16);
    CHECK(c.attn.block == 32);
    CHECK(c.pos == PosKind::p2d);
    CHECK(c.dropout == 0.0f);
}

TEST_CASE("model options: the ranges are config.h's limits, and what they allow the loader accepts") {
    struct Limit {
        std::string option;
        long long lo, hi;
        std::vector<std::string> with;  // what makes the largest value a usable model
    };
    const Limit limits[] = {
        {"layers", 1, kMaxLayers, {}},
        {"d-model", 1, kMaxDModel, {}},
        {"heads", 1, kMaxHeads, {"--d-model", std::to_string(kMaxHeads)}},
        {"ff-mult", 1, kMaxFFMult, {}},
        {"ctx", 2, kMaxContext, {}},
        {"stride", 1, kMaxContext, {"--ctx", std::to_string(kMaxContext), "--summary", "1"}},
        {"summary", 1, kMaxContext, {"--ctx", std::to_string(kMaxContext), "--stride", std::to_string(kMaxContext)}},
    };
    for (const Limit& l : limits) {
        INFO("--" << l.option);
        std::vector<std::string> args = l.with;
        args.insert(args.end(), {"--" + l.option, std::to_string(l.hi)});
        const Config c = train_config(args);
        CHECK(config_to_json(config_from_json(config_to_json(c))) == config_to_json(c));
        CHECK(usage_error({"--" + l.option, std::to_string(l.hi + 1)}) == range(l.option, l.hi + 1, l.lo, l.hi));
        CHECK(usage_error({"--" + l.option, std::to_string(l.lo - 1)}) == range(l.option, l.lo - 1, l.lo, l.hi));
    }
    CHECK(usage_error({"--dropout", "1"}) == "--dropout 1: must be between 0 and 0.99");
    CHECK(usage_error({"--block", "48"}) == "block must be 32, 64 or 128");
    CHECK(usage_error({"--heads", "3"}) == "heads 3 do not divide d_model 256");
    CHECK(usage_error({"--pattern", "sparse"}) == "--pattern sparse: expected dense, local, fixed or strided");
    CHECK(usage_error({"--pos", "image"}) == "--pos image: expected 1d or 2d (images: --image HxWxC)");
    CHECK(usage_error({"--image", "28x28"}) ==
          "--image 28x28: expected HxWxC with C 1 (grey), 3 (RGB) or 4 (RGBA), e.g. 28x28x1");
    CHECK(usage_error({"--image", "8192x8192x3"}) == "--image 8192x8192x3: too large a picture");
}

TEST_CASE("model options: --image sets the context and positions, and the paper's pattern unless given") {
    Config c = train_config({"--image", "28x28x3"});
    CHECK(c.pos == PosKind::image);
    CHECK(c.n_ctx == 28 * 28 * 3);
    CHECK(c.attn.pattern == Pattern::strided);
    CHECK(c.attn.stride == 28 * 3);
    c = train_config({"--image", "8x8x1", "--ctx", "1000", "--pattern", "fixed", "--stride", "16", "--summary", "4"});
    CHECK(c.n_ctx == 64);
    CHECK(c.attn.pattern == Pattern::fixed);
    CHECK(c.attn.stride == 16);
}

TEST_CASE("model options: st-train and st-viz-attn get the same Config for the same arguments") {
    const std::vector<std::vector<std::string>> cases = {
        {},
        {"--pattern", "strided", "--mode", "interleaved", "--ctx", "64", "--stride", "8", "--layers", "2", "--heads",
         "2"},
        {"--pattern", "fixed", "--ctx", "128", "--stride", "16", "--summary", "4", "--layers", "3", "--heads", "1"},
        {"--image", "8x8x1", "--layers", "2", "--d-model", "32", "--heads", "2"},
        {"--pattern", "local", "--pos", "1d", "--ctx", "100", "--stride", "7", "--block", "128", "--ff-mult", "2",
         "--dropout", "0.1"},
    };
    for (const auto& args : cases) {
        const Config t = train_config(args), v = viz_config(args);
        CHECK(config_to_json(t) == config_to_json(v));
    }
    for (const std::vector<std::string>& bad :
         {std::vector<std::string>{"--heads", "3"}, {"--layers", "0"}, {"--stride", "96"}}) {
        std::string t, v;
        try {
            train_config(bad);
        } catch (const UsageError& e) {
            t = e.what();
        }
        try {
            viz_config(bad);
        } catch (const UsageError& e) {
            v = e.what();
        }
        CHECK(!t.empty());
        CHECK(t == v);
    }
}

TEST_CASE("model options: the first one given, for programs that take the model from a file") {
    cxxopts::Options o("st-viz-attn");
    o.add_options()("layers", "layers", cxxopts::value<std::string>())("heads", "heads", cxxopts::value<std::string>());
    cli::add_model_options(o, "model", kPick);
    CHECK(cli::model_option_given(parse(o, {})).empty());  // defaults are not given
    CHECK(cli::model_option_given(parse(o, {"--heads", "0,1"}), kPick).empty());
    CHECK(cli::model_option_given(parse(o, {"--heads", "0,1"})) == "--heads");
    CHECK(cli::model_option_given(parse(o, {"--dropout", "0.1", "--ctx", "64"}), kPick) == "--ctx");
}

TEST_CASE("commands: the one named runs on what follows it; others are usage errors naming them all") {
    static std::vector<std::string> seen;
    seen.clear();
    const cli::Command commands[] = {
        {"encode",
         [](int argc, char** argv) {
             seen.assign(argv, argv + argc);
             return 3;
         }},
        {"decode", [](int, char**) { return 4; }},
        {"info", [](int, char**) { return 5; }},
    };
    std::string a0 = "st-x", a1 = "encode", a2 = "--size", a3 = "2x2";
    char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data()};
    CHECK(cli::run_command("st-x", "usage\n", commands, 4, argv) == 3);
    CHECK(seen == std::vector<std::string>{"encode", "--size", "2x2"});
    std::string bad = "convert";
    char* unknown[] = {a0.data(), bad.data()};
    CHECK_THROWS_WITH(cli::run_command("st-x", "usage\n", commands, 2, unknown),
                      "unknown command 'convert': expected encode, decode or info");
    CHECK_THROWS_WITH(cli::run_command("st-x", "usage\n", std::span(commands, 2), 1, argv),
                      "missing command: encode or decode");
}

TEST_CASE("held-out split: the last --val-frac of the data, or a file of its own") {
    Config c;
    c.n_ctx = 8;
    std::vector<uint8_t> data(100);
    for (size_t i = 0; i < data.size(); i++) data[i] = uint8_t(i);

    TrainData d = split_heldout(data, "d.txt", c, 0.1f, std::nullopt);
    CHECK(d.train().size() == 90);
    CHECK(d.train().data() == data.data());  // a view, not a copy
    CHECK(d.val == std::vector<uint8_t>(data.begin() + 90, data.end()));
    CHECK_THROWS_WITH(split_heldout(data, "d.txt", c, 0.05f, std::nullopt),
                      "d.txt: the held-out part (5 bytes) is shorter than one window of the context (9 bytes); "
                      "give more data, a larger --val-frac, or --val FILE");
    CHECK_THROWS_WITH(split_heldout(data, "d.txt", c, 0.92f, std::nullopt),
                      "d.txt: 8 training bytes is shorter than one window of the context (9 bytes)");
    CHECK_THROWS_WITH(split_heldout({}, "stdin", c, 0.1f, std::nullopt), "stdin: no data (empty)");

    test::TempDir dir;
    const std::string val = dir / "val.txt";
    std::FILE* f = std::fopen(val.c_str(), "wb");
    std::fwrite(data.data(), 1, 8, f);
    std::fclose(f);
    CHECK_THROWS_WITH(split_heldout(data, "d.txt", c, 0.1f, val),
                      val + ": 8 bytes is shorter than one window of the context (9 bytes)");
    f = std::fopen(val.c_str(), "ab");
    std::fwrite(data.data(), 1, 1, f);
    std::fclose(f);
    d = split_heldout(data, "d.txt", c, 0.1f, val);
    CHECK(d.train().size() == 100);  // all of the data trains
    CHECK(d.val.size() == 9);
}

TEST_CASE("held-out split: pictures are whole records, each after its start byte") {
    const Config c = train_config({"--image", "2x2x1", "--d-model", "32", "--heads", "2"});
    std::vector<uint8_t> data(40);  // ten 2x2x1 pictures
    for (size_t i = 0; i < data.size(); i++) data[i] = uint8_t(i + 1);

    const TrainData d = split_heldout(data, "p.bin", c, 0.25f, std::nullopt);  // two pictures held out
    CHECK(d.train().size() == 8 * 5);
    CHECK(d.val == std::vector<uint8_t>{0, 33, 34, 35, 36, 0, 37, 38, 39, 40});
    CHECK(split_heldout(data, "p.bin", c, 0.0001f, std::nullopt).val.size() == 5);    // at least one
    CHECK(split_heldout(data, "p.bin", c, 0.95f, std::nullopt).train().size() == 5);  // at least one to train on
    CHECK_THROWS_WITH(split_heldout(std::span(data).first(7), "p.bin", c, 0.1f, std::nullopt),
                      "p.bin: 7 bytes hold fewer than two 2x2x1 pictures");
    CHECK_THROWS_WITH(split_heldout(std::span(data).first(10), "p.bin", c, 0.1f, std::nullopt),
                      "p.bin: 6 bytes is not a whole number of 2x2x1 pictures (4 bytes each)");
}
