#include "parallel/rendezvous.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <memory>
#include <utility>

#include "error.h"
#include "parallel/auth.h"

namespace st {

namespace {

constexpr uint8_t kBye = 'B';  // the last byte a rank sends when it ends normally

// A caller gets this long to prove itself: a rank answers rank 0's greeting at once, and a
// connection that stays silent must not keep its file descriptor for the whole rendezvous.
constexpr double kHandshakeS = 10;
constexpr size_t kMaxCallers = 64;    // handshakes under way at once; more are turned away
constexpr int kMaxRefusalLines = 16;  // then refusals are only counted

int ms_left(Clock::time_point t) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
    return int(std::clamp<int64_t>(ms, 0, 1 << 30));
}

Clock::time_point after(double s) { return Clock::now() + std::chrono::microseconds(int64_t(s * 1e6)); }

std::string seconds(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g s", s);
    return buf;
}

std::string where(const DistEnv& e) { return e.master_addr + ":" + std::to_string(e.master_port); }

std::string address_text(const sockaddr* a) {
    char host[INET6_ADDRSTRLEN] = "?";
    if (a->sa_family == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(a);
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
        return std::string(host) + ":" + std::to_string(ntohs(v4->sin_port));
    }
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(a);
    inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
    std::string text = "[";
    text += host;
    return text + "]:" + std::to_string(ntohs(v6->sin6_port));
}

// Waits until fd is ready for `events`, within the deadline, minding signals as the deadline says.
Io wait_ready(int fd, short events, Deadline& d) {
    for (;;) {
        pollfd pf = {fd, events, 0};
        const int ready = poll(&pf, 1, ms_left(d.at));
        if (ready > 0) return Io::done;
        if (ready == 0) return Io::timed_out;
        if (errno != EINTR) return Io::closed;
        if (d.signal_grace_s < 0) return Io::interrupted;
        if (!d.signalled) d.signalled = true, d.at = std::min(d.at, after(d.signal_grace_s));
    }
}

struct AddrInfo {
    addrinfo* list = nullptr;
    explicit AddrInfo(const DistEnv& e) {
        addrinfo hints = {};
        hints.ai_socktype = SOCK_STREAM;
        const int rc = getaddrinfo(e.master_addr.c_str(), std::to_string(e.master_port).c_str(), &hints, &list);
        if (rc != 0) fail("rendezvous: MASTER_ADDR " + e.master_addr + ": " + gai_strerror(rc));
    }
    ~AddrInfo() { freeaddrinfo(list); }
    AddrInfo(const AddrInfo&) = delete;
    AddrInfo& operator=(const AddrInfo&) = delete;
};

struct Fd {  // a file descriptor closed with its owner
    int fd = -1;
    explicit Fd(int f = -1) : fd(f) {}
    Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        std::swap(fd, o.fd);
        return *this;
    }
    ~Fd() {
        if (fd >= 0) close(fd);
    }
    int release() { return std::exchange(fd, -1); }
};

// Rank 0's listening sockets: one on each address MASTER_ADDR resolves to (not every interface of
// the host: only the ranks need to reach it).
struct Listening {
    std::vector<Fd> fds;
    std::string where;  // the addresses, for messages
};

