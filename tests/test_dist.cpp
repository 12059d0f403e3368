// What a multi-GPU job rests on that needs no GPU: reading the launchers' variables, the ranks
// meeting over TCP and noticing a dead peer, and the division of the batch and of the parameters.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <thread>

#include "dist/launch.h"
#include "dist/rendezvous.h"
#include "dist/shard.h"
#include "error.h"

using namespace st;

namespace {

DistEnv env_of(const std::map<std::string, std::string>& vars) {
    return dist_env_from([&](const char* name) {
        auto it = vars.find(name);
        return it == vars.end() ? static_cast<const char*>(nullptr) : it->second.c_str();
    });
}

// A port nobody listens on now (the kernel's choice for a socket bound to port 0).
int free_port() {
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

DistEnv local_job(int rank, int world, int port) {
    DistEnv e;
    e.rank = rank, e.world = world, e.local_rank = rank, e.master_addr = "127.0.0.1", e.master_port = port, e.launcher = "torchrun";
    return e;
}

}  // namespace

TEST_CASE("launcher variables: torchrun, mpirun, srun, none", "[dist]") {
    DistEnv e = env_of({});
    CHECK(e.world == 1);
    CHECK(e.launcher.empty());

    e = env_of({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "1234"}});
    CHECK(e.launcher == "torchrun");
    CHECK((e.rank == 3 && e.world == 8 && e.local_rank == 1 && e.master_addr == "node7" && e.master_port == 1234));

    // Under torchrun's agent, whose store holds MASTER_PORT, st's rank 0 listens on the next port.
    e = env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "29500"}, {"TORCHELASTIC_RUN_ID", "job"}});
    CHECK(e.master_port == 29501);
    CHECK_THROWS_WITH(env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "65535"}, {"TORCHELASTIC_RUN_ID", "j"}}),
                      Catch::Contains("MASTER_PORT + 1"));

    e = env_of({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
    CHECK(e.launcher == "mpirun");
    CHECK((e.rank == 1 && e.world == 2 && e.master_addr == "127.0.0.1" && e.master_port == 29500));   // one host

    e = env_of({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}, {"SLURM_NNODES", "2"}, {"MASTER_ADDR", "10.0.0.1"}});
    CHECK(e.launcher == "srun");
    CHECK((e.rank == 5 && e.world == 8 && e.local_rank == 1 && e.master_addr == "10.0.0.1"));

    // Several hosts and no MASTER_ADDR; a rank outside the job; a bad port; torchrun without its address.
    CHECK_THROWS_WITH(env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"}, {"SLURM_NNODES", "2"}}),
                      Catch::Contains("MASTER_ADDR is not set"));
    CHECK_THROWS_WITH(env_of({{"RANK", "8"}, {"WORLD_SIZE", "8"}, {"MASTER_ADDR", "a"}}), Catch::Contains("RANK=8"));
    CHECK_THROWS_WITH(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "70000"}}),
                      Catch::Contains("MASTER_PORT=70000"));
    CHECK_THROWS_WITH(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}}), Catch::Contains("MASTER_ADDR is not set"));
    CHECK_THROWS_WITH(env_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}}), Catch::Contains("RANK=x"));
}

TEST_CASE("the batch and the parameters divide among the ranks without gaps or overlaps", "[dist]") {
    for (int world : {1, 2, 3, 4, 7, 8})
        for (int B : {1, 7, 16, 64}) {
            int64_t next = 0;
            for (int r = 0; r < world; r++) {
                const Range s = batch_share(B, r, world);
                CHECK(s.begin == next);
                CHECK((s.size() == B / world || s.size() == B / world + 1));
                next = s.end;
            }
            CHECK(next == B);
        }
    for (int world : {1, 2, 3, 4, 8})
        for (int64_t n : {int64_t(1), int64_t(1000), int64_t(5400321)}) {
            const int64_t size = shard_size(n, world);
            CHECK(size % 64 == 0);
            CHECK(size * world >= n);
            for (int r = 0; r < world; r++) {   // consecutive parts of `size`, the last ones clipped to n
                const Range s = shard_range(n, r, world);
                CHECK(s.begin == std::min(n, int64_t(r) * size));
                CHECK(s.end == std::min(n, int64_t(r + 1) * size));
            }
        }
}

TEST_CASE("the ranks meet over TCP and all receive rank 0's bytes", "[dist]") {
    const int world = 4, port = free_port();
    const std::vector<uint8_t> id = {1, 2, 3, 250, 0, 7};
    std::vector<std::vector<uint8_t>> got(world);
    std::vector<std::thread> ranks;
    for (int r = 0; r < world; r++)
        ranks.emplace_back([&, r] {
            Rendezvous rv(local_job(r, world, port), r == 0 ? id : std::vector<uint8_t>{}, 20);
            got[size_t(r)] = rv.blob();
        });
    for (auto& t : ranks) t.join();
    for (int r = 0; r < world; r++) CHECK(got[size_t(r)] == id);
}

TEST_CASE("a rank that never comes is named; a rank 0 that never comes times out", "[dist]") {
    const int port = free_port();
    CHECK_THROWS_WITH(Rendezvous(local_job(0, 3, port), {1}, 0.5), Catch::Contains("ranks 1, 2 of 3 have not joined"));
    CHECK_THROWS_WITH(Rendezvous(local_job(1, 3, port), {}, 0.5), Catch::Contains("did not answer"));
}

TEST_CASE("one rank dies: every other rank hears of it; a clean end is no death", "[dist]") {
    // Each rank is a process of its own, as in a real job. Exit codes: 10 + rank when on_loss was
    // called, 0 after a clean end, 1 on anything else.
    auto run = [](int world, int dying) {
        const int port = free_port();
        std::vector<pid_t> pids;
        for (int r = 0; r < world; r++) {
            const pid_t pid = fork();
            REQUIRE(pid >= 0);
            if (pid > 0) {
                pids.push_back(pid);
                continue;
            }
            try {
                Rendezvous rv(local_job(r, world, port), r == 0 ? std::vector<uint8_t>{42} : std::vector<uint8_t>{}, 20);
                rv.watch([r](const std::string&) { _exit(10 + r); });
                if (r == dying) _exit(0);   // gone without a goodbye, as a killed process
                std::this_thread::sleep_for(std::chrono::milliseconds(dying >= 0 ? 5000 : 300));
            } catch (...) {
                _exit(1);
            }
            _exit(0);   // after the destructor's goodbye
        }
        std::vector<int> codes;
        for (pid_t pid : pids) {
            int status = 0;
            waitpid(pid, &status, 0);
            codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        return codes;
    };
    CHECK(run(3, -1) == std::vector<int>{0, 0, 0});
    CHECK(run(3, 2) == std::vector<int>{10, 11, 0});   // rank 0 hears of rank 2, rank 1 of rank 0
    CHECK(run(3, 0) == std::vector<int>{0, 11, 12});
}
