#!/usr/bin/env bash
# Data-parallel training with several processes, run on CPUs (st-train --gpus N --device cpu: the same
# job as on GPUs, with the collectives over TCP): any number of processes learns what one does, a run
# resumes on another number of them, a killed rank ends the job with a message and leaves the last
# checkpoint whole, bad job settings are refused, and the rendezvous admits the job's ranks alone
# (the secret), ends on a signal, and says what is wrong when a secret differs. All on loopback.
# Usage: dist.sh BUILD_DIR
set -u
build=$(cd "${1:?usage: dist.sh BUILD_DIR}" && pwd) || exit 1
tmp=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null; rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "ok    $1"; passed=$((passed + 1)); }
bad() { echo "FAIL  $1"; failed=$((failed + 1)); }
py=/usr/bin/python3
[ -x "$py" ] || py=python3
head -c 400000 /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 /usr/share/common-licenses/Artistic > "$tmp/text.txt"
args=(--device cpu --layers 2 --d-model 32 --heads 2 --ctx 64 --stride 16 --summary 4 --batch 7 --steps 24 --warmup 4
      --dropout 0.1 --eval-every 0 --eval-windows 4 --quiet)   # dropout on: each rank's masks must be one process's

# Every step's loss within 1e-5 of one process's (the sums differ only in the order of float additions).
same_losses() {  # A.jsonl B.jsonl
    $py - "$1" "$2" <<'PY'
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(p) if '"loss"' in l] for p in sys.argv[1:3])
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b)) if a and len(a) == len(b) else 1
sys.exit(0 if worst < 1e-5 else print(f"{len(a)} and {len(b)} steps, worst relative difference {worst:.2e}") or 1)
PY
}

"$build/st-train" "${args[@]}" -o "$tmp/one.st" --log "$tmp/one.jsonl" "$tmp/text.txt"
for n in 2 3; do
    "$build/st-train" "${args[@]}" --gpus $n -o "$tmp/n$n.st" --log "$tmp/n$n.jsonl" "$tmp/text.txt" &&
        same_losses "$tmp/one.jsonl" "$tmp/n$n.jsonl" && ok "$n processes give one process's 24 losses" || bad "$n processes"
done

# 12 steps on 2 processes, then the rest on 3.
"$build/st-train" "${args[@]}" --gpus 2 --stop-after 12 -o "$tmp/r.st" --log "$tmp/r.jsonl" "$tmp/text.txt" &&
    "$build/st-train" --device cpu --resume "$tmp/r.st" --gpus 3 --quiet -o "$tmp/r.st" --log "$tmp/r.jsonl" "$tmp/text.txt" &&
    same_losses "$tmp/one.jsonl" "$tmp/r.jsonl" && ok "2 processes, then --resume on 3: one process's losses" || bad "resume on another count"

# A sharded optimizer (ZeRO-1): each rank updates its part of the weights with its part of the moments,
# the same arithmetic; the moments it saves are every rank's, so the run resumes on 2 without sharding.
"$build/st-train" "${args[@]}" --gpus 3 --shard-optimizer --stop-after 12 -o "$tmp/z.st" --log "$tmp/z.jsonl" "$tmp/text.txt" &&
    "$build/st-train" --device cpu --resume "$tmp/z.st" --gpus 2 --quiet -o "$tmp/z.st" --log "$tmp/z.jsonl" "$tmp/text.txt" &&
    same_losses "$tmp/one.jsonl" "$tmp/z.jsonl" && ok "3 processes with --shard-optimizer, then --resume on 2: one process's losses" ||
    bad "sharded optimizer"

# Micro-batches (--micro-batch): passes of fewer examples whose gradients add up, on one process and
# on two, learn what the whole batch at once does.
"$build/st-train" "${args[@]}" --batch 8 -o "$tmp/b8.st" --log "$tmp/b8.jsonl" "$tmp/text.txt"
"$build/st-train" "${args[@]}" --batch 8 --micro-batch 2 -o "$tmp/m1.st" --log "$tmp/m1.jsonl" "$tmp/text.txt" &&
    "$build/st-train" "${args[@]}" --batch 8 --micro-batch 2 --gpus 2 -o "$tmp/m2.st" --log "$tmp/m2.jsonl" "$tmp/text.txt" &&
    same_losses "$tmp/b8.jsonl" "$tmp/m1.jsonl" && same_losses "$tmp/b8.jsonl" "$tmp/m2.jsonl" &&
    ok "passes of 2 examples, on 1 and on 2 processes: the 24 losses of batches of 8 at once" || bad "micro-batches"

