#include "dist/rendezvous.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "error.h"

namespace st {

namespace {

constexpr uint8_t kBye = 'B';   // the last byte a rank sends when it ends normally

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return ms > 0 ? int(ms) : 0;
}

std::string where(const DistEnv& e) { return e.master_addr + ":" + std::to_string(e.master_port); }

// n bytes, or false on an error, the end of the stream or the deadline.
bool read_all(int fd, void* p, size_t n, Clock::time_point deadline) {
    auto* c = static_cast<uint8_t*>(p);
    while (n > 0) {
        pollfd pf = {fd, POLLIN, 0};
        const int ready = poll(&pf, 1, ms_left(deadline));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return false;
        const ssize_t got = read(fd, c, n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        c += got, n -= size_t(got);
    }
    return true;
}

bool write_all(int fd, const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    while (n > 0) {
        const ssize_t put = send(fd, c, n, MSG_NOSIGNAL);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) return false;
        c += put, n -= size_t(put);
    }
    return true;
}

int listen_on(const DistEnv& e) {
    const int fd = socket(AF_INET6, SOCK_STREAM, 0);   // dual-stack: IPv4 and IPv6 peers
    if (fd < 0) fail(std::string("rendezvous: socket: ") + std::strerror(errno));
    int yes = 1, no = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof no);
    sockaddr_in6 a = {};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(uint16_t(e.master_port));
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 1024) != 0) {
        const int err = errno;
        close(fd);
        fail("rendezvous: rank 0 cannot listen on port " + std::to_string(e.master_port) + ": " + std::strerror(err) +
             (err == EADDRINUSE ? " (another job there? set MASTER_PORT)" : ""));
    }
    return fd;
}

// A connected socket to rank 0, or -1 while it is not there yet.
int connect_once(const DistEnv& e) {
    addrinfo hints = {}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    const int rc = getaddrinfo(e.master_addr.c_str(), std::to_string(e.master_port).c_str(), &hints, &res);
    if (rc != 0) fail("rendezvous: MASTER_ADDR " + e.master_addr + ": " + gai_strerror(rc));
    int fd = -1;
    for (addrinfo* p = res; p && fd < 0; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
        if (fd >= 0 && connect(fd, p->ai_addr, p->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int yes = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    }
    return fd;
}

}  // namespace

Rendezvous::Rendezvous(const DistEnv& env, const std::vector<uint8_t>& blob, double timeout_s) : env_(env) {
    if (env.world == 1) {
        blob_ = blob;
        return;
    }
    const auto deadline = Clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000));
    auto give_up = [&](const std::string& why) {
        for (int fd : peers_)
            if (fd >= 0) close(fd);
        peers_.clear();
        fail(why);
    };
    if (env.rank == 0) {
        blob_ = blob;
        const int lfd = listen_on(env);
        peers_.assign(size_t(env.world), -1);
        for (int met = 1; met < env.world;) {
            pollfd pf = {lfd, POLLIN, 0};
            const int ready = poll(&pf, 1, ms_left(deadline));
            if (ready < 0 && errno == EINTR) continue;
            if (ready <= 0) {
                std::string missing;
                for (int k = 1; k < env.world; k++)
                    if (peers_[size_t(k)] < 0) missing += (missing.empty() ? "" : ", ") + std::to_string(k);
                close(lfd);
                give_up("rendezvous: after " + std::to_string(int(timeout_s)) + " s on port " + std::to_string(env.master_port) +
                        ", ranks " + missing + " of " + std::to_string(env.world) + " have not joined");
            }
            const int fd = accept(lfd, nullptr, nullptr);
            if (fd < 0) continue;
            uint32_t k = 0;
            if (!read_all(fd, &k, sizeof k, deadline) || (k = ntohl(k)) < 1 || k >= uint32_t(env.world)) {
                close(fd);   // not one of ours (a port scanner, a job of another size): ignore it
                continue;
            }
            if (peers_[k] >= 0) {
                close(fd);
                close(lfd);
                give_up("rendezvous: rank " + std::to_string(k) + " joined twice on port " + std::to_string(env.master_port) +
                        " (two jobs on the same MASTER_PORT?)");
            }
            peers_[k] = fd;
            met++;
        }
        close(lfd);
        const uint32_t n = htonl(uint32_t(blob_.size()));
        for (int k = 1; k < env.world; k++)
            if (!write_all(peers_[size_t(k)], &n, sizeof n) || !write_all(peers_[size_t(k)], blob_.data(), blob_.size()))
                give_up("rendezvous: rank " + std::to_string(k) + " went away while joining");
        return;
    }
    int fd = -1;
    while ((fd = connect_once(env)) < 0) {
        if (ms_left(deadline) == 0)
            fail("rendezvous: rank 0 at " + where(env) + " did not answer within " + std::to_string(int(timeout_s)) + " s");
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    peers_ = {fd};
    const uint32_t me = htonl(uint32_t(env.rank));
    uint32_t n = 0;
    if (!write_all(fd, &me, sizeof me) || !read_all(fd, &n, sizeof n, deadline)) give_up("rendezvous: rank 0 at " + where(env) + " hung up");
    blob_.resize(ntohl(n));
    if (!read_all(fd, blob_.data(), blob_.size(), deadline)) give_up("rendezvous: rank 0 at " + where(env) + " hung up");
}

void Rendezvous::watch(std::function<void(const std::string&)> on_loss) {
    if (env_.world == 1 || watcher_.joinable()) return;
    if (pipe(wake_) != 0) fail(std::string("rendezvous: pipe: ") + std::strerror(errno));
    watcher_ = std::thread([this, on_loss] {
        std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}};
        std::vector<int> rank_of = {-1};
        for (size_t k = 0; k < peers_.size(); k++)
            if (peers_[k] >= 0) fds.push_back({peers_[k], POLLIN, 0}), rank_of.push_back(env_.rank == 0 ? int(k) : 0);
        while (fds.size() > 1) {
            if (poll(fds.data(), fds.size(), -1) < 0) {
                if (errno == EINTR) continue;
                return;
            }
            if (fds[0].revents) return;   // our own goodbye
            for (size_t i = 1; i < fds.size(); i++) {
                if (!fds[i].revents) continue;
                uint8_t byte = 0;
                if (read(fds[i].fd, &byte, 1) == 1 && byte == kBye) {   // it ended normally: stop watching it
                    fds.erase(fds.begin() + std::ptrdiff_t(i));
                    rank_of.erase(rank_of.begin() + std::ptrdiff_t(i));
                    break;
                }
                if (!closing_) on_loss("rank " + std::to_string(rank_of[i]) + " stopped" + (rank_of[i] == 0 ? " (it, or a rank it watched, failed)" : ""));
                return;
            }
        }
    });
}

Rendezvous::~Rendezvous() {
    closing_ = true;
    for (int fd : peers_)
        if (fd >= 0) write_all(fd, &kBye, 1);
    if (watcher_.joinable()) {
        const char x = 'x';
        [[maybe_unused]] const ssize_t woke = write(wake_[1], &x, 1);   // a pipe with room: cannot fail
        watcher_.join();
    }
    for (int fd : peers_)
        if (fd >= 0) close(fd);
    for (int fd : wake_)
        if (fd >= 0) close(fd);
}

}  // namespace st
