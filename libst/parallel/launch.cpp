#include "parallel/launch.h"

#include <cstdlib>

#include "error.h"

namespace st {

namespace {

int parse_int(const char* name, const char* text, long lo, long hi) {
    char* end = nullptr;
    const long v = std::strtol(text, &end, 10);
    if (!*text || *end || v < lo || v > hi)
        fail(std::string(name) + "=" + text + ": expected a whole number from " + std::to_string(lo) + " to " +
             std::to_string(hi));
    return int(v);
}

double parse_seconds(const char* name, const char* text) {
    char* end = nullptr;
    const double v = std::strtod(text, &end);
    if (!*text || *end || !(v >= 0.1 && v <= 604800))
        fail(std::string(name) + "=" + text + ": expected seconds, from 0.1 to 604800 (a week)");
    return v;
}

}  // namespace

DistEnv dist_env_from(const std::function<const char*(const char*)>& get) {
    DistEnv e;
    auto need = [&](const char* name) {
        const char* v = get(name);
        if (!v) fail(std::string(name) + " is not set (the launcher sets it beside the others of its kind)");
        return v;
    };
    bool one_host = false;
    const char *rank = nullptr, *size = nullptr, *local = nullptr, *rank_name = nullptr, *size_name = nullptr,
               *local_name = nullptr;
    if (get("RANK") || get("WORLD_SIZE")) {
        e.launcher = "torchrun", rank_name = "RANK", size_name = "WORLD_SIZE", local_name = "LOCAL_RANK";
    } else if (get("OMPI_COMM_WORLD_RANK")) {
        e.launcher = "mpirun", rank_name = "OMPI_COMM_WORLD_RANK", size_name = "OMPI_COMM_WORLD_SIZE",
        local_name = "OMPI_COMM_WORLD_LOCAL_RANK";
        const char* local_size = get("OMPI_COMM_WORLD_LOCAL_SIZE");
        one_host = local_size && get(size_name) && std::string(local_size) == get(size_name);
    } else if (get("SLURM_PROCID") && get("SLURM_NTASKS")) {
        e.launcher = "srun", rank_name = "SLURM_PROCID", size_name = "SLURM_NTASKS", local_name = "SLURM_LOCALID";
        one_host = get("SLURM_NNODES") && std::string(get("SLURM_NNODES")) == "1";
    } else {
        return e;  // a process on its own
    }
    rank = need(rank_name), size = need(size_name), local = get(local_name);
    e.world = parse_int(size_name, size, 1, 1 << 20);
    e.rank = parse_int(rank_name, rank, 0, e.world - 1);
    e.local_rank = local ? parse_int(local_name, local, 0, 1 << 20) : e.rank;
    if (e.world == 1) return e;
    if (const char* secret = get("ST_JOB_SECRET")) e.secret = secret;
    if (const char* wait = get("ST_COLLECTIVE_TIMEOUT"))
        e.collective_timeout_s = parse_seconds("ST_COLLECTIVE_TIMEOUT", wait);
    if (const char* addr = get("MASTER_ADDR"))
        e.master_addr = addr;
    else if (e.launcher == "torchrun")
        need("MASTER_ADDR");
    else if (one_host)
        e.master_addr = "127.0.0.1";
    else
        fail("MASTER_ADDR is not set: under " + e.launcher +
             " on several hosts, set it to rank 0's host name or address");
    if (e.master_addr.empty()) fail("MASTER_ADDR is empty");
    if (const char* port = get("MASTER_PORT")) e.master_port = parse_int("MASTER_PORT", port, 1, 65535);
    // Under torchrun itself (its workers have TORCHELASTIC_RUN_ID), MASTER_PORT is the port of
    // torchrun's own store, held by its agent on rank 0's host: st's rank 0 listens on the next one.
    if (e.launcher == "torchrun" && get("TORCHELASTIC_RUN_ID")) {
        if (e.master_port == 65535) fail("MASTER_PORT=65535: under torchrun st's ranks meet on MASTER_PORT + 1");
        e.master_port++;
    }
    return e;
}

DistEnv dist_env() {
    return dist_env_from([](const char* name) { return static_cast<const char*>(std::getenv(name)); });
}

}  // namespace st