# Context parallelism: the processes share each sequence of 64 positions (32 + 32; 21 + 21 + 22), each
# running its part in every layer; the losses and the held-out figure are one process's, and the model
# resumes on one process alone.
same_heldout() {  # A.jsonl B.jsonl: the last held-out figures within 1e-5
    $py - "$1" "$2" <<'PY'
import json, sys
a, b = ([json.loads(l)["val_bits"] for l in open(p) if '"val_bits"' in l][-1] for p in sys.argv[1:3])
sys.exit(0 if abs(a - b) <= 1e-5 * a else print(f"held-out {a} against {b}") or 1)
PY
}
for n in 2 3; do
    "$build/st-train" "${args[@]}" --gpus $n --context-parallel $n -o "$tmp/cp$n.st" --log "$tmp/cp$n.jsonl" "$tmp/text.txt" &&
        same_losses "$tmp/one.jsonl" "$tmp/cp$n.jsonl" && same_heldout "$tmp/one.jsonl" "$tmp/cp$n.jsonl" &&
        ok "--context-parallel $n: one process's 24 losses and held-out figure" || bad "--context-parallel $n"
done
"$build/st-train" "${args[@]}" --gpus 3 --context-parallel 3 --stop-after 12 -o "$tmp/cpr.st" --log "$tmp/cpr.jsonl" "$tmp/text.txt" &&
    "$build/st-train" --device cpu --resume "$tmp/cpr.st" --quiet -o "$tmp/cpr.st" --log "$tmp/cpr.jsonl" "$tmp/text.txt" &&
    same_losses "$tmp/one.jsonl" "$tmp/cpr.jsonl" && ok "--context-parallel 3, then --resume on one process: one process's losses" ||
    bad "context-parallel resume"
# Within data parallelism: 2 groups of 2 processes, each group sharing the sequences of its 4 examples.
"$build/st-train" "${args[@]}" --batch 8 --gpus 4 --context-parallel 2 -o "$tmp/cp22.st" --log "$tmp/cp22.jsonl" "$tmp/text.txt" &&
    same_losses "$tmp/b8.jsonl" "$tmp/cp22.jsonl" && same_heldout "$tmp/b8.jsonl" "$tmp/cp22.jsonl" &&
    ok "--gpus 4 --context-parallel 2: one process's 24 losses and held-out figure" || bad "--gpus 4 --context-parallel 2"
"$build/st-train" "${args[@]}" --gpus 3 --context-parallel 2 -o "$tmp/cpx.st" "$tmp/text.txt" 2> "$tmp/cpx.err"
rc=$?
[ $rc = 2 ] && grep -q "does not divide the job's 3 processes" "$tmp/cpx.err" && [ ! -e "$tmp/cpx.st" ] &&
    ok "--context-parallel 2 in a job of 3: refused in one line" || bad "context-parallel refusal (status $rc: $(cat "$tmp/cpx.err"))"

