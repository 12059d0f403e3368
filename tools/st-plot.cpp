// st-plot: training curves as a PNG, from st-train's logs (--log): the training loss and the held-out
// bits per byte against step or training time, a line for each run.
#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "cli.h"
#include "error.h"
#include "io/file.h"
#include "plot.h"

using namespace st;

// A log is read whole: st-train writes a few hundred bytes a step, so this is millions of steps.
static constexpr size_t kMaxLogBytes = size_t(1) << 30;
static constexpr int kPanelWidth = 640;  // the default width of each panel

static std::vector<std::string> split_labels(const std::string& text) {
    std::vector<std::string> out;
    for (size_t at = 0; at <= text.size();) {
        const size_t end = std::min(text.find(',', at), text.size());
        out.push_back(text.substr(at, end - at));
        at = end + 1;
    }
    return out;
}

static int plot_main(int argc, char** argv) {
    cxxopts::Options o("st-plot",
                       "Draw training curves as a PNG from st-train's logs (--log): training loss and held-out bits "
                       "per byte, against step or training time, a line for each log.");
    o.custom_help("[OPTIONS] LOG... -o FILE.png");
    // clang-format off
    o.add_options()
        ("o,output", "PNG file to write (- for stdout)", cxxopts::value<std::string>())
        ("against", "step, or time: the training time the steps took",
            cxxopts::value<std::string>()->default_value("step"))
        ("show", "train (the training loss), held-out (the held-out loss) or both side by side",
            cxxopts::value<std::string>()->default_value("both"))
        ("labels", "the runs' names in the legend, comma-separated (default: the logs' file names)",
            cxxopts::value<std::string>())
        ("title", "a line above the legend", cxxopts::value<std::string>())
        ("width", "pixels (default 640 a panel)", cxxopts::value<std::string>())
        ("height", "pixels", cxxopts::value<std::string>()->default_value("480"))
        ("smooth", "average the training loss over N steps around each (default: 1% of the steps; 1: none)",
            cxxopts::value<std::string>())
        ("unit", "the axes' bits per byte, or per dim (an image model's logs: the same number)",
            cxxopts::value<std::string>()->default_value("byte"));
    // clang-format on
    cli::add_basic(o);
    cxxopts::ParseResult r;
    if (cli::parse(o, argc, argv, &r)) return 0;
    // The operands as given: a declared positional of several values would split a name at its commas.
    const std::vector<std::string> paths = r.unmatched();
    if (paths.empty()) usage_fail("missing LOG: the st-train --log files to plot (- for stdin)");
    if (!r.count("output")) usage_fail("missing -o FILE: where to write the PNG");
    if (paths.size() > kMaxPlotRuns)
        usage_fail(std::to_string(paths.size()) + " logs: at most " + std::to_string(kMaxPlotRuns) +
                   " on one plot, each in its own colour");
    PlotOptions po;
    const std::string against = r["against"].as<std::string>(), show = r["show"].as<std::string>();
    if (against != "step" && against != "time") usage_fail("--against " + against + ": expected step or time");
    po.x = against == "step" ? PlotX::step : PlotX::time;
    if (show != "train" && show != "held-out" && show != "both")
        usage_fail("--show " + show + ": expected train, held-out or both");
    po.panels = show == "train" ? PlotPanels::train : show == "held-out" ? PlotPanels::held_out : PlotPanels::both;
    po.width = r.count("width") ? int(cli::to_int("--width", r["width"].as<std::string>(), 160, 8192))
                                : (po.panels == PlotPanels::both ? 2 : 1) * kPanelWidth;
    po.height = int(cli::to_int("--height", r["height"].as<std::string>(), 120, 8192));
    if (r.count("smooth")) po.smooth = int(cli::to_int("--smooth", r["smooth"].as<std::string>(), 1, 1 << 30));
    if (r.count("title")) po.title = r["title"].as<std::string>();
    po.unit = r["unit"].as<std::string>();
    if (po.unit != "byte" && po.unit != "dim") usage_fail("--unit " + po.unit + ": expected byte or dim");
    std::vector<std::string> labels;
    if (r.count("labels")) {
        labels = split_labels(r["labels"].as<std::string>());
        if (labels.size() != paths.size())
            usage_fail("--labels: " + std::to_string(labels.size()) + " names for " + std::to_string(paths.size()) +
                       (paths.size() == 1 ? " log" : " logs"));
    }
    if (std::count(paths.begin(), paths.end(), "-") > 1) usage_fail("- (stdin) given twice: it can be read once");
    const std::string out = r["output"].as<std::string>();
    if (out == "-") cli::refuse_terminal_stdout("a PNG");
    std::vector<std::pair<std::string, std::string>> inputs;
    for (const std::string& p : paths) inputs.push_back({"a LOG", p});
    refuse_input_as_output("-o", out, inputs);

    std::vector<PlotRun> runs;
    std::vector<std::string> names;
    for (size_t k = 0; k < paths.size(); k++) {
        const std::string name = input_name(paths[k]);
        const std::vector<uint8_t> bytes = read_file(paths[k], kMaxLogBytes);
        PlotRun run{labels.empty() ? name.substr(name.find_last_of('/') + 1) : labels[k],
                    parse_train_log({reinterpret_cast<const char*>(bytes.data()), bytes.size()}, name)};
        if (po.x == PlotX::time && !run.log.timed)
            fail(name + ": no line has an \"ms\": --against time needs the step times st-train logs");
        runs.push_back(std::move(run));
        names.push_back(name);
    }
    write_png(out, draw_training_curves(runs, po));
    // Only now, so that a failure is the one line on stderr.
    for (size_t k = 0; k < runs.size() && !r.count("quiet"); k++)
        if (const size_t n = runs[k].log.left_out; n > 0)
            std::fprintf(
                stderr,
                "st-plot: %s: %zu %s left out: a loss that is null, not a number, beyond 1e15 or without a step\n",
                names[k].c_str(), n, n == 1 ? "line" : "lines");
    return 0;
}

int main(int argc, char** argv) { return cli::run("st-plot", argc, argv, plot_main); }
