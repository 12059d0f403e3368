// Training curves (libst/plot): st-train's log lines read into series, bad logs refused with a line
// naming them, and runs drawn at the asked size, each in its own colour in every panel.
#include <catch2/catch.hpp>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "evaluate.h"
#include "plot.h"

using namespace st;

namespace {

// A log as st-train writes it: STEPS step lines whose loss falls linearly from FIRST to LAST bits
// per byte, each of MS milliseconds, and a held-out line every EVAL_EVERY steps and at the end.
std::string train_log(int steps, double first, double last, int eval_every, double ms = 50) {
    std::string out;
    for (int s = 1; s <= steps; s++) {
        const double bits = first + (last - first) * (s - 1) / std::max(steps - 1, 1);
        const nlohmann::json line = {{"step", s},        {"loss", bits * kLn2}, {"bits", bits}, {"lr", 1e-3},
                                     {"grad_norm", 0.5}, {"tokens_per_s", 1e4}, {"ms", ms}};
        out += line.dump() + "\n";
        if (s % eval_every == 0 || s == steps)
            out +=
                nlohmann::json{{"step", s}, {"val_loss", (bits + 0.1) * kLn2}, {"val_bits", bits + 0.1}}.dump() + "\n";
    }
    return out;
}

bool same(const uint8_t* p, Rgb c) { return p[0] == c.r && p[1] == c.g && p[2] == c.b; }

// Pixels of colour C in the rectangle [y0, y1) x [x0, x1) of IM.
int count_colour(const Image& im, Rgb c, int y0, int x0, int y1, int x1) {
    int n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) n += same(&im.px[(size_t(y) * size_t(im.w) + size_t(x)) * 3], c);
    return n;
}

}  // namespace

TEST_CASE("a log's step and held-out lines become curves; time is the sum of the steps' ms", "[plot]") {
    const TrainLog log = parse_train_log(train_log(30, 8, 2, 10, 250), "run.jsonl");
    REQUIRE(log.loss.size() == 30);
    REQUIRE(log.held_out.size() == 3);
    CHECK(log.left_out == 0);
    CHECK(log.timed);
    CHECK(log.loss[0].step == 1);
    CHECK(log.loss[0].value == Approx(8 * kLn2));
    CHECK(log.loss[29].value == Approx(2 * kLn2));
    CHECK(log.loss[29].seconds == Approx(30 * 0.25));
    CHECK(log.held_out[1].step == 20);
    CHECK(log.held_out[1].seconds == Approx(20 * 0.25));
    CHECK(log.held_out[2].value == Approx(log.loss[29].value + 0.1 * kLn2));
}

TEST_CASE("lines that carry nothing to draw are passed over", "[plot]") {
    // A step st-train skipped (its loss not finite: a "skipped" line, then the loss as null), blank
    // lines, a line of other fields, a step given as a real number, and a last line cut short.
    const std::string text =
        "{\"step\":1,\"loss\":5.0,\"ms\":10}\n"
        "\n"
        "  \r\n"
        "{\"step\":2,\"skipped\":\"loss not finite\"}\n"
        "{\"step\":2,\"loss\":null,\"ms\":10}\n"
        "{\"step\":3,\"loss\":\"4.0\",\"ms\":10}\n"
        "{\"step\":4,\"loss\":1e300,\"ms\":10}\n"
        "{\"note\":\"not a step\"}\n"
        "{\"loss\":3.0}\n"
        "{\"step\":5.0,\"loss\":3.0,\"ms\":-4}\n"
        "{\"step\":6,\"val_loss\":null}\n"
        "{\"step\":7,\"loss\":2.5,\"ms\":10}\n"
        "{\"step\":8,\"lo";
    const TrainLog log = parse_train_log(text, "run.jsonl");
    REQUIRE(log.loss.size() == 3);
    CHECK(log.loss[1].step == 5);
    CHECK(log.loss[2].step == 7);
    CHECK(log.loss[2].seconds == Approx(0.05));  // the negative ms and the steps without a time count nothing
    CHECK(log.left_out == 5);
    CHECK(log.held_out.empty());
    // Without a newline, the one line there is must be whole.
    CHECK(parse_train_log("{\"step\":1,\"loss\":5}", "a").loss.size() == 1);
    CHECK_FALSE(parse_train_log("{\"step\":1,\"loss\":5}\n", "a").timed);
}

TEST_CASE("a bad log is refused with one line naming it and what is wrong", "[plot]") {
    const std::string deep = "{\"step\":1,\"loss\":" + std::string(100, '[') + std::string(100, ']') + "}\n";
    const std::string long_line = "{\"step\":1,\"loss\":2,\"pad\":\"" + std::string(kMaxLogLine, 'x') + "\"}\n";
    const std::pair<std::string, std::string> cases[] = {
        {"", "bad.log: empty: no lines to plot"},
        {"\n \n\t\n", "bad.log: empty: no lines to plot"},
        {"hello\n", "bad.log: line 1: not valid JSON"},
        {"garbage", "bad.log: line 1: not valid JSON"},
        {"{\"step\":1,\"loss\":2}\n{\"step\":2,\n{\"step\":3,\"loss\":1}\n", "bad.log: line 2: not valid JSON"},
        {"[1, 2]\n", "bad.log: line 1: not a JSON object"},
        {"{\"step\":1,\"val_loss\":2}\n", "bad.log: no line has a \"loss\""},
        {"{\"step\":1,\"loss\":null}\n{\"loss\":2}\n", "bad.log: none of its 2 training losses can be drawn"},
        {deep, "bad.log: line 1: JSON nested more than"},
        {long_line, "bad.log: line 1: longer than 65536 bytes"},
    };
    for (const auto& [text, message] : cases) {
        INFO(text.substr(0, 80));
        CHECK_THROWS_WITH(parse_train_log(text, "bad.log"), Catch::StartsWith(message));
    }
}

