// What a multi-GPU job rests on that needs no GPU: reading the launchers' variables, the ranks
// meeting over TCP and proving that they belong to the job, the CPU collectives, noticing a dead
// peer, and the division of the batch and of the parameters.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include "error.h"
#include "parallel/auth.h"
#include "parallel/comm.h"
#include "parallel/launch.h"
#include "parallel/rendezvous.h"
#include "parallel/shard.h"
#include "local_job.h"

using namespace st;
using st::test::free_port;
using st::test::kSecret;
using st::test::local_job;

namespace {

DistEnv env_of(const std::map<std::string, std::string>& vars) {
    return dist_env_from([&](const char* name) {
        auto it = vars.find(name);
        return it == vars.end() ? static_cast<const char*>(nullptr) : it->second.c_str();
    });
}

// A TCP connection to ip:port (IPv4 or IPv6), or -1 when refused.
int connect_to(const char* ip, int port) {
    sockaddr_storage a = {};
    socklen_t len = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a);
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET, v4->sin_port = htons(uint16_t(port)), len = sizeof *v4;
    } else {
        REQUIRE(inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1);
        v6->sin6_family = AF_INET6, v6->sin6_port = htons(uint16_t(port)), len = sizeof *v6;
    }
    const int fd = socket(a.ss_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&a), len) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

int connect_when_listening(const char* ip, int port) {  // rank 0 starts in another thread
    for (int tries = 0; tries < 500; tries++) {
        if (const int fd = connect_to(ip, port); fd >= 0) return fd;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL("nobody listens on " << ip << ":" << port);
    return -1;
}

// n bytes from fd within ms milliseconds, or fewer when it closes or the time is up.
std::vector<uint8_t> read_for(int fd, size_t n, int ms) {
    std::vector<uint8_t> got;
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (got.size() < n) {
        pollfd pf = {fd, POLLIN, 0};
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()).count();
        if (left <= 0 || poll(&pf, 1, int(left)) <= 0) break;
        uint8_t buf[4096];
        const ssize_t k = recv(fd, buf, std::min(sizeof buf, n - got.size()), 0);
        if (k <= 0) break;
        got.insert(got.end(), buf, buf + k);
    }
    return got;
}

// Whether the other end closes fd within ms milliseconds (what it sent before is read and dropped).
bool closed_within(int fd, int ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
        pollfd pf = {fd, POLLIN, 0};
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()).count();
        if (left <= 0 || poll(&pf, 1, int(left)) <= 0) return false;
        uint8_t buf[256];
        if (recv(fd, buf, sizeof buf, 0) <= 0) return true;
    }
}

void send_bytes(int fd, const std::vector<uint8_t>& bytes) {
    REQUIRE(send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size()));
}

// What this process writes on stderr while one lives, for the lines the code under test prints there.
struct StderrToFile {
    std::string path;
    int saved = -1;
    StderrToFile() {
        char name[] = "/tmp/st-test-stderr-XXXXXX";
        const int fd = mkstemp(name);
        REQUIRE(fd >= 0);
        path = name;
        std::fflush(stderr);
        saved = dup(2);
        dup2(fd, 2);
        close(fd);
    }
    ~StderrToFile() {
        std::fflush(stderr);
        dup2(saved, 2);
        close(saved);
        unlink(path.c_str());
    }
    std::vector<std::string> lines() const {
        std::fflush(stderr);
        std::ifstream f(path);
        std::vector<std::string> out;
        for (std::string line; std::getline(f, line);) out.push_back(line);
        return out;
    }
};

// A function run in a process of its own, as a rank is, so that a signal or a memory limit reaches
// it alone. Its result: 0 and the message when it threw st::Error, 1 when it returned, 2 on
// std::bad_alloc, -1 when it was still running after the time given (then it is killed).
struct Child {
    pid_t pid = -1;
    int pipe_fd = -1;
};