# Kill one rank of a job of 3 once it has saved: the job ends within 60 s, says which rank stopped, and
# the checkpoint resumes. The job runs on until the kill, so how far it got depends on the machine's
# speed: it resumes for 5 more. Each rank's environment is left in $tmp/NAME.env.RANK.
killed_job() {  # NAME RANK ST-TRAIN-ARGS...
    local name=$1 rank=$2 job victim= start status took saved p
    shift 2
    "$build/st-train" "${args[@]}" --steps 100000 --save-every 5 --gpus 3 "$@" -o "$tmp/$name.st" "$tmp/text.txt" 2> "$tmp/$name.err" &
    job=$!
    for _ in $(seq 100); do [ -s "$tmp/$name.st" ] && break; sleep 0.1; done
    for p in $(pgrep -P $job); do
        tr '\0' '\n' < /proc/$p/environ 2>/dev/null > "$tmp/environ"
        r=$(sed -n 's/^RANK=//p' "$tmp/environ")
        [ -n "$r" ] && cp "$tmp/environ" "$tmp/$name.env.$r"
        [ "$r" = "$rank" ] && victim=$p
    done
    start=$(date +%s)
    [ -n "$victim" ] && kill -9 "$victim"
    wait $job
    status=$?
    took=$(($(date +%s) - start))
    saved=$(grep -o 'the [0-9]* steps so far' "$tmp/$name.err" | grep -o '[0-9][0-9]*' | head -n 1)
    if [ -n "$victim" ] && [ $status -ne 0 ] && [ $took -le 60 ] && grep -q "rank $rank stopped" "$tmp/$name.err" &&
        [ -n "$saved" ] && "$build/st-eval" --device cpu "$tmp/$name.st" "$tmp/text.txt" > /dev/null &&
        "$build/st-train" --device cpu --resume "$tmp/$name.st" --steps $((saved + 5)) --quiet -o "$tmp/$name.st" \
            "$tmp/text.txt" 2> /dev/null; then
        ok "${*:-data parallel}: a killed rank $rank ends the job in ${took} s (status $status) and the checkpoint resumes"
    else
        bad "${*:-data parallel}: killed rank $rank: victim '$victim', status $status after ${took} s, stderr: $(tr '\n' ' ' < "$tmp/$name.err")"
    fi
}
killed_job k 1
# --gpus: its ranks meet on loopback and share a secret made for this job.
secrets=$(cat "$tmp"/k.env.* 2>/dev/null | grep -Ex 'ST_JOB_SECRET=[0-9a-f]{64}')
[ "$(grep -lx MASTER_ADDR=127.0.0.1 "$tmp"/k.env.* 2>/dev/null | wc -l)" -eq 3 ] &&
    [ "$(printf '%s\n' "$secrets" | sort -u | grep -c .)" -eq 1 ] && [ "$(printf '%s\n' "$secrets" | grep -c .)" -eq 3 ] &&
    ok "--gpus 3: MASTER_ADDR=127.0.0.1 and one ST_JOB_SECRET of 64 hex digits for the 3 ranks" ||
    bad "--gpus 3: the ranks' MASTER_ADDR and ST_JOB_SECRET: '$secrets'"
killed_job kc 2 --context-parallel 3

