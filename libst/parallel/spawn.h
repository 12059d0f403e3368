// st-train --gpus N on one host: the program starts itself N times as the ranks of one job, with the
// variables torchrun would set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT) and
// a secret of this job alone (ST_JOB_SECRET), and waits. When one rank fails, or this process is
// asked to stop (SIGINT, SIGTERM, SIGHUP: passed on to the ranks), the others are stopped with
// SIGTERM, and what is left after 30 s is killed: a job is whole or it ends.
#pragma once

namespace st {

// Runs argv (this program, as it was called) as `n` ranks; returns the job's exit status: 0, or the
// first failing rank's (128 + signal for a rank ended by one).
int run_local_job(int n, char** argv);

}  // namespace st
