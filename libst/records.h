// Data for image models: whole records of n_ctx bytes (one picture each), not windows that start
// anywhere in a stream. Every byte of a record is predicted, the first from a start byte 0 put before
// it, so a record's example is the n_ctx + 1 bytes [0, record...]. frame_records lays the records out
// that way once; a window of the framed bytes at k * (n_ctx + 1) is then record k, and the training
// loop and the evaluation use the framed bytes as they use a text stream.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"

namespace st {

bool reads_records(const Config& c);        // pos == image
std::string record_shape(const Config& c);  // "28x28x1"

// The records of data[0, n), each preceded by a 0. st::Error naming `name` when n is not a whole
// number of records.
std::vector<uint8_t> frame_records(const uint8_t* data, size_t n, const Config& c, const std::string& name);

// Window offsets of count framed records spread evenly over n framed bytes: all of them when count is
// at least their number.
std::vector<int64_t> record_offsets(int64_t n, int n_ctx, int count);

}  // namespace st
