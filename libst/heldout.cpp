// The held-out split of st-train's data.
#include "heldout.h"

#include <algorithm>

#include "error.h"
#include "io/file.h"
#include "records.h"

namespace st {

TrainData split_heldout(std::span<const uint8_t> data, const std::string& name, const Config& c, float val_frac,
                        const std::optional<std::string>& val) {
    if (data.empty()) fail(name + ": no data (empty)");
    const size_t ctx = size_t(c.n_ctx);
    const std::string window = " one window of the context (" + std::to_string(ctx + 1) + " bytes)";
    TrainData d;
    if (reads_records(c)) {  // pictures: whole records, each framed by a start byte (records.h)
        if (val) {
            const std::vector<uint8_t> held = read_file(*val);
            d.val = frame_records(held.data(), held.size(), c, input_name(*val));
        } else {
            const size_t records = data.size() / ctx;
            if (records < 2)
                fail(name + ": " + std::to_string(data.size()) + " bytes hold fewer than two " + record_shape(c) +
                     " pictures");
            const size_t nval = std::clamp<size_t>(size_t(double(records) * val_frac), 1, records - 1);
            const size_t cut = data.size() - nval * ctx - data.size() % ctx;
            d.val = frame_records(data.data() + cut, data.size() - cut, c, name);  // a partial record fails here
            data = data.first(cut);
        }
        d.records = frame_records(data.data(), data.size(), c, name);
    } else if (val) {
        d.val = read_file(*val);
        if (d.val.size() < ctx + 1)
            fail(input_name(*val) + ": " + std::to_string(d.val.size()) + " bytes is shorter than" + window);
        d.text = data;
    } else {
        const size_t nval = size_t(double(data.size()) * val_frac);
        if (nval < ctx + 1)
            fail(name + ": the held-out part (" + std::to_string(nval) + " bytes) is shorter than" + window +
                 "; give more data, a larger --val-frac, or --val FILE");
        d.val.assign(data.end() - std::ptrdiff_t(nval), data.end());
        d.text = data.first(data.size() - nval);
    }
    if (d.train().size() < ctx + 1)
        fail(name + ": " + std::to_string(d.train().size()) + " training bytes is shorter than" + window);
    return d;
}

}  // namespace st