Listening listen_on(const DistEnv& e) {
    const AddrInfo ai(e);
    Listening l;
    int err = 0;
    std::vector<std::string> seen;
    for (const addrinfo* p = ai.list; p; p = p->ai_next) {
        const std::string text = address_text(p->ai_addr);
        if (std::find(seen.begin(), seen.end(), text) != seen.end()) continue;
        seen.push_back(text);
        Fd fd(socket(p->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (fd.fd < 0) {
            err = errno;
            continue;
        }
        int yes = 1;
        setsockopt(fd.fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        if (bind(fd.fd, p->ai_addr, p->ai_addrlen) != 0 || listen(fd.fd, 128) != 0) {
            err = errno;
            if (err == EADDRINUSE)
                fail("rendezvous: rank 0 cannot listen on " + text + ": " + std::strerror(err) +
                     " (another job there? set MASTER_PORT)");
            continue;  // an address this host does not have (IPv6 off, say): the others may do
        }
        l.where += (l.where.empty() ? "" : ", ") + text;
        l.fds.push_back(std::move(fd));
    }
    if (l.fds.empty())
        fail("rendezvous: rank 0 cannot listen on MASTER_ADDR " + where(e) + ": " + std::strerror(err) +
             " (MASTER_ADDR must name an address of rank 0's host)");
    return l;
}

// A connected socket to rank 0, or -1 while nobody listens there yet.
int connect_once(const DistEnv& e, Deadline& d) {
    const AddrInfo ai(e);
    for (const addrinfo* p = ai.list; p; p = p->ai_next) {
        Fd fd(socket(p->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (fd.fd < 0) continue;
        if (connect(fd.fd, p->ai_addr, p->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) continue;
            // An address that drops packets would otherwise hold the attempt for minutes: the
            // others, and the next try, get their turn.
            Deadline attempt{std::min(d.at, after(5)), -1};
            const Io r = wait_ready(fd.fd, POLLOUT, attempt);
            if (r == Io::interrupted)
                fail("rendezvous: interrupted by a signal while connecting to rank 0 at " + where(e));
            int err = 0;
            socklen_t len = sizeof err;
            if (r != Io::done || getsockopt(fd.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) continue;
        }
        fcntl(fd.fd, F_SETFL, fcntl(fd.fd, F_GETFL) & ~O_NONBLOCK);
        int yes = 1;
        setsockopt(fd.fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
        return fd.release();
    }
    return -1;
}

}  // namespace

Io send_by(int fd, const void* p, size_t n, Deadline& d) {
    const auto* c = static_cast<const uint8_t*>(p);
    while (n > 0) {
        if (const Io r = wait_ready(fd, POLLOUT, d); r != Io::done) return r;
        const ssize_t put = send(fd, c, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (put < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (put <= 0) return Io::closed;
        c += put, n -= size_t(put);
    }
    return Io::done;
}

Io recv_by(int fd, void* p, size_t n, Deadline& d) {
    auto* c = static_cast<uint8_t*>(p);
    while (n > 0) {
        if (const Io r = wait_ready(fd, POLLIN, d); r != Io::done) return r;
        const ssize_t got = recv(fd, c, n, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (got <= 0) return Io::closed;
        c += got, n -= size_t(got);
    }
    return Io::done;
}

Rendezvous::Rendezvous(const DistEnv& env, const std::vector<uint8_t>& blob, double timeout_s) : env_(env) {
    if (env.world == 1) {
        blob_ = blob;
        return;
    }
    check_job_secret(env.secret);
    try {
        if (env.rank == 0) {
            if (blob.size() > kMaxBlob)
                fail("rendezvous: " + std::to_string(blob.size()) + " bytes to hand out, more than " +
                     std::to_string(kMaxBlob));
            blob_ = blob;
            meet_as_rank0(timeout_s);
        } else {
            meet_as_rank(timeout_s);
        }
    } catch (...) {
        for (int fd : peers_)
            if (fd >= 0) close(fd);
        throw;
    }
}

// Rank 0 greets every caller at once and reads their answers as they come, so that a caller that
// says nothing (or too little) holds up nobody: it is dropped when its time is up.
void Rendezvous::meet_as_rank0(double timeout_s) {
    struct Caller {
        Fd fd;
        std::string who;
        Clock::time_point until;
        Nonce nonce{};
        std::array<uint8_t, kJoinSize> said{};
        size_t got = 0;
        short revents = 0;
    };
    const int world = env_.world;
    const auto deadline = after(timeout_s);
    Listening l = listen_on(env_);
    std::vector<Caller> callers;
    std::vector<Handshake> handshakes(static_cast<size_t>(world));
    peers_.assign(size_t(world), -1);
    int met = 0, refused = 0;
    auto refuse = [&](const std::string& who, const std::string& why) {
        if (++refused <= kMaxRefusalLines)
            std::fprintf(stderr, "%s: rendezvous: refused a connection from %s: %s%s\n", program_invocation_short_name,
                         who.c_str(), why.c_str(),
                         refused == kMaxRefusalLines ? " (further refusals are only counted)" : "");
    };
    // Whether rank 0 is done with the caller: it joined as a rank, or it was refused (and closed).
    auto hear = [&](Caller& c, Clock::time_point now) {
        if (c.revents) {
            const ssize_t got = recv(c.fd.fd, c.said.data() + c.got, kJoinSize - c.got, MSG_DONTWAIT);
            if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
                refuse(c.who, "it closed the connection after " + std::to_string(c.got) + " of the " +
                                  std::to_string(kJoinSize) + " bytes of a rank's greeting");
                return true;
            }
            if (got > 0) c.got += size_t(got);
        }
        if (c.got < kJoinSize) {
            if (now < c.until) return false;
            refuse(c.who, "it did not send a rank's greeting in time (" + std::to_string(c.got) + " of " +
                              std::to_string(kJoinSize) + " bytes)");
            return true;
        }
        Join j;
        try {
            j = parse_join(c.said);
        } catch (const Error& e) {
            refuse(c.who, e.what());
            return true;
        }
        if (!join_proves(env_.secret, j, c.nonce)) {
            refuse(c.who, "it does not know the job's secret (ST_JOB_SECRET)");
            return true;
        }
        // From here on the caller is one of the job's processes: a disagreement is the job's error.
        if (j.world != uint32_t(world))
            fail("rendezvous: rank " + std::to_string(j.rank) + " is one of a job of " + std::to_string(j.world) +
                 " processes, rank 0 of a job of " + std::to_string(world) + " (the ranks' WORLD_SIZE differ)");
        if (peers_[j.rank] >= 0)
            fail("rendezvous: rank " + std::to_string(j.rank) + " joined twice on " + l.where +
                 " (two jobs with the same ST_JOB_SECRET and MASTER_PORT?)");
        peers_[j.rank] = c.fd.release();
        handshakes[j.rank] = {c.nonce, j.nonce, j.rank, j.world};
        met++;
        return true;
    };
    while (met < world - 1) {
        std::vector<pollfd> pf;
        for (const Fd& fd : l.fds) pf.push_back({fd.fd, POLLIN, 0});
        auto wake = deadline;
        for (const Caller& c : callers) pf.push_back({c.fd.fd, POLLIN, 0}), wake = std::min(wake, c.until);
        const int ready = poll(pf.data(), pf.size(), ms_left(wake));
        if (ready < 0 && errno == EINTR)
            fail("rendezvous: rank 0 was interrupted by a signal while waiting for the ranks on " + l.where);
        if (ready < 0) fail(std::string("rendezvous: poll: ") + std::strerror(errno));
        const auto now = Clock::now();
        for (size_t i = 0; i < callers.size(); i++) callers[i].revents = pf[l.fds.size() + i].revents;
        std::erase_if(callers, [&](Caller& c) { return hear(c, now); });
        if (met == world - 1) break;
        if (now >= deadline) {
            std::string missing;
            for (int k = 1; k < world; k++)
                if (peers_[size_t(k)] < 0) missing += (missing.empty() ? "" : ", ") + std::to_string(k);
            fail("rendezvous: after " + seconds(timeout_s) + " on " + l.where + ", ranks " + missing + " of " +
                 std::to_string(world) + " have not joined" +
                 (refused ? " (" + std::to_string(refused) + " connections refused)" : ""));
        }
        for (size_t i = 0; i < l.fds.size(); i++) {
            if (!pf[i].revents) continue;
            sockaddr_storage from = {};
            socklen_t len = sizeof from;
            Fd fd(accept4(l.fds[i].fd, reinterpret_cast<sockaddr*>(&from), &len, SOCK_CLOEXEC));
            if (fd.fd < 0) continue;
            Caller c;
            c.who = address_text(reinterpret_cast<sockaddr*>(&from));
            if (callers.size() >= kMaxCallers) {
                refuse(c.who, std::to_string(kMaxCallers) + " other connections are proving themselves");
                continue;
            }
            random_bytes(c.nonce);
            const std::vector<uint8_t> hello = hello_bytes(c.nonce);  // a fresh socket has room: no wait
            if (send(fd.fd, hello.data(), hello.size(), MSG_NOSIGNAL | MSG_DONTWAIT) != ssize_t(hello.size())) continue;
            int yes = 1;
            setsockopt(fd.fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
            c.fd = std::move(fd);
            c.until = std::min(deadline, after(kHandshakeS));
            callers.push_back(std::move(c));
        }
    }
    Deadline d{deadline};
    for (int k = 1; k < world; k++) {
        const std::vector<uint8_t> handout = handout_bytes(env_.secret, handshakes[size_t(k)], blob_);
        const Io r = send_by(peers_[size_t(k)], handout.data(), handout.size(), d);
        if (r == Io::interrupted) fail("rendezvous: rank 0 was interrupted by a signal while handing out the job");
        if (r != Io::done) fail("rendezvous: rank " + std::to_string(k) + " went away while joining");
    }
}

void Rendezvous::meet_as_rank(double timeout_s) {
    Deadline d{after(timeout_s)};
    const std::string at = where(env_);
    const std::string me = "rank " + std::to_string(env_.rank);
    int fd = -1;
    while ((fd = connect_once(env_, d)) < 0) {
        if (ms_left(d.at) == 0) fail("rendezvous: rank 0 at " + at + " did not answer within " + seconds(timeout_s));
        if (poll(nullptr, 0, std::min(100, ms_left(d.at))) < 0 && errno == EINTR)
            fail("rendezvous: " + me + " was interrupted by a signal while waiting for rank 0 at " + at);
    }
    peers_ = {fd};
    auto check = [&](Io r) {
        if (r == Io::interrupted)
            fail("rendezvous: " + me + " was interrupted by a signal while waiting for rank 0 at " + at);
        if (r == Io::timed_out) fail("rendezvous: rank 0 at " + at + " did not answer within " + seconds(timeout_s));
        if (r == Io::closed)
            fail("rendezvous: rank 0 at " + at +
                 " closed the connection before handing out the job (its ST_JOB_SECRET or WORLD_SIZE differs from " +
                 me + "'s, or it failed)");
    };
    auto impostor = [&](const std::string& why) {
        fail("rendezvous: the process at " + at + " is not this job's rank 0: " + why);
    };
    Handshake h;
    h.rank = uint32_t(env_.rank), h.world = uint32_t(env_.world);
    std::array<uint8_t, kHelloSize> hello;
    check(recv_by(fd, hello.data(), hello.size(), d));
    try {
        h.rank0_nonce = parse_hello(hello);
    } catch (const Error& e) {
        impostor(e.what());
    }
    random_bytes(h.rank_nonce);
    const std::vector<uint8_t> join = join_bytes(env_.secret, h);
    check(send_by(fd, join.data(), join.size(), d));
    std::array<uint8_t, kHandoutHeaderSize> head_bytes;
    check(recv_by(fd, head_bytes.data(), head_bytes.size(), d));
    HandoutHeader head;
    try {
        head = parse_handout_header(head_bytes);
    } catch (const Error& e) {
        impostor(e.what());
    }
    blob_.resize(head.length);
    check(recv_by(fd, blob_.data(), blob_.size(), d));
    if (!handout_proves(env_.secret, h, head, blob_)) impostor("it does not know the job's secret (ST_JOB_SECRET)");
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
            if (fds[0].revents) return;  // our own goodbye
            for (size_t i = 1; i < fds.size(); i++) {
                if (!fds[i].revents) continue;
                uint8_t byte = 0;
                if (read(fds[i].fd, &byte, 1) == 1 && byte == kBye) {  // it ended normally: stop watching it
                    fds.erase(fds.begin() + std::ptrdiff_t(i));
                    rank_of.erase(rank_of.begin() + std::ptrdiff_t(i));
                    break;
                }
                if (!closing_)
                    on_loss("rank " + std::to_string(rank_of[i]) + " stopped" +
                            (rank_of[i] == 0 ? " (it, or a rank it watched, failed)" : ""));
                return;
            }
        }
    });
}

Rendezvous::~Rendezvous() {
    closing_ = true;
    Deadline d{after(1)};  // a goodbye that cannot be sent (a peer that reads nothing) is not waited for
    for (int fd : peers_)
        if (fd >= 0) send_by(fd, &kBye, 1, d);
    if (watcher_.joinable()) {
        const char x = 'x';
        [[maybe_unused]] const ssize_t woke = write(wake_[1], &x, 1);  // a pipe with room: cannot fail
        watcher_.join();
    }
    for (int fd : peers_)
        if (fd >= 0) close(fd);
    for (int fd : wake_)
        if (fd >= 0) close(fd);
}

}  // namespace st
