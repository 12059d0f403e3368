// The ranks' meeting point before NCCL, over TCP: rank 0 listens on MASTER_ADDR:MASTER_PORT (the
// addresses that name resolves to, nothing else), every other rank connects (retrying while rank 0
// starts), proves that it is one of the job and which rank it is, and receives the bytes rank 0
// hands out (NCCL's unique id), after rank 0 has proved itself in turn (parallel/auth.h: the job's
// secret). A process that cannot prove itself does not take a rank's place. The connections stay
// open afterwards: they are how the ranks learn that one of them died (watch), since a collective
// with a dead peer would otherwise wait forever.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "parallel/launch.h"

namespace st {

class Rendezvous {
   public:
    // Rank 0 passes the bytes to hand out (at most kMaxBlob); the others pass nothing and get them.
    // Throws st::Error when the ranks do not all meet within timeout_s seconds, naming who is
    // missing; when env.secret is missing or short; when a process proves it knows the secret but
    // disagrees on the job (its size, a rank taken twice); when a process that is not this job's
    // rank 0 answers at MASTER_ADDR; and when a signal the process catches arrives while it waits.
    // A connection that does not prove itself within a few seconds is closed, with a line on stderr.
    Rendezvous(const DistEnv& env, const std::vector<uint8_t>& blob, double timeout_s);
    ~Rendezvous();  // a clean goodbye: the peers do not take it for a death
    Rendezvous(const Rendezvous&) = delete;
    Rendezvous& operator=(const Rendezvous&) = delete;

    const std::vector<uint8_t>& blob() const { return blob_; }
    const DistEnv& env() const { return env_; }
    // The connection to rank k: on rank 0 any other rank, elsewhere rank 0 only (-1 otherwise). The
    // CPU collectives (parallel/comm.h) talk over these; a job that watches them (NCCL's) does not.
    int socket_to(int k) const { return k >= 0 && size_t(k) < peers_.size() ? peers_[size_t(k)] : -1; }

    // From now on, a thread watches the connections and calls on_loss once, with a one-line message
    // ("rank 2 stopped"), when a peer goes away without saying goodbye. Rank 0 watches every other
    // rank; the others watch rank 0, which goes away when it learns of a loss: so one death reaches
    // every rank. on_loss runs on the watching thread; it is meant to report and end the process.
    void watch(std::function<void(const std::string&)> on_loss);

   private:
    void meet_as_rank0(double timeout_s);
    void meet_as_rank(double timeout_s);

    DistEnv env_;
    std::vector<uint8_t> blob_;
    std::vector<int> peers_;  // rank 0: the socket of rank k at k (its own entry -1); others: rank 0's at 0
    int wake_[2] = {-1, -1};  // a pipe that ends the watching thread
    std::thread watcher_;
    std::atomic<bool> closing_{false};
};

// Moving bytes over the ranks' sockets without waiting past a deadline, for the rendezvous and the
// CPU collectives alike.
using Clock = std::chrono::steady_clock;
struct Deadline {
    Clock::time_point at;
    // A signal the process catches (st-train's stop request) interrupts a wait. With a grace below 0
    // it ends the wait (the rendezvous: nothing is lost by leaving); otherwise the wait goes on for at
    // most that many seconds more (a collective: the peers got the same request and should arrive).
    double signal_grace_s = -1;
    bool signalled = false;  // a signal shortened the wait
};
enum class Io { done, closed, timed_out, interrupted };
Io send_by(int fd, const void* p, size_t n, Deadline& d);
Io recv_by(int fd, void* p, size_t n, Deadline& d);

}  // namespace st