Child start_child(const std::function<void()>& body) {
    int p[2];
    REQUIRE(pipe(p) == 0);
    Child c;
    c.pid = fork();
    REQUIRE(c.pid >= 0);
    if (c.pid == 0) {
        close(p[0]);
        int code = 1;
        try {
            body();
        } catch (const Error& e) {
            [[maybe_unused]] const ssize_t put = write(p[1], e.what(), std::strlen(e.what()));
            code = 0;
        } catch (const std::bad_alloc&) {
            code = 2;
        } catch (...) {
            code = 3;
        }
        _exit(code);
    }
    close(p[1]);
    c.pipe_fd = p[0];
    return c;
}

std::pair<int, std::string> finish_child(const Child& c, double seconds) {
    int status = 0, code = -1;
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(int(seconds * 1000));
    while (waitpid(c.pid, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > end) {
            kill(c.pid, SIGKILL);
            waitpid(c.pid, &status, 0);
            close(c.pipe_fd);
            return {-1, "still running after " + std::to_string(seconds) + " s"};
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (WIFEXITED(status)) code = WEXITSTATUS(status);
    std::string message;
    char buf[512];
    for (ssize_t k; (k = read(c.pipe_fd, buf, sizeof buf)) > 0;) message.append(buf, size_t(k));
    close(c.pipe_fd);
    return {code, message};
}

// st-train's way with a stop signal while it trains: note it and go on (train.cpp).
volatile sig_atomic_t g_stop = 0;
void note_stop(int) { g_stop = 1; }
void catch_stop_signals() {
    struct sigaction sa = {};
    sa.sa_handler = note_stop;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
}

std::string hex(const Digest& d) {
    std::string s;
    char b[3];
    for (uint8_t x : d) std::snprintf(b, sizeof b, "%02x", x), s += b;
    return s;
}

std::span<const uint8_t> bytes_of(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

TEST_CASE("launcher variables: torchrun, mpirun, srun, none", "[dist]") {
    DistEnv e = env_of({});
    CHECK(e.world == 1);
    CHECK(e.launcher.empty());

    e = env_of(
        {{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "1234"}});
    CHECK(e.launcher == "torchrun");
    CHECK((e.rank == 3 && e.world == 8 && e.local_rank == 1 && e.master_addr == "node7" && e.master_port == 1234));

    // Under torchrun's agent, whose store holds MASTER_PORT, st's rank 0 listens on the next port.
    e = env_of({{"RANK", "1"},
                {"WORLD_SIZE", "2"},
                {"MASTER_ADDR", "node7"},
                {"MASTER_PORT", "29500"},
                {"TORCHELASTIC_RUN_ID", "job"}});
    CHECK(e.master_port == 29501);
    CHECK_THROWS_WITH(env_of({{"RANK", "1"},
                              {"WORLD_SIZE", "2"},
                              {"MASTER_ADDR", "a"},
                              {"MASTER_PORT", "65535"},
                              {"TORCHELASTIC_RUN_ID", "j"}}),
                      Catch::Contains("MASTER_PORT + 1"));

    e = env_of({{"OMPI_COMM_WORLD_RANK", "1"},
                {"OMPI_COMM_WORLD_SIZE", "2"},
                {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
    CHECK(e.launcher == "mpirun");
    CHECK((e.rank == 1 && e.world == 2 && e.master_addr == "127.0.0.1" && e.master_port == 29500));  // one host

    e = env_of({{"SLURM_PROCID", "5"},
                {"SLURM_NTASKS", "8"},
                {"SLURM_LOCALID", "1"},
                {"SLURM_NNODES", "2"},
                {"MASTER_ADDR", "10.0.0.1"}});
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

    // The job's secret and the collectives' timeout come with the job's other variables.
    e = env_of({{"RANK", "1"},
                {"WORLD_SIZE", "2"},
                {"MASTER_ADDR", "a"},
                {"ST_JOB_SECRET", "s3cret"},
                {"ST_COLLECTIVE_TIMEOUT", "2.5"}});
    CHECK((e.secret == "s3cret" && e.collective_timeout_s == 2.5));
    CHECK(env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}}).collective_timeout_s == 600);
    CHECK_THROWS_WITH(
        env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"ST_COLLECTIVE_TIMEOUT", "soon"}}),
        Catch::Contains("ST_COLLECTIVE_TIMEOUT=soon"));
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
            for (int r = 0; r < world; r++) {  // consecutive parts of `size`, the last ones clipped to n
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
                Rendezvous rv(local_job(r, world, port), r == 0 ? std::vector<uint8_t>{42} : std::vector<uint8_t>{},
                              20);
                rv.watch([r](const std::string&) { _exit(10 + r); });
                if (r == dying) _exit(0);  // gone without a goodbye, as a killed process
                std::this_thread::sleep_for(std::chrono::milliseconds(dying >= 0 ? 5000 : 300));
            } catch (...) {
                _exit(1);
            }
            _exit(0);  // after the destructor's goodbye
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
    CHECK(run(3, 2) == std::vector<int>{10, 11, 0});  // rank 0 hears of rank 2, rank 1 of rank 0
    CHECK(run(3, 0) == std::vector<int>{0, 11, 12});
}

