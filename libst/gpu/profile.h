// Where a GPU step's time goes, by phase, when ST_PROFILE=1: events around each phase's launches,
// summed per phase and printed (ms a step) when the engine goes away. Off, it costs one branch.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "kernels/check.h"

namespace st::gpu {

class Profile {
   public:
    Profile() : on_(std::getenv("ST_PROFILE") && std::string(std::getenv("ST_PROFILE")) == "1") {}
    ~Profile() {
        const int steps = seen_ - 1;  // the first is left out (end_step)
        if (!on_ || steps <= 0) return;
        std::fprintf(stderr, "profile, ms a step over %d steps after the first:", steps);
        for (const auto& [name, ms] : total_) std::fprintf(stderr, " %s %.2f", name.c_str(), ms / steps);
        std::fprintf(stderr, "\n");
        for (auto& m : marks_) cudaEventDestroy(m.first), cudaEventDestroy(m.second);
    }
    // Brackets the launches of one phase on stream s. Phases may nest (attention inside forward): each
    // takes its pair of events before its launches run.
    template <class F> void phase(const char* name, cudaStream_t s, F launch) {
        if (!on_) return launch();
        if (used_ == marks_.size()) {
            cudaEvent_t a, b;
            CUDA_CHECK(cudaEventCreate(&a));
            CUDA_CHECK(cudaEventCreate(&b));
            marks_.push_back({a, b});
        }
        const size_t mine = used_++;
        names_.push_back(name);
        CUDA_CHECK(cudaEventRecord(marks_[mine].first, s));
        launch();
        CUDA_CHECK(cudaEventRecord(marks_[mine].second, s));
    }
    // After the stream has finished a step: adds up its phases. The first step is left out: its
    // first-use costs (cuBLASLt's choices, the arena) would weigh on every phase's mean.
    void end_step() {
        if (!on_) return;
        for (size_t i = 0; i < used_ && seen_ > 0; i++) {
            float ms = 0;
            CUDA_CHECK(cudaEventElapsedTime(&ms, marks_[i].first, marks_[i].second));
            total_[names_[i]] += ms;
        }
        used_ = 0;
        names_.clear();
        seen_++;
    }

   private:
    bool on_;
    std::vector<std::pair<cudaEvent_t, cudaEvent_t>> marks_;
    std::vector<std::string> names_;
    size_t used_ = 0;
    int seen_ = 0;  // steps ended
    std::map<std::string, double> total_;
};

}  // namespace st::gpu
