// st-train --gpus N on one host: the program starts itself N times as the ranks of one job, with the
// variables torchrun would set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), and waits.
// When one rank fails, the others are stopped (SIGTERM, then SIGKILL after 30 s): a job is whole or
// it ends.
#pragma once

namespace st {

// Runs argv (this program, as it was called) as `n` ranks; returns the job's exit status: 0, or the
// first failing rank's (128 + signal for a rank killed by one).
int run_local_job(int n, char** argv);

}  // namespace st
