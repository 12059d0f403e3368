// Bits per byte of a model on a byte stream.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine.h"

namespace st {

// Windows of ctx + 1 bytes at the given offsets, run in batches; returns mean cross-entropy in nats
// over every predicted byte.
double eval_windows(Engine& e, const uint8_t* data, const std::vector<int64_t>& offsets, int ctx, int batch);
// count windows spread evenly over n bytes: floor(k * (n - ctx - 1) / (count - 1)).
std::vector<int64_t> spread_offsets(int64_t n, int ctx, int count);
// The same mean from the sampler of a device ("cpu", "cuda", "cuda:N", as make_sampler): each window's
// bytes pushed one at a time, batch windows in lockstep, each byte scored from the logits the push
// before it returned. What sampling sees, so it must agree with eval_windows (st-eval --decoder).
double decode_windows(const std::string& device, const Model<float>& m, const uint8_t* data,
                      const std::vector<int64_t>& offsets, int ctx, int batch);
// Mean nats of windows of ctx + 1 bytes at offsets, batch at a time: eval_windows or decode_windows.
using WindowsLoss = std::function<double(const uint8_t* data, const std::vector<int64_t>& offsets, int ctx, int batch)>;
// Every byte after the first of data[0, n), predicted by consecutive windows of ctx that overlap by
// one byte (a byte's context restarts at each window start). Returns mean nats over n - 1 predictions.
double eval_stream(const WindowsLoss& windows, const uint8_t* data, int64_t n, int ctx, int batch);

constexpr double kLn2 = 0.6931471805599453;

}  // namespace st
