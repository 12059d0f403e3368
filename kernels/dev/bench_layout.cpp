// Times layout_build, what an engine does before its first step at a sequence length: the attention
// layout of one layer (every head), and prints one JSON line per length (median of RUNS builds).
// Environment: SEQS=1048576,4194304,16777216 PATTERN=strided STRIDE=4096 SUMMARY=128 HEADS=4 BLOCK=128
// RUNS=3. The layouts of those lengths take a few hundred MB to a few GB of memory.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "error.h"
#include "layout.h"

namespace {

int env_int(const char* name, int dflt) {
    const char* v = std::getenv(name);
    return v ? std::atoi(v) : dflt;
}

}  // namespace

int main() {
    try {
        st::AttnSpec s;
        const char* pattern = std::getenv("PATTERN") ? std::getenv("PATTERN") : "strided";
        if (!st::pattern_from_name(pattern, &s.pattern)) st::fail(std::string("PATTERN: ") + pattern);
        s.mode = st::HeadMode::merged;
        s.stride = env_int("STRIDE", 4096);
        s.summary = env_int("SUMMARY", 128);
        s.block = env_int("BLOCK", 128);
        const int heads = env_int("HEADS", 4), runs = std::max(1, env_int("RUNS", 3));
        std::stringstream seqs(std::getenv("SEQS") ? std::getenv("SEQS") : "1048576,4194304,16777216");
        for (std::string n; std::getline(seqs, n, ',');) {
            const int T = std::stoi(n);
            std::vector<double> sec;
            size_t entries = 0;
            for (int r = 0; r < runs; r++) {
                const auto t0 = std::chrono::steady_clock::now();
                const st::LayerLayout lay = st::layout_build(s, T, heads, 0);
                sec.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
                entries = 0;
                for (const auto& h : lay.heads)
                    for (const auto& c : h.parts) entries += c.col.size();
            }
            std::sort(sec.begin(), sec.end());
            std::printf(
                "{\"impl\": \"st-layout\", \"pattern\": \"%s\", \"stride\": %d, \"heads\": %d, \"block\": %d, \"T\": "
                "%d, "
                "\"blocks\": %zu, \"seconds\": %.3f}\n",
                pattern, s.stride, heads, s.block, T, entries, sec[sec.size() / 2]);
            std::fflush(stdout);
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "st-bench-layout: %s\n", e.what());
        return 1;
    }
}
