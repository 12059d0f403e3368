// Where this process stands in a multi-GPU job: its rank, the number of ranks, its GPU on this host
// and where rank 0 listens, read from the variables the usual launchers set. st-train --gpus N sets
// the torchrun ones for the processes it starts itself.
#pragma once
#include <functional>
#include <string>

namespace st {

struct DistEnv {
    int rank = 0, world = 1;
    int local_rank = 0;       // the GPU on this host
    std::string master_addr;  // rank 0's host (world > 1)
    int master_port = 29500;
    std::string launcher;               // "torchrun", "mpirun", "srun", or "" for a process on its own
    std::string secret;                 // ST_JOB_SECRET: what proves a process one of the job (parallel/auth.h)
    double collective_timeout_s = 600;  // ST_COLLECTIVE_TIMEOUT: the longest wait for a rank's answer in training
};

// From the environment `get` describes (getenv's contract: null when unset):
//   torchrun-style  RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
//   Open MPI        OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE
//   Slurm           SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NNODES
// in that order of precedence. Under mpirun and srun, MASTER_ADDR / MASTER_PORT say where rank 0
// listens; on one host MASTER_ADDR may be left out (127.0.0.1). Under torchrun (TORCHELASTIC_RUN_ID
// set) rank 0 listens on MASTER_PORT + 1, since torchrun's own store holds MASTER_PORT. A job of
// several also reads ST_JOB_SECRET (checked by the rendezvous, which needs it) and
// ST_COLLECTIVE_TIMEOUT. Throws st::Error naming the variable that is missing or wrong.
DistEnv dist_env_from(const std::function<const char*(const char*)>& get);
DistEnv dist_env();  // from this process's environment

}  // namespace st
