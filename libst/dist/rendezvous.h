// The ranks' meeting point before NCCL, over TCP: rank 0 listens on MASTER_ADDR:MASTER_PORT, every
// other rank connects (retrying while rank 0 starts), says its rank and receives the bytes rank 0
// hands out (NCCL's unique id). The connections stay open afterwards: they are how the ranks learn
// that one of them died (watch), since a collective with a dead peer would otherwise wait forever.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "dist/launch.h"

namespace st {

class Rendezvous {
   public:
    // Rank 0 passes the bytes to hand out; the others pass nothing and get them. Throws st::Error when
    // the ranks do not all meet within timeout_s seconds, naming who is missing.
    Rendezvous(const DistEnv& env, const std::vector<uint8_t>& blob, double timeout_s);
    ~Rendezvous();   // a clean goodbye: the peers do not take it for a death
    Rendezvous(const Rendezvous&) = delete;
    Rendezvous& operator=(const Rendezvous&) = delete;

    const std::vector<uint8_t>& blob() const { return blob_; }
    const DistEnv& env() const { return env_; }
    // The connection to rank k: on rank 0 any other rank, elsewhere rank 0 only (-1 otherwise). The
    // CPU collectives (dist/comm.h) talk over these; a job that watches them (NCCL's) does not.
    int socket_to(int k) const { return k >= 0 && size_t(k) < peers_.size() ? peers_[size_t(k)] : -1; }

    // From now on, a thread watches the connections and calls on_loss once, with a one-line message
    // ("rank 2 stopped"), when a peer goes away without saying goodbye. Rank 0 watches every other
    // rank; the others watch rank 0, which goes away when it learns of a loss: so one death reaches
    // every rank. on_loss runs on the watching thread; it is meant to report and end the process.
    void watch(std::function<void(const std::string&)> on_loss);

   private:
    DistEnv env_;
    std::vector<uint8_t> blob_;
    std::vector<int> peers_;        // rank 0: the socket of rank k at k (its own entry -1); others: rank 0's at 0
    int wake_[2] = {-1, -1};        // a pipe that ends the watching thread
    std::thread watcher_;
    std::atomic<bool> closing_{false};
};

}  // namespace st