TEST_CASE("SHA-256 and HMAC-SHA256 give the published values", "[dist]") {
    CHECK(hex(sha256(bytes_of(""))) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(hex(sha256(bytes_of("abc"))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hex(sha256(bytes_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))) ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(hex(sha256(bytes_of(std::string(1000000, 'a')))) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    // RFC 4231, test cases 1, 2 and 6 (a key longer than a block).
    CHECK(hex(hmac_sha256(std::string(20, '\x0b'), bytes_of("Hi There"))) ==
          "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    CHECK(hex(hmac_sha256("Jefe", bytes_of("what do ya want for nothing?"))) ==
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    CHECK(hex(hmac_sha256(std::string(131, '\xaa'),
                          bytes_of("Test Using Larger Than Block-Size Key - Hash Key First"))) ==
          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    const std::string a = make_job_secret(), b = make_job_secret();
    CHECK((a.size() == 64 && a != b && a.find_first_not_of("0123456789abcdef") == std::string::npos));
}

TEST_CASE("the handshake's messages: each side reads what the other makes; a wrong secret or a changed byte is refused",
          "[dist]") {
    Handshake h;
    random_bytes(h.rank0_nonce);
    random_bytes(h.rank_nonce);
    h.rank = 2, h.world = 3;
    CHECK(parse_hello(hello_bytes(h.rank0_nonce)) == h.rank0_nonce);

    std::vector<uint8_t> join = join_bytes(kSecret, h);
    const Join j = parse_join(join);
    CHECK((j.rank == 2 && j.world == 3 && j.nonce == h.rank_nonce));
    CHECK(join_proves(kSecret, j, h.rank0_nonce));
    CHECK_FALSE(join_proves("another job's secret", j, h.rank0_nonce));
    Nonce other = h.rank0_nonce;
    other[0] ^= 1;
    CHECK_FALSE(join_proves(kSecret, j, other));  // a join made for another connection
    join[7] = 1;                                  // rank 1 instead of 2: the mac no longer fits
    CHECK_FALSE(join_proves(kSecret, parse_join(join), h.rank0_nonce));

    const std::vector<uint8_t> blob = {9, 8, 7};
    std::vector<uint8_t> handout = handout_bytes(kSecret, h, blob);
    REQUIRE(handout.size() == kHandoutHeaderSize + blob.size());
    const std::span<const uint8_t> head_bytes(handout.data(), kHandoutHeaderSize),
        got(handout.data() + kHandoutHeaderSize, blob.size());
    const HandoutHeader head = parse_handout_header(head_bytes);
    CHECK(head.length == 3);
    CHECK(handout_proves(kSecret, h, head, got));
    CHECK_FALSE(handout_proves("another job's secret", h, head, got));
    Handshake for_rank1 = h;
    for_rank1.rank = 1;
    CHECK_FALSE(handout_proves(kSecret, for_rank1, head, got));  // a handout meant for another rank
    handout.back() ^= 1;
    CHECK_FALSE(handout_proves(kSecret, h, head, {handout.data() + kHandoutHeaderSize, blob.size()}));

    // Malformed: the size, the magic, the ranks, the length.
    CHECK_THROWS_WITH(parse_hello(std::vector<uint8_t>(35)), Catch::Contains("35 bytes where 36"));
    CHECK_THROWS_WITH(parse_join(std::vector<uint8_t>(kJoinSize, 'x')), Catch::Contains("does not start with STJ1"));
    auto join_of = [&](uint32_t rank, uint32_t world) {
        Handshake g = h;
        g.rank = rank, g.world = world;
        return join_bytes(kSecret, g);
    };
    CHECK_THROWS_WITH(parse_join(join_of(0, 3)), Catch::Contains("rank 0 of a job of 3"));
    CHECK_THROWS_WITH(parse_join(join_of(3, 3)), Catch::Contains("rank 3 of a job of 3"));
    CHECK_THROWS_WITH(parse_join(join_of(1, 1)), Catch::Contains("a job of 1 processes"));
    CHECK_THROWS_WITH(parse_join(join_of(1, kMaxWorld + 1)), Catch::Contains("a job of 1048577 processes"));
    std::vector<uint8_t> big(head_bytes.begin(), head_bytes.end());
    big[4] = big[5] = big[6] = big[7] = 0xff;
    CHECK_THROWS_WITH(parse_handout_header(big), Catch::Contains("4294967295 bytes announced, at most 4096"));
    CHECK_THROWS_WITH(handout_bytes(kSecret, h, std::vector<uint8_t>(kMaxBlob + 1)),
                      Catch::Contains("4097 bytes to hand out"));
}

TEST_CASE("a job of several processes needs ST_JOB_SECRET; one process alone does not", "[dist]") {
    DistEnv e = local_job(1, 2, free_port());
    e.secret.clear();
    CHECK_THROWS_WITH(Rendezvous(e, {}, 1),
                      Catch::Contains("ST_JOB_SECRET is not set") && Catch::Contains("export ST_JOB_SECRET="));
    e.secret = "short";
    CHECK_THROWS_WITH(Rendezvous(e, {}, 1), Catch::Contains("ST_JOB_SECRET is shorter than 16 characters"));
    CHECK(Rendezvous(DistEnv{}, {5}, 1).blob() == std::vector<uint8_t>{5});
}

TEST_CASE("strangers without the secret take no rank's place: the job forms with its own ranks", "[dist]") {
    // The attack seen: a process that connected first, said "rank 1" and sent NaN gradients. Now
    // rank 0 refuses it, one that answers with a wrong secret and one that sends garbage, each with
    // one line on stderr; the real ranks join, and the sums are theirs alone.
    const int world = 3, port = free_port();
    const std::vector<uint8_t> id = {4, 5, 6};
    StderrToFile err;
    std::vector<std::vector<uint8_t>> got(world);
    std::vector<std::vector<float>> sums(world);
    std::vector<std::string> failures(world);
    auto rank = [&](int r) {
        try {
            Rendezvous rv(local_job(r, world, port), r == 0 ? id : std::vector<uint8_t>{}, 20);
            got[size_t(r)] = rv.blob();
            std::vector<float> x = {float(r + 1), 1};
            make_tcp_comm(rv)->allreduce_sum(x.data(), x.size());
            sums[size_t(r)] = x;
        } catch (const std::exception& e) {
            failures[size_t(r)] = e.what();
        }
    };
    std::thread rank0(rank, 0);
    const int old_style = connect_when_listening("127.0.0.1", port);  // "I am rank 1", then NaNs
    std::vector<uint8_t> claim = {0, 0, 0, 1};
    const float nan = std::nanf("");
    for (int i = 0; i < 256; i++)
        claim.insert(claim.end(), reinterpret_cast<const uint8_t*>(&nan), reinterpret_cast<const uint8_t*>(&nan) + 4);
    send_bytes(old_style, claim);
    const int wrong_secret = connect_when_listening("127.0.0.1", port);
    const std::vector<uint8_t> hello = read_for(wrong_secret, kHelloSize, 5000);
    CHECK(hello.size() == kHelloSize);
    if (hello.size() == kHelloSize) {
        Handshake h;
        h.rank0_nonce = parse_hello(hello);
        random_bytes(h.rank_nonce);
        h.rank = 1, h.world = world;
        send_bytes(wrong_secret, join_bytes("a guess at the job's secret", h));
    }
    const int garbage = connect_when_listening("127.0.0.1", port);
    send_bytes(garbage, std::vector<uint8_t>(kJoinSize, 'x'));

    std::thread rank1(rank, 1), rank2(rank, 2);
    for (auto* t : {&rank0, &rank1, &rank2}) t->join();
    for (int r = 0; r < world; r++) {
        CHECK(failures[size_t(r)] == "");
        CHECK(got[size_t(r)] == id);
        CHECK(sums[size_t(r)] == std::vector<float>{6, 3});
    }
    for (int fd : {old_style, wrong_secret, garbage}) {
        CHECK(closed_within(fd, 5000));
        close(fd);
    }
    std::vector<std::string> refusals;
    for (const std::string& line : err.lines())
        if (line.find("rendezvous: refused a connection from 127.0.0.1:") != std::string::npos)
            refusals.push_back(line);
    CHECK(refusals.size() == 3);
    CHECK(std::count_if(refusals.begin(), refusals.end(),
                        [](const std::string& l) { return l.find("ST_JOB_SECRET") != std::string::npos; }) == 1);
}

TEST_CASE("a caller that says nothing holds up nobody", "[dist]") {
    const int port = free_port();
    StderrToFile err;
    std::string failure;
    std::thread rank0([&] {
        try {
            Rendezvous rv(local_job(0, 2, port), {1, 2}, 30);
        } catch (const std::exception& e) {
            failure = e.what();
        }
    });
    const int silent = connect_when_listening("127.0.0.1", port);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<uint8_t> blob;
    CHECK_NOTHROW(blob = Rendezvous(local_job(1, 2, port), {}, 30).blob());
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rank0.join();
    CHECK(failure == "");
    CHECK(blob == std::vector<uint8_t>{1, 2});
    CHECK(took < 5);  // not the handshake's 10 s, nor the 30 s of the rendezvous
    CHECK(read_for(silent, kHelloSize + 1, 2000).size() == kHelloSize);  // greeted, then let go
    CHECK(closed_within(silent, 2000));
    close(silent);
}

TEST_CASE("a fake rank 0 is refused: one that announces 4 GiB before allocating them, one without the secret",
          "[dist]") {
    // The fake listens where the rank looks for rank 0; the rank runs in a process of its own with
    // 1 GiB more address space than it has, so that a size believed too soon is a std::bad_alloc,
    // not a test that takes 4 GiB.
    auto fake = [](const std::function<std::vector<uint8_t>(const Handshake&)>& handout) {
        const int lfd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a = {};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        REQUIRE((bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(lfd, 4) == 0));
        getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
        const int port = ntohs(a.sin_port);
        const Child c = start_child([port] {
            long pages = 0;
            std::ifstream("/proc/self/statm") >> pages;
            const rlim_t room = rlim_t(pages) * rlim_t(sysconf(_SC_PAGESIZE)) + (rlim_t(1) << 30);
            const rlimit lim = {room, room};
            setrlimit(RLIMIT_AS, &lim);
            Rendezvous rv(local_job(1, 2, port), {}, 10);
        });
        pollfd pf = {lfd, POLLIN, 0};
        REQUIRE(poll(&pf, 1, 10000) == 1);
        const int fd = accept(lfd, nullptr, nullptr);
        Handshake h;
        random_bytes(h.rank0_nonce);
        send_bytes(fd, hello_bytes(h.rank0_nonce));
        const std::vector<uint8_t> said = read_for(fd, kJoinSize, 10000);
        REQUIRE(said.size() >= 4);
        if (said.size() == kJoinSize) {
            const Join j = parse_join(said);
            h.rank_nonce = j.nonce, h.rank = j.rank, h.world = j.world;
        }
        const std::vector<uint8_t> answer = handout(h);
        send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
        const auto result = finish_child(c, 10);  // the connection stays open: the rank must not wait for its end
        close(fd);
        close(lfd);
        return result;
    };
    const auto huge = fake([](const Handshake&) {
        std::vector<uint8_t> m = {'S', 'T', 'B', '1', 0xff, 0xff, 0xff, 0xff};
        m.resize(kHandoutHeaderSize);
        return m;
    });
    CHECK(huge.first == 0);
    CHECK_THAT(huge.second,
               Catch::Contains("is not this job's rank 0") && Catch::Contains("4294967295 bytes announced"));
    const auto guess = fake([](const Handshake& h) {
        return handout_bytes("a guess at the job's secret", h, std::vector<uint8_t>(128, 1));
    });
    CHECK(guess.first == 0);
    CHECK_THAT(guess.second, Catch::Contains("is not this job's rank 0") && Catch::Contains("ST_JOB_SECRET"));
}

TEST_CASE("rank 0 listens on MASTER_ADDR's address alone", "[dist]") {
    const int port = free_port();
    StderrToFile err;  // the probes below are refused with a line each
    std::string failure;
    std::thread rank0([&] {
        try {
            Rendezvous rv(local_job(0, 2, port), {3}, 30);
        } catch (const std::exception& e) {
            failure = e.what();
        }
    });
    close(connect_when_listening("127.0.0.1", port));
    // Another address of this host: the rest of 127.0.0.0/8, and ::1 where there is IPv6.
    const int other = connect_to("127.0.0.2", port);
    CHECK(other < 0);
    if (const int probe = socket(AF_INET6, SOCK_STREAM, 0); probe >= 0) {
        sockaddr_in6 a = {};
        a.sin6_family = AF_INET6;
        a.sin6_addr = in6addr_loopback;
        if (bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
            const int v6 = connect_to("::1", port);
            CHECK(v6 < 0);
            if (v6 >= 0) close(v6);
        }
        close(probe);
    }
    if (other >= 0) close(other);
    CHECK(Rendezvous(local_job(1, 2, port), {}, 30).blob() == std::vector<uint8_t>{3});
    rank0.join();
    CHECK(failure == "");
}

TEST_CASE("processes that know the secret but disagree on the job are refused", "[dist]") {
    auto rank0_and = [](int world0, const std::vector<DistEnv>& others) {
        std::string rank0_failure;
        std::thread rank0([&] {
            try {
                Rendezvous rv(local_job(0, world0, others[0].master_port), {1}, 10);
            } catch (const std::exception& e) {
                rank0_failure = e.what();
            }
        });
        std::vector<std::string> failures(others.size());
        std::vector<std::thread> ts;
        for (size_t i = 0; i < others.size(); i++)
            ts.emplace_back([&, i] {
                try {
                    Rendezvous rv(others[i], {}, 10);
                } catch (const std::exception& e) {
                    failures[i] = e.what();
                }
            });
        for (auto& t : ts) t.join();
        rank0.join();
        for (const std::string& f : failures)
            CHECK_THAT(f, Catch::Contains("closed the connection before handing out the job"));
        return rank0_failure;
    };
    int port = free_port();
    CHECK_THAT(rank0_and(3, {local_job(1, 2, port)}),
               Catch::Contains("rank 1 is one of a job of 2 processes, rank 0 of a job of 3"));
    port = free_port();
    CHECK_THAT(rank0_and(3, {local_job(1, 3, port), local_job(1, 3, port)}), Catch::Contains("rank 1 joined twice"));
}

TEST_CASE("a stop signal ends a rank waiting in the rendezvous, even one that catches it", "[dist]") {
    // st-train catches SIGTERM and SIGINT while it trains (a request to save and stop); a program
    // that does so while it waits for its peers must still get out of the wait.
    for (int rank : {0, 1}) {
        const int port = free_port();
        const Child c = start_child([rank, port] {
            catch_stop_signals();
            Rendezvous rv(local_job(rank, 2, port), rank == 0 ? std::vector<uint8_t>{1} : std::vector<uint8_t>{}, 60);
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        kill(c.pid, SIGTERM);
        const auto [code, message] = finish_child(c, 5);
        CHECK(code == 0);
        CHECK_THAT(message, Catch::Contains("interrupted by a signal"));
    }
}

TEST_CASE("the collectives refuse a message that is not the one expected, and end a wait on a silent rank", "[dist]") {
    const int port = free_port();
    std::unique_ptr<Rendezvous> rank1;
    std::thread t([&] { rank1 = std::make_unique<Rendezvous>(local_job(1, 2, port), std::vector<uint8_t>{}, 10); });
    DistEnv e = local_job(0, 2, port);
    e.collective_timeout_s = 0.5;
    Rendezvous rank0(e, {1}, 10);
    t.join();
    auto comm = make_tcp_comm(rank0);
    std::vector<float> x(4, 1.f);

    const auto t0 = std::chrono::steady_clock::now();  // rank 1 says nothing
    CHECK_THROWS_WITH(comm->allreduce_sum(x.data(), x.size()),
                      Catch::Contains("rank 1 did not answer within 0.5 s (ST_COLLECTIVE_TIMEOUT)"));
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3));

    // Rank 1 announces 2^60 floats for collective 1, where 4 are expected: refused from the header.
    const auto head = message_header(1, uint64_t(1) << 60);
    REQUIRE(send(rank1->socket_to(0), head.data(), head.size(), MSG_NOSIGNAL) == ssize_t(head.size()));
    CHECK_THROWS_WITH(comm->allreduce_sum(x.data(), x.size()),
                      Catch::Contains("rank 1 sent 1152921504606846976 floats where 4 are expected"));

    CHECK_THROWS_WITH(check_message_header(message_header(7, 4), 8, 4, 2),
                      Catch::Contains("rank 2 is at collective 7, this rank at 8"));
    CHECK_THROWS_WITH(check_message_header(std::vector<uint8_t>(kMessageHeaderSize, 0), 0, 0, 3),
                      Catch::Contains("rank 3 sent bytes that are not"));
    CHECK_NOTHROW(check_message_header(message_header(8, 4), 8, 4, 2));
}

TEST_CASE("a stop signal ends a collective's wait on a rank that does not answer, after a grace", "[dist]") {
    // The hang seen: a rank 0 that catches SIGTERM (a request to save) waited on a silent peer for
    // ever, and only a second SIGTERM ended it. Now it gives the peer kStopGraceS more.
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    const int port = free_port();
    const Child c = start_child([&] {
        catch_stop_signals();
        std::thread([port] {  // rank 1 joins, then says nothing
            Rendezvous rv(local_job(1, 2, port), {}, 10);
            std::this_thread::sleep_for(std::chrono::seconds(60));
        })
            .detach();
        Rendezvous rv(local_job(0, 2, port), {1}, 10);
        auto comm = make_tcp_comm(rv);
        float x = 1;
        [[maybe_unused]] const ssize_t put = write(ready[1], "r", 1);
        comm->allreduce_sum(&x, 1);
    });
    close(ready[1]);
    char r = 0;
    REQUIRE(read(ready[0], &r, 1) == 1);
    close(ready[0]);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto t0 = std::chrono::steady_clock::now();
    kill(c.pid, SIGTERM);
    const auto [code, message] = finish_child(c, kStopGraceS + 5);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(code == 0);
    CHECK_THAT(message, Catch::Contains("rank 1 did not answer within 10 s of the stop signal"));
    CHECK(took > kStopGraceS - 1);
}
