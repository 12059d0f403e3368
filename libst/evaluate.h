// Bits per byte of a model on a byte stream.
#pragma once
#include <cstdint>
#include <vector>

#include "engine.h"

namespace st {

// Windows of ctx + 1 bytes at the given offsets, run in batches; returns mean cross-entropy in nats
// over every predicted byte.
double eval_windows(Engine& e, const uint8_t* data, const std::vector<int64_t>& offsets, int ctx, int batch);
// count windows spread evenly over n bytes: floor(k * (n - ctx - 1) / (count - 1)).
std::vector<int64_t> spread_offsets(int64_t n, int ctx, int count);
// Every byte after the first of data[0, n), predicted by consecutive windows of ctx that overlap by
// one byte (a byte's context restarts at each window start). Returns mean nats over n - 1 predictions.
double eval_stream(Engine& e, const uint8_t* data, int64_t n, int ctx, int batch);

constexpr double kLn2 = 0.6931471805599453;

}  // namespace st
