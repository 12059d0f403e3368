#include "dist/spawn.h"

#include <netinet/in.h>
#include <signal.h>
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

namespace st {

namespace {

int free_port() {   // the kernel's choice for a socket bound to port 0, free a moment ago
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
        fail("--gpus: no free TCP port on this host for the ranks to meet");
    close(fd);
    return ntohs(a.sin_port);
}

int exit_status(int wstatus) { return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus); }

volatile sig_atomic_t g_term = 0;
void on_term(int) { g_term = 1; }

}  // namespace

int run_local_job(int n, char** argv) {
    const std::string port = std::to_string(free_port());
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const std::string threads = std::to_string(std::max(1L, cores / n));   // CPU ranks share the cores
    std::vector<pid_t> pids;
    for (int r = 0; r < n; r++) {
        const pid_t pid = fork();
        if (pid < 0) {
            for (pid_t p : pids) kill(p, SIGTERM);
            fail("--gpus: cannot start rank " + std::to_string(r));
        }
        if (pid == 0) {
            setenv("RANK", std::to_string(r).c_str(), 1);
            setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
            setenv("WORLD_SIZE", std::to_string(n).c_str(), 1);
            setenv("MASTER_ADDR", "127.0.0.1", 1);
            setenv("MASTER_PORT", port.c_str(), 1);
            setenv("OMP_NUM_THREADS", threads.c_str(), 0);
            execv("/proc/self/exe", argv);
            std::fprintf(stderr, "%s: --gpus: cannot start rank %d\n", argv[0], r);
            _exit(127);
        }
        pids.push_back(pid);
    }
    // Ctrl-C reaches the ranks from the terminal (they stop together and save); a SIGTERM sent to
    // this process is passed on to them.
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, on_term);
    auto stop_all = [&](int sig) {
        for (pid_t p : pids)
            if (p > 0) kill(p, sig);
    };
    // Wait for every rank; after the first failure, stop the rest.
    int status = 0;
    size_t left = pids.size();
    bool failing = false, passed_term = false;
    std::chrono::steady_clock::time_point failed_at;
    while (left > 0) {
        if (g_term && !passed_term) stop_all(SIGTERM), passed_term = true;
        int ws = 0;
        const pid_t pid = waitpid(-1, &ws, WNOHANG);
        if (pid > 0) {
            for (pid_t& p : pids)
                if (p == pid) p = 0, left--;
            const int code = exit_status(ws);
            if (code != 0 && !failing) {
                status = code, failing = true;
                failed_at = std::chrono::steady_clock::now();
                stop_all(SIGTERM);
            }
            continue;
        }
        if (pid < 0) break;
        if (failing && std::chrono::steady_clock::now() - failed_at > std::chrono::seconds(30)) stop_all(SIGKILL);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return status;
}

}  // namespace st
