// Training curves (st-plot): st-train's JSON-lines logs (--log) read into series, and the series of
// several runs drawn as lines against step or training time, in bits per byte, on one PNG.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "io/image.h"
#include "viz.h"

namespace st {

// Lines longer than this are refused: st-train's are a few hundred bytes, and the bound keeps one
// hostile line from becoming a JSON tree of gigabytes.
inline constexpr size_t kMaxLogLine = 1 << 16;
// Values beyond this magnitude (a step, a loss, a time) are left out like values that are not
// finite: no st-train log holds them, and the axes' arithmetic stays far from overflow.
inline constexpr double kMaxPlotValue = 1e15;

// One point of a curve: the step of a log line, the training time up to it (the sum of the "ms" of
// the step lines so far, in seconds) and a value.
struct CurvePoint {
    double step = 0, seconds = 0, value = 0;
};

// What one st-train --log holds, in the order of its lines.
struct TrainLog {
    std::vector<CurvePoint> loss;      // a line with "loss": the training loss, in nats
    std::vector<CurvePoint> held_out;  // a line with "val_loss": the held-out loss, in nats
    size_t left_out = 0;               // lines with "loss" or "val_loss" whose step or value is not usable
    bool timed = false;                // some step line has a usable "ms"
};

// TEXT, the lines of a log, named NAME in errors ("NAME: line 3: not valid JSON, at byte 1"). Blank
// lines are skipped, and so is a last line without its newline that is not JSON (st-train may be
// writing it). Each other line must be a JSON object of at most kMaxLogLine bytes. A "loss" or
// "val_loss" counts when it and "step" are numbers within kMaxPlotValue (st-train logs a loss that
// is not finite as null); "ms" adds to the time when it is a number in [0, kMaxPlotValue].
// st::Error when TEXT holds no line, no "loss", or no loss that counts.
TrainLog parse_train_log(std::string_view text, const std::string& name);

enum class PlotX { step, time };
enum class PlotPanels { train, held_out, both };  // the training loss, the held-out loss, both side by side

struct PlotRun {
    std::string label;  // the legend's name for it
    TrainLog log;
};

struct PlotOptions {
    PlotX x = PlotX::step;
    PlotPanels panels = PlotPanels::both;
    int width = 1280, height = 480;  // of the whole picture
    std::string title;               // a line above the legend, when not empty
    int smooth = 0;                  // the training loss averaged over this many points around each; 0: 1% of them
    std::string unit = "byte";       // the axes' "bits per ...": byte, or dim for pictures (the same number)
};

// At most this many runs on one plot: Okabe and Ito's colours, each told from the others with any
// common kind of colour blindness.
inline constexpr size_t kMaxPlotRuns = 8;
// Run k's colour: blue, vermillion, bluish green, reddish purple, orange, sky blue, black, yellow.
Rgb run_colour(size_t k);

// The runs drawn on one RGB picture of options' width x height: a title, a legend (a swatch of each
// run's colour and its label), and a panel for each curve of options.panels, with axes and tick
// labels, both curves in bits per byte (nats / ln 2). The training loss is drawn pale as it is and in
// the run's colour averaged over a moving window; held-out points are marked where the marks stay
// apart. Both panels share the x axis: steps, or training time in seconds, minutes or hours
// (whichever reads best). st::Error for no runs, more than kMaxPlotRuns, or a picture too small to
// hold the panels.
Image draw_training_curves(const std::vector<PlotRun>& runs, const PlotOptions& options);

}  // namespace st
