// Training curves: st-train's logs read line by line, and drawn as panels of lines in bits per byte.
#include "plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <utility>

#include "error.h"
#include "evaluate.h"
#include "io/json.h"

namespace st {

namespace {

// ---- reading ----

// J[KEY] when it is a number within kMaxPlotValue; NaN when it is missing, null (st-train's loss
// that was not finite), of another type or beyond that.
double usable(const nlohmann::json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return NAN;
    const double v = it->get<double>();
    return std::fabs(v) <= kMaxPlotValue ? v : NAN;
}

// ---- drawing ----

constexpr Rgb kWhite{255, 255, 255}, kBlack{0, 0, 0}, kGrid{228, 228, 228}, kNote{110, 110, 110};
constexpr int kTick = 4;       // the length of a tick mark
constexpr int kThick = 2;      // lines of the curves
constexpr int kMarker = 7;     // the square at a held-out point
constexpr int kSwatch = 24;    // a legend entry's stroke of colour
constexpr int kMinFrame = 40;  // the smallest plot area that says anything
constexpr int kTextRise = 7;   // from the top of a line of text to the middle of its digits

// A colour washed towards white: the raw training loss behind its average.
Rgb pale(Rgb c) {
    auto mix = [](uint8_t v) { return uint8_t(v + (255 - v) * 65 / 100); };
    return {mix(c.r), mix(c.g), mix(c.b)};
}

// S, cut short with "..." where it would be wider than WIDTH pixels.
std::string fit(const std::string& s, int width) {
    if (text_width(s) <= width) return s;
    size_t lo = 0, hi = std::min(s.size(), size_t(std::max(width, 0)));  // the longest that fits is in [lo, hi)
    while (hi - lo > 1) {
        const size_t mid = (lo + hi) / 2;
        (text_width(s.substr(0, mid) + "...") <= width ? lo : hi) = mid;
    }
    return lo == 0 ? "" : s.substr(0, lo) + "...";
}

// Where values go along one side of a plot, and the round numbers marked on it.
struct Axis {
    double lo = 0, hi = 1;  // the values at the two ends
    double tick = 1;        // between two marks: 1, 2 or 5 times a power of ten
    int decimals = 0;       // of the labels, enough to tell two marks apart
    int digits = 0;         // labels as 2.5e+07, with this many significant digits, where 0: written out