# Refusals: one line, the right status, no model written.
refuse() {  # WANT_STATUS PATTERN ENV... -- ST-TRAIN-ARGS...
    local want=$1 pattern=$2 envs=()
    shift 2
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" "$build/st-train" "${args[@]}" -o "$tmp/no.st" "$@" < "$tmp/text.txt" > /dev/null 2> "$tmp/err"
    local got=$?
    if [ $got -eq "$want" ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -Eq "$pattern" "$tmp/err" && [ ! -e "$tmp/no.st" ]; then
        ok "refused ($got): $(cat "$tmp/err")"
    else
        bad "expected status $want and /$pattern/, got $got: $(cat "$tmp/err")"
    fi
}
refuse 2 "not - \(stdin" -- --gpus 2 -
refuse 2 "gpus 64: this machine has [0-9]+ GPU" -- --device cuda --gpus 64 "$tmp/text.txt"
refuse 1 "missing.txt: No such file" -- --gpus 2 "$tmp/missing.txt"
refuse 1 "micro-batch 2 does not divide the 7 examples" -- --micro-batch 2 "$tmp/text.txt"
refuse 1 "micro-batch 2 does not divide the 3 examples rank 1 computes" -- --micro-batch 2 --gpus 2 "$tmp/text.txt"
refuse 1 "batch 2 is smaller than the job's 3 processes" -- --batch 2 --gpus 3 "$tmp/text.txt"
refuse 2 "one of a job of 2" RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 -- --gpus 3 "$tmp/text.txt"
refuse 1 "RANK=5" RANK=5 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 -- "$tmp/text.txt"
refuse 1 "MASTER_ADDR is not set" SLURM_PROCID=1 SLURM_NTASKS=4 SLURM_NNODES=2 -- "$tmp/text.txt"
secret=0123456789abcdef0123456789abcdef
refuse 1 "did not answer" RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=9 ST_RENDEZVOUS_TIMEOUT=1 ST_JOB_SECRET=$secret -- "$tmp/text.txt"
refuse 1 "ST_JOB_SECRET is not set: .*export ST_JOB_SECRET=" RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=9 -- "$tmp/text.txt"
refuse 1 "ST_JOB_SECRET is shorter than 16" RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=9 ST_JOB_SECRET=guessable -- "$tmp/text.txt"
refuse 1 "ST_COLLECTIVE_TIMEOUT=never: expected seconds" RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 ST_COLLECTIVE_TIMEOUT=never -- "$tmp/text.txt"

# The ranks of a job started by hand, as a launcher would: RANK, WORLD_SIZE, MASTER_* and the secret.
free_port() { $py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rank() {  # RANK PORT SECRET NAME [ST-TRAIN-ARGS...]: in the background, stderr in $tmp/NAME.err
    local r=$1 port=$2 key=$3 name=$4
    shift 4
    RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port ST_JOB_SECRET=$key ST_RENDEZVOUS_TIMEOUT=20 \
        "$build/st-train" "${args[@]}" -o "$tmp/$name.st" --log "$tmp/$name.jsonl" "$@" "$tmp/text.txt" 2> "$tmp/$name.err" &
}

# A stranger connects to rank 0 first, says "rank 1" and sends NaN gradients: it is refused with one
# line, the real rank 1 joins, and the job learns what one process does.
port=$(free_port)
rank 0 "$port" $secret s0
rank0=$!
rm -f "$tmp/stranger.sent"
$py - "$port" "$tmp/stranger.sent" <<'PY' &
import socket, struct, sys, time
for _ in range(400):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit(1)
s.sendall(struct.pack(">I", 1) + struct.pack("<f", float("nan")) * 4096)
open(sys.argv[2], "w").close()
s.settimeout(15)
try:
    while s.recv(4096):
        pass
except OSError:
    pass
PY
stranger=$!
for _ in $(seq 200); do [ -e "$tmp/stranger.sent" ] && break; sleep 0.05; done
rank 1 "$port" $secret s1
rank1=$!
wait $rank0; s0=$?
wait $rank1; s1=$?
wait $stranger
if [ $s0 -eq 0 ] && [ $s1 -eq 0 ] && same_losses "$tmp/one.jsonl" "$tmp/s0.jsonl" && [ "$(wc -l < "$tmp/s0.err")" -eq 1 ] &&
    grep -Eq "^st-train: rendezvous: refused a connection from 127\.0\.0\.1:[0-9]+: .*not an st rank" "$tmp/s0.err"; then
    ok "a stranger claiming rank 1 is refused ($(cut -d: -f3- "$tmp/s0.err" | cut -c2-)); the real ranks learn one process's losses"
else
    bad "stranger: rank 0 status $s0, rank 1 status $s1, stderr: $(cat "$tmp/s0.err" "$tmp/s1.err" | tr '\n' ' ')"
fi

# Ranks whose secrets differ: rank 1 says so at once in one line; rank 0 names the refusal, then times out.
port=$(free_port)
rank 0 "$port" $secret d0
rank0=$!
sleep 0.5
rank 1 "$port" "another secret of enough length" d1
rank1=$!
start=$(date +%s)
wait $rank1; s1=$?
took=$(($(date +%s) - start))
kill -TERM $rank0   # waiting for a rank 1 that cannot come
wait $rank0
if [ $s1 -eq 1 ] && [ $took -le 5 ] && [ "$(wc -l < "$tmp/d1.err")" -eq 1 ] && grep -q "ST_JOB_SECRET or WORLD_SIZE differs from rank 1's" "$tmp/d1.err" &&
    grep -q "refused a connection from 127.0.0.1:[0-9]*: it does not know the job's secret" "$tmp/d0.err" && [ ! -e "$tmp/d1.st" ]; then
    ok "a rank with another secret is refused in ${took} s: $(cat "$tmp/d1.err")"
else
    bad "different secrets: rank 1 status $s1 after ${took} s, stderr: $(cat "$tmp/d0.err" "$tmp/d1.err" | tr '\n' ' ')"
fi

# SIGTERM ends a rank that waits in the rendezvous (for rank 0, or for the others) within seconds.
for r in 0 1; do
    rank $r "$(free_port)" $secret w$r
    pid=$!
    sleep 1
    start=$(date +%s.%N)
    kill -TERM $pid
    wait $pid
    status=$?
    took=$($py -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
    if [ $status -eq 143 ] && $py -c "import sys; sys.exit(float(sys.argv[1]) > 3)" "$took" && [ ! -e "$tmp/w$r.st" ]; then
        ok "SIGTERM ends rank $r waiting in the rendezvous in $took s (status 143)"
    else
        bad "SIGTERM to rank $r waiting in the rendezvous: status $status after $took s, stderr: $(cat "$tmp/w$r.err")"
    fi
done

echo "dist: $passed passed, $failed failed"
[ $failed -eq 0 ]
