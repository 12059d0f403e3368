// Memory plans (memory.h). The engine counts what it will allocate (Engine::memory_plan); this file
// searches the lengths and batches that fit and words the answer.
#include "memory.h"

#include <cstdio>

#include "error.h"

namespace st {

namespace {

double gib(int64_t bytes) { return double(bytes) / double(int64_t(1) << 30); }

// Lengths a model of cfg accepts: a whole number of rows for 2-d positions, of blocks otherwise.
int ctx_step(const Config& cfg) { return cfg.pos == PosKind::p2d ? cfg.attn.stride : cfg.attn.block; }

}  // namespace

Fit memory_fit(Engine& e, const Config& cfg, int B, int T) {
    const MemoryPlan full = e.memory_plan(B, T, true);
    const int64_t room = full.available;
    Fit f;
    // Longest context: the attention layouts scaled from T's, linearly (they grow at least so).
    auto fits_ctx = [&](int t) {
        const MemoryPlan p = e.memory_plan(B, t, false);
        return p.total() + int64_t(double(full.attention) * t / T) <= room;
    };
    const int step = ctx_step(cfg);
    int lo = 0, hi = T / step;  // in steps
    while (lo < hi) {
        const int mid = lo + (hi - lo + 1) / 2;
        if (fits_ctx(mid * step))
            lo = mid;
        else
            hi = mid - 1;
    }
    f.ctx = lo * step;
    // Largest batch, up to the one asked for and a little past it.
    int blo = 0, bhi = B;
    while (blo < bhi) {
        const int mid = blo + (bhi - blo + 1) / 2;
        if (e.memory_plan(mid, T, false).total() + full.attention <= room)
            blo = mid;
        else
            bhi = mid - 1;
    }
    f.batch = blo;
    return f;
}

std::string memory_plan_text(const MemoryPlan& p) {
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "  weights and gradients %9.3f GiB\n"
                  "  optimizer moments     %9.3f GiB\n"
                  "  activations           %9.3f GiB%s\n"
                  "  attention layouts     %9.3f GiB\n"
                  "  product workspace     %9.3f GiB\n"
                  "  total                 %9.3f GiB of %.3f GiB this process can hold on the card\n",
                  gib(p.weights), gib(p.optimizer), gib(p.activations),
                  p.chunk > 0 ? (" (--recompute, chunks of " + std::to_string(p.chunk) + " tokens)").c_str() : "",
                  gib(p.attention), gib(p.workspace), gib(p.total()), gib(p.available));
    std::string text = buf;
    if (p.host > 0) {
        std::snprintf(buf, sizeof buf, "  and on the host       %9.3f GiB of layer inputs, pinned (--offload)\n",
                      gib(p.host));
        text += buf;
    }
    return text;
}

void check_memory(Engine& e, const Config& cfg, int B, int T) {
    const MemoryPlan p = e.memory_plan(B, T, true);
    if (p.available <= 0 || p.total() <= p.available) return;
    const Fit f = memory_fit(e, cfg, B, T);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "a step needs %.2f GiB of GPU memory (activations %.2f GiB) and %s has %.2f GiB: ", gib(p.total()),
                  gib(p.activations), e.name().c_str(), gib(p.available));
    std::string what;
    if (f.ctx > 0) what += "--ctx " + std::to_string(f.ctx) + " fits";
    if (f.batch > 0) what += std::string(what.empty() ? "" : ", ") + "--batch " + std::to_string(f.batch) + " fits";
    if (p.chunk == 0) what += std::string(what.empty() ? "" : ", or ") + "try --recompute";
    if (what.empty()) what = "not even one window fits";
    fail(buf + what + " (st-train --plan shows the parts)");
}

}  // namespace st