    std::vector<double> ticks() const {
        std::vector<double> out;
        const double first = std::ceil(lo / tick);
        for (int k = 0; k < 64 && (first + k) * tick <= hi + tick * 1e-9; k++) {
            const double v = (first + k) * tick;
            out.push_back(std::fabs(v) < tick * 1e-6 ? 0 : v);  // no "-0.0"
        }
        return out;
    }
    std::string label(double v) const {
        char buf[64];
        if (digits > 0)
            std::snprintf(buf, sizeof buf, "%.*g", digits, v);
        else
            std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
        return buf;
    }
    // The widest label's width in pixels.
    int label_width() const {
        int w = 0;
        for (double v : ticks()) w = std::max(w, text_width(label(v)));
        return w;
    }
};

// An axis over [LO, HI] (finite, each within kMaxPlotValue, or an empty range as lo > hi), widened
// by MARGIN of its span on each side so that no curve runs along the frame, with at most about
// MAX_TICKS marks, at whole numbers where WHOLE (steps). An empty range, or a single value, gets a
// span around it: a flat line is drawn in the middle.
Axis make_axis(double lo, double hi, double margin, int max_ticks, bool whole) {
    if (lo > hi) lo = 0, hi = 1;
    const double size = std::max({std::fabs(lo), std::fabs(hi), 1e-3});
    if (hi - lo < size * 1e-6) {  // with the 1e-3 floor, labels need at most ten decimals
        const double mid = lo + (hi - lo) / 2;
        lo = mid - size * 0.05;
        hi = mid + size * 0.05;
    }
    const double span = hi - lo;
    Axis a;
    a.lo = lo - span * margin;
    a.hi = hi + span * margin;
    const double rough = (a.hi - a.lo) / std::max(max_ticks, 1), power = std::pow(10.0, std::floor(std::log10(rough)));
    a.tick = 10 * power;
    for (double m : {1.0, 2.0, 5.0})
        if (m * power >= rough) {
            a.tick = m * power;
            break;
        }
    if (whole) a.tick = std::max(a.tick, 1.0);
    const int tick_power = int(std::floor(std::log10(a.tick) + 1e-9));
    a.decimals = std::max(0, -tick_power);
    const double largest = std::max(std::fabs(a.lo), std::fabs(a.hi));
    if (largest >= 1e7) a.digits = std::clamp(int(std::floor(std::log10(largest))) - tick_power + 1, 1, 17);
    return a;
}

// The axis with the most marks, at most about MAX_TICKS, whose labels side by side fit in ROOM pixels.
Axis fit_axis(double lo, double hi, double margin, int max_ticks, bool whole, int room) {
    Axis a = make_axis(lo, hi, margin, max_ticks, whole);
    for (int n = max_ticks - 1; n >= 1; n--) {
        if (int(a.ticks().size()) * (a.label_width() + 16) <= room) break;
        a = make_axis(lo, hi, margin, n, whole);
    }
    return a;
}

// A curve in the units drawn: x in steps or in hours, minutes or seconds, y in bits per byte; LINE is
// the y of the run's line (the training loss's moving average, or y itself).
struct Curve {
    std::vector<double> x, y, line;
};

Curve to_curve(const std::vector<CurvePoint>& points, PlotX x, double time_unit) {
    std::vector<std::pair<double, double>> xy;
    xy.reserve(points.size());
    for (const CurvePoint& p : points)
        xy.push_back({x == PlotX::step ? p.step : p.seconds / time_unit, p.value / kLn2});
    // In order along x: a log whose steps go back (lines of runs put together by hand) still draws one
    // line from left to right.
    std::stable_sort(xy.begin(), xy.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    Curve c;
    for (const auto& [px, py] : xy) {
        c.x.push_back(px);
        c.y.push_back(py);
    }
    return c;
}

// V averaged over WINDOW values centred on each (fewer at the ends, so that the average does not
// lag behind the curve where it starts or ends).
std::vector<double> moving_average(const std::vector<double>& v, size_t window) {
    const size_t n = v.size(), half = window / 2;
    std::vector<double> sum(n + 1, 0.0), out(n);
    for (size_t i = 0; i < n; i++) sum[i + 1] = sum[i] + v[i];
    for (size_t i = 0; i < n; i++) {
        const size_t a = i >= half ? i - half : 0, b = std::min(n, i + half + 1);
        out[i] = (sum[b] - sum[a]) / double(b - a);
    }
    return out;
}

// One panel's plot area, in pixels, and the axes that map values into it.
struct Frame {
    int left = 0, top = 0, width = 0, height = 0;
    Axis x, y;

    int px(double v) const {
        const double f = (v - x.lo) / (x.hi - x.lo);
        return left + int(std::lround(std::clamp(f, 0.0, 1.0) * (width - 1)));
    }
    int py(double v) const {
        const double f = (v - y.lo) / (y.hi - y.lo);
        return top + height - 1 - int(std::lround(std::clamp(f, 0.0, 1.0) * (height - 1)));
    }
};

// A square of side D centred on (y, x).
void dot(Image* im, int y, int x, int d, Rgb c) {
    fill_rect(im, y - d / 2, x - d / 2, y - d / 2 + d, x - d / 2 + d, c);
}

// A line from (y0, x0) to (y1, x1), THICK pixels wide (Bresenham's steps).
void segment(Image* im, int y0, int x0, int y1, int x1, int thick, Rgb c) {
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    for (int err = dx + dy;;) {
        dot(im, y0, x0, thick, c);
        if (x0 == x1 && y0 == y1) return;
        const int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

// The line through the points (X, Y), in order of x, in F. The points that fall in one pixel column
// become one stroke from the lowest to the highest, joined to the next column's first point: what
// drawing every segment gives, in time that grows with the picture, not with the points (a million
// steps on 600 columns).
void polyline(Image* im, const Frame& f, const std::vector<double>& x, const std::vector<double>& y, int thick, Rgb c) {
    int last_x = -1, last_y = 0;  // the previous column and its last point
    for (size_t i = 0; i < x.size();) {
        const int col = f.px(x[i]), first = f.py(y[i]);
        int low = first, high = first, end = first;
        for (; i < x.size() && f.px(x[i]) == col; i++) {
            end = f.py(y[i]);
            low = std::min(low, end);
            high = std::max(high, end);
        }
        if (last_x >= 0) segment(im, last_y, last_x, first, col, thick, c);
        fill_rect(im, low - thick / 2, col - thick / 2, high - thick / 2 + thick, col - thick / 2 + thick, c);
        last_x = col, last_y = end;
    }
}

// The grid, the frame, the tick marks and their labels of F, and the name of its x axis below.
void draw_axes(Image* im, const Frame& f, const std::string& x_name, int panel_left, int panel_right) {
    const int bottom = f.top + f.height, right = f.left + f.width;
    for (double v : f.y.ticks()) {
        const int y = f.py(v);
        fill_rect(im, y, f.left, y + 1, right, kGrid);
        fill_rect(im, y, f.left - kTick, y + 1, f.left, kBlack);
        const std::string s = f.y.label(v);
        draw_text(im, y - kTextRise, f.left - kTick - 4 - text_width(s), s, kBlack);
    }
    for (double v : f.x.ticks()) {
        const int x = f.px(v);
        fill_rect(im, f.top, x, bottom, x + 1, kGrid);
        fill_rect(im, bottom, x, bottom + kTick, x + 1, kBlack);
        const std::string s = f.x.label(v);
        const int w = text_width(s);
        draw_text(im, bottom + kTick + 2, std::clamp(x - w / 2, panel_left, std::max(panel_left, panel_right - w)), s,
                  kBlack);
    }
    fill_rect(im, f.top, f.left, f.top + 1, right, kBlack);
    fill_rect(im, bottom - 1, f.left, bottom, right, kBlack);
    fill_rect(im, f.top, f.left, bottom, f.left + 1, kBlack);
    fill_rect(im, f.top, right - 1, bottom, right, kBlack);
    const std::string name = fit(x_name, f.width);
    draw_text(im, bottom + kTick + 2 + label_height(), f.left + (f.width - text_width(name)) / 2, name, kBlack);
}

// What one panel shows: its heading and a curve of each run (empty where a run has no points).
struct CurvePanel {
    std::string heading;
    std::vector<Curve> curves;
    bool training = false;  // the training loss: smoothed, its raw values pale behind
};

}  // namespace

TrainLog parse_train_log(std::string_view text, const std::string& name) {
    TrainLog log;
    size_t line_no = 0, losses = 0;  // losses: the lines with a "loss"
    bool any = false;
    double ms = 0;  // the training time so far
    for (size_t at = 0; at < text.size();) {
        const size_t newline = text.find('\n', at);
        const bool unfinished = newline == std::string_view::npos;
        const std::string_view line = text.substr(at, (unfinished ? text.size() : newline) - at);
        at = unfinished ? text.size() : newline + 1;
        line_no++;
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        auto where = [&] { return name + ": line " + std::to_string(line_no); };
        if (line.size() > kMaxLogLine)
            fail(where() + ": longer than " + std::to_string(kMaxLogLine) + " bytes, not a line of st-train's log");
        nlohmann::json j;
        try {
            j = json_parse(line, where());
        } catch (const Error&) {
            if (unfinished && any) break;  // the line st-train is writing as the log is read
            throw;
        }
        any = true;
        if (!j.is_object()) fail(where() + ": not a JSON object, so not a line of st-train's log");
        const double step = usable(j, "step");
        if (j.contains("loss")) {
            losses++;
            const double step_ms = usable(j, "ms");
            if (step_ms >= 0) {
                ms += step_ms;
                log.timed = true;
            }
            const double loss = usable(j, "loss");
            if (std::isnan(step) || std::isnan(loss))
                log.left_out++;
            else
                log.loss.push_back({step, ms / 1000, loss});
        }
        if (j.contains("val_loss")) {
            const double val = usable(j, "val_loss");
            if (std::isnan(step) || std::isnan(val))
                log.left_out++;
            else
                log.held_out.push_back({step, ms / 1000, val});
        }
    }
    if (!any) fail(name + ": empty: no lines to plot");
    if (losses == 0) fail(name + ": no line has a \"loss\": not a log of st-train --log");
    if (log.loss.empty())
        fail(name + ": none of its " + std::to_string(losses) +
             " training losses can be drawn (each is null, not finite, or without a step)");
    return log;
}

Rgb run_colour(size_t k) {
    // Okabe and Ito, "Color Universal Design" (2008); yellow last, as it stands out least on white.
    static constexpr std::array<Rgb, kMaxPlotRuns> colours{{{0, 114, 178},
                                                            {213, 94, 0},
                                                            {0, 158, 115},
                                                            {204, 121, 167},
                                                            {230, 159, 0},
                                                            {86, 180, 233},
                                                            {0, 0, 0},
                                                            {240, 228, 66}}};
    return colours[k % colours.size()];
}

Image draw_training_curves(const std::vector<PlotRun>& runs, const PlotOptions& o) {
    if (runs.empty()) fail("nothing to plot: no runs");
    if (runs.size() > kMaxPlotRuns)
        fail(std::to_string(runs.size()) + " runs: at most " + std::to_string(kMaxPlotRuns) +
             " on one plot, each in its own colour");
    if (std::string problem = image_size_problem(uint64_t(std::max(o.height, 0)), uint64_t(std::max(o.width, 0)), 3);
        !problem.empty() || o.width <= 0 || o.height <= 0)
        fail("a " + std::to_string(o.width) + "x" + std::to_string(o.height) +
             " plot: " + (problem.empty() ? "no pixels" : problem));

    // Time in the unit its largest value reads best in.
    double most_seconds = 0;
    for (const PlotRun& r : runs) {
        for (const CurvePoint& p : r.log.loss) most_seconds = std::max(most_seconds, p.seconds);
        for (const CurvePoint& p : r.log.held_out) most_seconds = std::max(most_seconds, p.seconds);
    }
    const double time_unit = most_seconds >= 7200 ? 3600 : most_seconds >= 120 ? 60 : 1;
    const std::string x_name = o.x == PlotX::step ? "step"
                               : time_unit == 1   ? "training time (s)"
                               : time_unit == 60  ? "training time (min)"
                                                  : "training time (h)";

    std::vector<CurvePanel> panels;
    if (o.panels != PlotPanels::held_out)
        panels.push_back({"training loss, bits per " + o.unit + " (nats / ln 2)", {}, true});
    if (o.panels != PlotPanels::train) panels.push_back({"held-out loss, bits per " + o.unit, {}, false});
    // Both panels share the x axis, over every point either draws.
    double x_lo = INFINITY, x_hi = -INFINITY;
    for (CurvePanel& p : panels)
        for (const PlotRun& r : runs) {
            Curve c = to_curve(p.training ? r.log.loss : r.log.held_out, o.x, time_unit);
            const size_t window = o.smooth > 0 ? size_t(o.smooth) : std::max<size_t>(1, c.y.size() / 100);
            c.line = p.training ? moving_average(c.y, window) : c.y;
            for (double v : c.x) x_lo = std::min(x_lo, v), x_hi = std::max(x_hi, v);
            p.curves.push_back(std::move(c));
        }

    Image im = rgb_image(o.height, o.width, kWhite);
    const int line = label_height(), right_edge = o.width - kGridPad;
    int top = kGridPad;
    if (!o.title.empty()) {
        draw_text(&im, top, kGridPad, fit(o.title, right_edge - kGridPad), kBlack);
        top += line;
    }
    // The legend: a stroke of each run's colour and its label, in rows as wide as the picture.
    for (size_t k = 0, x = kGridPad; k < runs.size(); k++) {
        const std::string label = fit(runs[k].label, right_edge - kGridPad - kSwatch - 6);
        const int w = kSwatch + 6 + text_width(label);
        if (x > size_t(kGridPad) && int(x) + w > right_edge) x = kGridPad, top += line;
        fill_rect(&im, top + kTextRise - 2, int64_t(x), top + kTextRise + 2, int64_t(x) + kSwatch, run_colour(k));
        draw_text(&im, top, int(x) + kSwatch + 6, label, kBlack);
        x += size_t(w + 3 * kGridPad);
        if (k + 1 == runs.size()) top += line;
    }

    // Each panel: its heading, the plot area, the x labels and the x axis's name below it.
    const int n = int(panels.size()), gap = 3 * kGridPad;
    const int panel_w = (o.width - 2 * kGridPad - (n - 1) * gap) / n;
    const int frame_top = top + line + kTextRise, frame_h = o.height - kGridPad - kTick - 2 - 2 * line - frame_top;
    std::vector<Axis> y_axes;
    int y_label_w = 0;
    for (const CurvePanel& p : panels) {
        double lo = INFINITY, hi = -INFINITY;  // the raw values': they are drawn too, and hold the averages
        for (const Curve& c : p.curves)
            for (double y : c.y) lo = std::min(lo, y), hi = std::max(hi, y);
        y_axes.push_back(make_axis(lo, hi, 0.04, std::clamp(frame_h / 45, 2, 10), false));
        y_label_w = std::max(y_label_w, y_axes.back().label_width());
    }
    const int frame_w = panel_w - y_label_w - kTick - 6 - kGridPad;
    if (frame_w < kMinFrame || frame_h < kMinFrame)
        fail("a " + std::to_string(o.width) + "x" + std::to_string(o.height) + " plot of " + std::to_string(n) +
             (n == 1 ? " panel" : " panels") + " and " + std::to_string(runs.size()) +
             (runs.size() == 1 ? " run" : " runs") + " has no room for the curves: make it larger");
    const Axis x_axis = fit_axis(x_lo, x_hi, 0.02, std::clamp(frame_w / 90, 2, 10), o.x == PlotX::step, frame_w);

    for (size_t k = 0; k < panels.size(); k++) {
        const CurvePanel& p = panels[k];
        const int panel_left = kGridPad + int(k) * (panel_w + gap);
        const Frame f{panel_left + y_label_w + kTick + 6, frame_top, frame_w, frame_h, x_axis, y_axes[k]};
        draw_text(&im, top, f.left, fit(p.heading, f.width), kBlack);
        draw_axes(&im, f, x_name, panel_left, panel_left + panel_w);
        bool any = false;
        for (size_t r = 0; r < runs.size(); r++) {
            const Curve& c = p.curves[r];
            any = any || !c.x.empty();
            if (c.line != c.y) polyline(&im, f, c.x, c.y, 1, pale(run_colour(r)));
        }
        for (size_t r = 0; r < runs.size(); r++) {
            const Curve& c = p.curves[r];
            polyline(&im, f, c.x, c.line, kThick, run_colour(r));
            // Held-out points, and a run of one step, are marked, where the marks stay apart.
            if ((!p.training && c.x.size() * 2 * kMarker <= size_t(f.width)) || c.x.size() == 1)
                for (size_t i = 0; i < c.x.size(); i++) dot(&im, f.py(c.y[i]), f.px(c.x[i]), kMarker, run_colour(r));
        }
        if (!any) {
            const std::string note = fit("no held-out losses", f.width - 2 * kGridPad);
            draw_text(&im, f.top + f.height / 2 - kTextRise, f.left + (f.width - text_width(note)) / 2, note, kNote);
        }
    }
    return im;
}

}  // namespace st