TEST_CASE("two runs are drawn at the asked size, each in its colour in both panels", "[plot]") {
    std::vector<PlotRun> runs = {{"small", parse_train_log(train_log(200, 8, 3, 50), "a")},
                                 {"large", parse_train_log(train_log(150, 7, 1.5, 25, 80), "b")}};
    for (PlotX x : {PlotX::step, PlotX::time}) {
        PlotOptions o;
        o.x = x;
        o.width = 1000;
        o.height = 420;
        o.title = "two runs";
        const Image im = draw_training_curves(runs, o);
        REQUIRE(im.w == 1000);
        REQUIRE(im.h == 420);
        REQUIRE(im.c == 3);
        // Below the title and the legend's row, in each half: the training panel, then the held-out one.
        const int below_legend = 8 + 2 * label_height();
        for (size_t r = 0; r < runs.size(); r++) {
            INFO("run " << r << (x == PlotX::step ? ", against step" : ", against time"));
            CHECK(count_colour(im, run_colour(r), below_legend, 0, im.h, im.w / 2) > 200);
            CHECK(count_colour(im, run_colour(r), below_legend, im.w / 2, im.h, im.w) > 100);
            CHECK(count_colour(im, run_colour(r), 0, 0, below_legend, im.w) > 0);  // the legend's swatch
        }
    }
    // One panel, and no run colour where no run is.
    PlotOptions o;
    o.panels = PlotPanels::train;
    o.width = 500;
    o.height = 300;
    const Image one = draw_training_curves({runs[0]}, o);
    REQUIRE((one.w == 500 && one.h == 300));
    CHECK(count_colour(one, run_colour(0), 40, 0, one.h, one.w) > 200);
    CHECK(count_colour(one, run_colour(1), 0, 0, one.h, one.w) == 0);
}

TEST_CASE("the run colours are distinct, and neither white nor the grid's grey", "[plot]") {
    for (size_t a = 0; a < kMaxPlotRuns; a++) {
        const Rgb c = run_colour(a);
        CHECK_FALSE((c.r == 255 && c.g == 255 && c.b == 255));
        for (size_t b = a + 1; b < kMaxPlotRuns; b++) {
            const Rgb d = run_colour(b);
            CHECK_FALSE((c.r == d.r && c.g == d.g && c.b == d.b));
        }
    }
}

TEST_CASE("odd logs draw without harm: steps that go back, huge and negative values, one point", "[plot]") {
    const std::string odd =
        "{\"step\":50,\"loss\":1.0,\"ms\":1e15}\n"
        "{\"step\":-1000000000000000,\"loss\":-1e15,\"ms\":0}\n"
        "{\"step\":3,\"loss\":1e15}\n"
        "{\"step\":3,\"loss\":2.0}\n"
        "{\"step\":2,\"val_loss\":1e-300}\n";
    std::vector<PlotRun> runs = {
        {"odd", parse_train_log(odd, "odd")},
        {"one point", parse_train_log("{\"step\":7,\"loss\":0.5}\n", "one")},
        {std::string("\xc3\xa9t\xc3\xa9\n\x7f"), parse_train_log("{\"step\":1,\"loss\":0}\n", "x")}};
    for (PlotX x : {PlotX::step, PlotX::time})
        for (PlotPanels panels : {PlotPanels::train, PlotPanels::held_out, PlotPanels::both}) {
            PlotOptions o;
            o.x = x;
            o.panels = panels;
            o.width = 400;
            o.height = 300;
            o.title = std::string(5000, 'T');
            const Image im = draw_training_curves(runs, o);
            CHECK((im.w == 400 && im.h == 300));
        }
    // The label's bytes outside printable ASCII are measured as '?'.
    CHECK(text_width("\xc3\xa9") == text_width("??"));
}

TEST_CASE("text is drawn whole: every glyph of a long line of digits, and '?' for other bytes", "[plot][viz]") {
    auto dark = [](const std::string& s) {
        Image im = rgb_image(label_height(), text_width(s) + 4, Rgb{255, 255, 255});
        draw_text(&im, 0, 2, s, Rgb{0, 0, 0});
        return count_colour(im, Rgb{0, 0, 0}, 0, 0, im.h, im.w);
    };
    CHECK(dark("0") > 0);
    CHECK(dark("88888888") == 8 * dark("8"));  // '8' has the most strokes of the digits
    CHECK(dark("\xc3\xa9\t") == 3 * dark("?"));
}

TEST_CASE("a plot with no room, or of too many runs, is refused", "[plot]") {
    const PlotRun run{"a", parse_train_log(train_log(5, 8, 2, 5), "a")};
    PlotOptions o;
    o.width = 120;
    o.height = 400;
    CHECK_THROWS_WITH(draw_training_curves({run}, o), Catch::Contains("has no room for the curves"));
    o.width = 800;
    o.height = 70;
    CHECK_THROWS_WITH(draw_training_curves({run}, o), Catch::Contains("has no room for the curves"));
    o.height = 400;
    CHECK_THROWS_WITH(draw_training_curves(std::vector<PlotRun>(kMaxPlotRuns + 1, run), o),
                      Catch::Contains("at most 8 on one plot"));
    CHECK_THROWS_WITH(draw_training_curves({}, o), Catch::Contains("no runs"));
    CHECK(draw_training_curves(std::vector<PlotRun>(kMaxPlotRuns, run), o).w == 800);
}
