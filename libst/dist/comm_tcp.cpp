// CPU collectives over the rendezvous sockets: the other ranks send their arrays to rank 0, which
// adds them in rank order and sends the sum back. Simple and exact rather than fast: it serves CPU
// jobs and tests; GPU jobs use NCCL.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "dist/comm.h"
#include "error.h"

namespace st {

namespace {

bool send_all(int fd, const void* p, size_t n) {
    const auto* c = static_cast<const char*>(p);
    while (n > 0) {
        const ssize_t put = send(fd, c, n, MSG_NOSIGNAL);
        if (put < 0 && errno == EINTR) continue;   // a signal (the stop request) is not a lost peer
        if (put <= 0) return false;
        c += put, n -= size_t(put);
    }
    return true;
}

bool recv_all(int fd, void* p, size_t n) {
    auto* c = static_cast<char*>(p);
    while (n > 0) {
        const ssize_t got = recv(fd, c, n, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        c += got, n -= size_t(got);
    }
    return true;
}

class TcpComm final : public Comm {
   public:
    explicit TcpComm(const Rendezvous& rv) : rv_(rv) {}
    int rank() const override { return rv_.env().rank; }
    int world() const override { return rv_.env().world; }
    void allreduce_sum(float* x, size_t n) override {
        const int W = world();
        if (W == 1) return;
        const size_t bytes = n * sizeof(float);
        if (rank() != 0) {
            if (!send_all(rv_.socket_to(0), x, bytes) || !recv_all(rv_.socket_to(0), x, bytes)) fail("rank 0 stopped");
            return;
        }
        buf_.resize(n);
        for (int k = 1; k < W; k++) {
            if (!recv_all(rv_.socket_to(k), buf_.data(), bytes)) fail("rank " + std::to_string(k) + " stopped");
            for (size_t i = 0; i < n; i++) x[i] += buf_[i];
        }
        for (int k = 1; k < W; k++)
            if (!send_all(rv_.socket_to(k), x, bytes)) fail("rank " + std::to_string(k) + " stopped");
    }

   private:
    const Rendezvous& rv_;
    std::vector<float> buf_;
};

}  // namespace

std::unique_ptr<Comm> make_tcp_comm(const Rendezvous& rv) { return std::make_unique<TcpComm>(rv); }

}  // namespace st
