// The GPU memory a training run will need, said before it starts: st-train --plan prints it, and a
// run that cannot fit is refused at once with what would fit, not after minutes of work.
#pragma once
#include <string>

#include "config.h"
#include "engine.h"

namespace st {

struct Fit {
    int ctx = 0;    // the longest context that fits at the batch asked for (0: none)
    int batch = 0;  // the largest batch that fits at the context asked for (0: none)
};
// B windows of T a step (this process's share, before micro-batches) on engine e of model cfg.
Fit memory_fit(Engine& e, const Config& cfg, int B, int T);
// The plan by part, one "name  GiB" line each, then the total and what the card has.
std::string memory_plan_text(const MemoryPlan& p);
// Throws st::Error, one line with the figures and what would fit, where a step cannot fit.
void check_memory(Engine& e, const Config& cfg, int B, int T);

}  // namespace st
