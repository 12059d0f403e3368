#include "parallel/spawn.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "error.h"
#include "parallel/auth.h"

namespace st {

namespace {

int free_port() {  // the kernel's choice for a socket bound to port 0, free a moment ago
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
        fail("--gpus: no free TCP port on this host for the ranks to meet");
    close(fd);
    return ntohs(a.sin_port);
}

int exit_status(int wstatus) { return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus); }

constexpr auto kGrace = std::chrono::seconds(30);  // from SIGTERM to SIGKILL, as torchrun allows

volatile sig_atomic_t g_signal = 0, g_signals = 0;
void on_stop(int s) {
    g_signal = s;
    g_signals = g_signals + 1;
}

}  // namespace

int run_local_job(int n, char** argv) {
    const std::string port = std::to_string(free_port());
    const std::string secret = make_job_secret();  // fresh for every job: another job's ranks cannot join this one
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const std::string threads = std::to_string(std::max(1L, cores / n));  // CPU ranks share the cores
    const pid_t parent = getpid();
    std::vector<pid_t> pids;
    for (int r = 0; r < n; r++) {
        const pid_t pid = fork();
        if (pid < 0) {
            for (pid_t p : pids) kill(p, SIGTERM);
            fail("--gpus: cannot start rank " + std::to_string(r));
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);  // a job whose parent is gone ends, rather than train on unwatched
            if (getppid() != parent) _exit(128 + SIGTERM);
            setenv("RANK", std::to_string(r).c_str(), 1);
            setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
            setenv("WORLD_SIZE", std::to_string(n).c_str(), 1);
            setenv("MASTER_ADDR", "127.0.0.1", 1);
            setenv("MASTER_PORT", port.c_str(), 1);
            setenv("ST_JOB_SECRET", secret.c_str(), 1);
            setenv("OMP_NUM_THREADS", threads.c_str(), 0);
            execv("/proc/self/exe", argv);
            std::fprintf(stderr, "%s: --gpus: cannot start rank %d\n", argv[0], r);
            _exit(127);
        }
        pids.push_back(pid);
    }
    // Every SIGINT, SIGTERM or SIGHUP this process gets is passed on to the ranks, each time: a rank
    // takes the first as a request to save and stop, and a second one a second later as an order to
    // end at once (train.cpp), so a repeated request reaches it even when it waits on a peer. Ctrl-C
    // also reaches the ranks from the terminal; the copy within the same second is ignored.
    struct sigaction sa = {};
    sa.sa_handler = on_stop;
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
    auto stop_all = [&](int sig) {
        for (pid_t p : pids)
            if (p > 0) kill(p, sig);
    };
    // Wait for every rank; after the first failure or stop request, stop the rest, and kill what is
    // left after the grace.
    int status = 0;
    size_t left = pids.size();
    sig_atomic_t passed = 0;
    bool ending = false, killed = false;
    std::chrono::steady_clock::time_point ending_since;
    auto end_job = [&] {
        if (!ending) ending = true, ending_since = std::chrono::steady_clock::now();
    };
    while (left > 0) {
        if (g_signals != passed) {
            passed = g_signals;
            stop_all(g_signal);
            end_job();
        }
        int ws = 0;
        const pid_t pid = waitpid(-1, &ws, WNOHANG);
        if (pid > 0) {
            for (pid_t& p : pids)
                if (p == pid) p = 0, left--;
            const int code = exit_status(ws);
            if (code != 0 && status == 0) {
                status = code;
                if (!ending) stop_all(SIGTERM);
                end_job();
            }
            continue;
        }
        if (pid < 0) break;
        if (ending && !killed && std::chrono::steady_clock::now() - ending_since > kGrace)
            stop_all(SIGKILL), killed = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return status;
}

}  // namespace st
