// CPU collectives over the rendezvous sockets: the other ranks send their arrays to rank 0, which
// adds them in rank order and sends the sum back. Simple and exact rather than fast: it serves CPU
// jobs and tests; GPU jobs use NCCL.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "error.h"
#include "parallel/comm.h"

namespace st {

std::array<uint8_t, kMessageHeaderSize> message_header(uint32_t collective, uint64_t n) {
    std::array<uint8_t, kMessageHeaderSize> h = {'S', 'T', 'C', '1'};
    for (int i = 0; i < 4; i++) h[size_t(4 + i)] = uint8_t(collective >> (24 - 8 * i));
    for (int i = 0; i < 8; i++) h[size_t(8 + i)] = uint8_t(n >> (56 - 8 * i));
    return h;
}

void check_message_header(std::span<const uint8_t> bytes, uint32_t collective, uint64_t n, int from) {
    const std::string rank = "rank " + std::to_string(from);
    if (bytes.size() != kMessageHeaderSize || std::memcmp(bytes.data(), "STC1", 4) != 0)
        fail(rank + " sent bytes that are not a message of the collectives");
    uint32_t c = 0;
    uint64_t count = 0;
    for (int i = 0; i < 4; i++) c = c << 8 | bytes[size_t(4 + i)];
    for (int i = 0; i < 8; i++) count = count << 8 | bytes[size_t(8 + i)];
    if (c != collective)
        fail(rank + " is at collective " + std::to_string(c) + ", this rank at " + std::to_string(collective) +
             " (the ranks ran different steps)");
    if (count != n)
        fail(rank + " sent " + std::to_string(count) + " floats where " + std::to_string(n) +
             " are expected (the ranks train different models)");
}

namespace {

class TcpComm final : public Comm {
   public:
    explicit TcpComm(const Rendezvous& rv) : rv_(rv) {}
    int rank() const override { return rv_.env().rank; }
    int world() const override { return rv_.env().world; }
    void allreduce_sum(float* x, size_t n) override {
        const int W = world();
        if (W == 1) return;
        const uint32_t collective = collectives_++;
        Deadline d = deadline();
        if (rank() != 0) {
            put(0, collective, x, n, d);
            get(0, collective, x, n, d);
            return;
        }
        buf_.resize(n);
        for (int k = 1; k < W; k++) {
            get(k, collective, buf_.data(), n, d);
            for (size_t i = 0; i < n; i++) x[i] += buf_[i];
        }
        for (int k = 1; k < W; k++) put(k, collective, x, n, d);
    }
    size_t allgather(float* x, std::span<const size_t> counts) override {
        const int W = world(), r = rank();
        if (W == 1) return counts[0];
        const std::vector<size_t> at = offsets(counts);
        const size_t n = at.back();
        const uint32_t collective = collectives_++;
        Deadline d = deadline();
        if (r != 0) {
            put(0, collective, x + at[size_t(r)], counts[size_t(r)], d);
            get(0, collective, x, n, d);
            return counts[size_t(r)];
        }
        for (int k = 1; k < W; k++) get(k, collective, x + at[size_t(k)], counts[size_t(k)], d);
        for (int k = 1; k < W; k++) put(k, collective, x, n, d);
        return counts[0];
    }
    size_t add_to_owners(float* x, std::span<const size_t> counts) override {
        const int W = world(), r = rank();
        if (W == 1) return 0;
        const std::vector<size_t> at = offsets(counts);
        const size_t n = at.back();
        const uint32_t collective = collectives_++;
        Deadline d = deadline();
        // A rank's message: every segment but its own, the ones before it and the ones after.
        const auto before = [&](int k) { return std::span<float>(x, at[size_t(k)]); };
        const auto after = [&](int k) { return std::span<float>(x + at[size_t(k) + 1], n - at[size_t(k) + 1]); };
        if (r != 0) {
            put_parts(0, collective, before(r), after(r), d);
            buf_.resize(counts[size_t(r)]);  // the others' sum, to which this rank's own is added
            get(0, collective, buf_.data(), buf_.size(), d);
            for (size_t i = 0; i < buf_.size(); i++) x[at[size_t(r)] + i] += buf_[i];
            return n - counts[size_t(r)];
        }
        for (int k = 1; k < W; k++) {  // added in rank order: the same bits on every run
            buf_.resize(n - counts[size_t(k)]);
            get(k, collective, buf_.data(), buf_.size(), d);
            const std::span<float> b = before(k), a = after(k);
            for (size_t i = 0; i < b.size(); i++) b[i] += buf_[i];
            for (size_t i = 0; i < a.size(); i++) a[i] += buf_[b.size() + i];
        }
        for (int k = 1; k < W; k++) put(k, collective, x + at[size_t(k)], counts[size_t(k)], d);
        return n - counts[0];
    }

   private:
    static std::vector<size_t> offsets(std::span<const size_t> counts) {  // each segment's start, then n
        std::vector<size_t> at(counts.size() + 1, 0);
        for (size_t k = 0; k < counts.size(); k++) at[k + 1] = at[k] + counts[k];
        return at;
    }
    Deadline deadline() const {
        return Deadline{Clock::now() + std::chrono::microseconds(int64_t(rv_.env().collective_timeout_s * 1e6)),
                        kStopGraceS};
    }
    void put(int k, uint32_t collective, const float* x, size_t n, Deadline& d) {
        put_parts(k, collective, {x, n}, {}, d);
    }
    void put_parts(int k, uint32_t collective, std::span<const float> a, std::span<const float> b, Deadline& d) {
        const auto h = message_header(collective, a.size() + b.size());
        check(k, send_by(rv_.socket_to(k), h.data(), h.size(), d), d);
        for (std::span<const float> part : {a, b})
            if (!part.empty()) check(k, send_by(rv_.socket_to(k), part.data(), part.size_bytes(), d), d);
    }
    void get(int k, uint32_t collective, float* x, size_t n, Deadline& d) {
        std::array<uint8_t, kMessageHeaderSize> h;
        check(k, recv_by(rv_.socket_to(k), h.data(), h.size(), d), d);
        check_message_header(h, collective, n, k);
        check(k, recv_by(rv_.socket_to(k), x, n * sizeof(float), d), d);
    }
    void check(int k, Io r, const Deadline& d) const {
        const std::string rank = "rank " + std::to_string(k);
        if (r == Io::done) return;
        if (r != Io::timed_out) fail(rank + " stopped");
        char secs[32];
        std::snprintf(secs, sizeof secs, "%g s", d.signalled ? kStopGraceS : rv_.env().collective_timeout_s);
        fail(rank + " did not answer within " + secs +
             (d.signalled ? " of the stop signal" : " (ST_COLLECTIVE_TIMEOUT)"));
    }

    const Rendezvous& rv_;
    std::vector<float> buf_;
    uint32_t collectives_ = 0;
};

}  // namespace

std::unique_ptr<Comm> make_tcp_comm(const Rendezvous& rv) { return std::make_unique<TcpComm>(rv); }

}  // namespace st
