// What st-train learns from and what it evaluates on: its data split into a training part and a
// held-out part, the last --val-frac of the data or a file of its own (--val).
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "config.h"

namespace st {

struct TrainData {
    std::span<const uint8_t> text;  // a model of bytes: the training part, a view into the data
    std::vector<uint8_t> records;   // an image model: the training pictures, framed (records.h)
    std::vector<uint8_t> val;       // the held-out bytes, pictures framed likewise
    std::span<const uint8_t> train() const { return records.empty() ? text : std::span<const uint8_t>(records); }
};

// Splits DATA (named NAME in errors) for a model of config C. The held-out part is all of the file
// VAL when given, else the last VAL_FRAC of DATA: for pictures, that many whole records, at least one,
// leaving at least one to train on. st::Error naming the data when it is empty, when a part is
// shorter than one window of the context (n_ctx + 1 bytes), or, for pictures, when it is not a whole
// number of them.
TrainData split_heldout(std::span<const uint8_t> data, const std::string& name, const Config& c, float val_frac,
                        const std::optional<std::string>& val);

}  // namespace st
