// What the tests of jobs of several processes share: a job on this host whose ranks are threads (or
// forked processes) of the test, meeting over TCP on a free port.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "parallel/launch.h"

namespace st::test {

inline const std::string kSecret = "the secret of the tests' jobs";

// A port nobody listens on now (the kernel's choice for a socket bound to port 0).
inline int free_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
}

inline DistEnv local_job(int rank, int world, int port) {
    DistEnv e;
    e.rank = rank, e.world = world, e.local_rank = rank, e.master_addr = "127.0.0.1", e.master_port = port,
    e.launcher = "torchrun";
    e.secret = kSecret;
    return e;
}

}  // namespace st::test
