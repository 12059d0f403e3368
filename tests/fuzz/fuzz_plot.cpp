// st-train logs as st-plot reads them, and the curves it draws from whatever they hold (steps that
// go back, values up to the limit, single points), against step and against time.
#include "error.h"
#include "plot.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        st::PlotRun run{"input", st::parse_train_log({reinterpret_cast<const char*>(data), size}, "input")};
        for (st::PlotX x : {st::PlotX::step, st::PlotX::time}) {
            st::PlotOptions o;
            o.x = x;
            o.width = 1600;  // room for the widest tick labels: 17 digits and an exponent
            o.height = 300;
            const st::Image im = st::draw_training_curves({run}, o);
            if (im.w != o.width || im.h != o.height) abort();
        }
    } catch (const st::Error&) {}
    return 0;
}
