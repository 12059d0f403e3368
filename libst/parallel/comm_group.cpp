// A group of a job's ranks as a Comm of its own, over the job's collectives (parallel/comm.h).
#include <algorithm>
#include <string>
#include <vector>

#include "error.h"
#include "parallel/comm.h"

namespace st {

namespace {

class GroupComm final : public Comm {
   public:
    GroupComm(Comm& job, int size) : job_(job), size_(size) {}
    int rank() const override { return job_.rank() % size_; }
    int world() const override { return size_; }
    void allreduce_sum(float* x, size_t n) override {
        const int groups = job_.world() / size_, group = job_.rank() / size_;
        buf_.assign(size_t(groups) * n, 0.0f);
        std::copy(x, x + n, buf_.begin() + ptrdiff_t(size_t(group) * n));
        job_.allreduce_sum(buf_.data(), buf_.size());
        std::copy(buf_.begin() + ptrdiff_t(size_t(group) * n), buf_.begin() + ptrdiff_t(size_t(group + 1) * n), x);
    }

   private:
    Comm& job_;
    int size_;
    std::vector<float> buf_;
};

}  // namespace

std::unique_ptr<Comm> make_group_comm(Comm& job, int group_size) {
    if (group_size < 1 || job.world() % group_size != 0)
        fail("groups of " + std::to_string(group_size) + " do not divide the job's " + std::to_string(job.world()) +
             " processes");
    return std::make_unique<GroupComm>(job, group_size);
}

}  // namespace st
