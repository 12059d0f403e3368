#!/usr/bin/env bash
# Nothing a user made is lost when st-train dies without warning. A run that keeps overwriting its model
# (--resume M -o M --save-every 1) is killed with SIGKILL at a random moment, a hundred times, many of
# them during a save; after every kill M is byte for byte the model from before that run, or a whole
# newer one: st-eval reads it to a finite figure and its step did not go back. Every 10th kill, and at
# the end, M resumes, and the temporary files the killed saves left beside it are gone. One step after
# the last kill, the model holds only finite numbers and is, byte for byte, the model one unbroken run
# from the first makes in as many steps.
#
# M is zstd-compressed: compressing it keeps its temporary file open for a good part of each step on
# any file system (a plain model is written in a millisecond where fsync costs nothing, as on tmpfs),
# so that many kills land inside a save.
# The delays come from $RANDOM seeded with CRASH_SEED (printed); they change the moments of the kills,
# never what is checked. They start at three quarters of the time a run of one step and one save takes
# on this machine (start-up differs: a build with CUDA loads its libraries first) and span 400 ms.
# Usage: crash_safety.sh BUILD_DIR
. "$(dirname "$0")/lib/cases.sh" "$@"

trials=100
seed=${CRASH_SEED:-20240}
RANDOM=$seed
model=(--layers 1 --d-model 128 --heads 2 --ctx 32 --block 32 --stride 16 --batch 1 --steps 1000000 --eval-every 0 --eval-windows 4)
out=model.st.zst

# The step a model holds, or nothing (status 1) when st-train cannot load it: asked to train a model to
# step 0, st-train refuses, naming the steps already trained.
model_step() {  # FILE
    st-train --resume "$1" --steps 0 -o "$tmp/probe.st" text.txt 2> "$tmp/probe" && return 1
    sed -n "s/^st-train: .*: already trained \([0-9]*\) of 0 steps.*/\1/p" "$tmp/probe" | grep .
}

# ---- checks: each adds to problems[] what it finds wrong ----

# FILE is a whole model that st-eval reads to a finite figure.
check_loads() {  # FILE
    st-eval "$1" eval.txt > "$tmp/eval" 2> "$tmp/stderr" || { problems+=("st-eval cannot read $1: $(tail -n 1 "$tmp/stderr")"); return; }
    grep -Eq '^[0-9]+\.[0-9]+ bits per byte' "$tmp/eval" || problems+=("st-eval $1 printed \"$(head -c 100 "$tmp/eval")\", not a finite number")
}

# After a kill, OUT is BEFORE (of step $step) unchanged, or a whole model of a later step, whose step
# then becomes $step.
check_after_kill() {  # OUT BEFORE
    local now
    if [ ! -f "$1" ]; then
        problems+=("$1 is gone")
        return
    fi
    cmp -s "$2" "$1" && return
    now=$(model_step "$1") || { problems+=("$1 is neither the model from before nor a whole one: $(tail -n 1 "$tmp/probe")"); return; }
    [ "$now" -gt "$step" ] || problems+=("$1 went from step $step back to step $now")
    check_loads "$1"
    step=$now
}

# A run that starts after killed ones clears the temporary files their saves left beside OUT. Counted
# apart from the trials, and then removed, so that each check sees only what came since the last.
check_no_stale_temps() {  # OUT
    local left
    left=$(ls "$1".tmp.* 2> /dev/null | wc -l)
    [ "$left" -eq 0 ] && return
    stale=$((stale + left))
    echo "FAIL  $left temporary files of killed runs are still beside $1 after a later run finished"
    rm -f "$1".tmp.*
}

# `--resume OUT -o OUT --stop-after 1` finishes, one step on from $step, and leaves a whole model.
check_resumes() {  # OUT
    local now
    st-train --resume "$1" -o "$1" --stop-after 1 -q text.txt 2> "$tmp/stderr" || { problems+=("--resume $1 fails: $(tail -n 1 "$tmp/stderr")"); return; }
    now=$(model_step "$1") || { problems+=("--resume wrote a model that does not load: $(tail -n 1 "$tmp/probe")"); return; }
    [ "$now" -eq $((step + 1)) ] || problems+=("--resume --stop-after 1 went from step $step to step $now")
    step=$now
    check_loads "$1"
    check_no_stale_temps "$1"
}

# Every number in the plain model FILE (the safetensors layout: an 8-byte little-endian header length,
# a JSON header of dtype, shape and data_offsets, the data) is finite.
check_finite() {  # FILE
    "$py" - "$1" > "$tmp/why" 2>&1 <<'EOF' || problems+=("$(tail -n 1 "$tmp/why")")
import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
n, = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n])
header.pop("__metadata__")
data = raw[8 + n:]
bad = [name for name, t in header.items()
       if t["dtype"] != "F32" or not np.isfinite(np.frombuffer(data, "<f4", (t["data_offsets"][1] - t["data_offsets"][0]) // 4,
                                                               t["data_offsets"][0])).all()]
if not header or bad:
    sys.exit(f"{sys.argv[1]}: not F32 or not finite: {', '.join(bad) or 'no tensors'}")
EOF
}

# ---- main ----

require_programs st-train st-eval
cat /usr/share/common-licenses/* 2> /dev/null | head -c 60000 > text.txt
[ "$(wc -c < text.txt)" -ge 20000 ] || yes "the quick brown fox jumps over the lazy dog and runs away." | head -c 60000 > text.txt
head -c 2000 text.txt > eval.txt
st-train "${model[@]}" --stop-after 2 -q -o "$out" text.txt || { echo "$name: could not train the first model" >&2; exit 1; }
cp "$out" first.st.zst
step=$(model_step "$out") || { echo "$name: cannot read the step of the first model: $(cat "$tmp/probe")" >&2; exit 1; }
first_step=$step
# How long a run takes to start, make one step and save it, measured on a copy.
cp "$out" timing.st.zst
t0=$(date +%s%N)
st-train --resume timing.st.zst -o timing.st.zst --stop-after 1 -q text.txt || { echo "$name: a timing run failed" >&2; exit 1; }
min_delay_ms=$((($(date +%s%N) - t0) / 1000000 * 3 / 4)) span_ms=400
rm -f timing.st.zst
echo "seed $seed: $trials kills of st-train --resume $out -o $out --save-every 1, $min_delay_ms to $((min_delay_ms + span_ms)) ms after its start"

in_save=0 stale=0 newer=0
for n in $(seq "$trials"); do
    cp "$out" before.st.zst
    before=$step
    st-train --resume "$out" -o "$out" --save-every 1 -q text.txt 2> "$tmp/stderr" &
    pid=$!
    delay=$((min_delay_ms + RANDOM % span_ms))
    sleep "$((delay / 1000)).$(printf %03d $((delay % 1000)))"
    kill -KILL "$pid" 2> /dev/null
    wait "$pid" 2> /dev/null   # without bash's "Killed" line
    rc=$?
    [ "$rc" -eq 137 ] || problems+=("st-train ended by itself (status $rc) before the kill: $(tail -n 1 "$tmp/stderr")")
    ls "$out".tmp."$pid".* > /dev/null 2>&1 && in_save=$((in_save + 1))
    check_after_kill "$out" before.st.zst
    [ "$step" -eq "$before" ] || newer=$((newer + 1))
    [ $((n % 10)) -ne 0 ] || check_resumes "$out"
    if [ ${#problems[@]} -ne 0 ]; then
        echo "FAIL  kill $n, $delay ms after the start of a run from step $before"
        printf '      - %s\n' "${problems[@]}"
        failed=$((failed + 1))
        problems=()
        cp before.st.zst "$out"   # each kill is judged on its own, not on what an earlier one broke
        step=$before
    fi
done

# One more step from the last model, written plain for numpy to read (a number that is not finite stays
# so through a step), and the same steps from the first model in one run.
st-train --resume "$out" -o last.st --stop-after 1 -q text.txt 2> "$tmp/stderr" || problems+=("--resume $out -o last.st fails: $(tail -n 1 "$tmp/stderr")")
st-train --resume first.st.zst -o straight.st --stop-after $((step + 1 - first_step)) -q text.txt 2> "$tmp/stderr" ||
    problems+=("the unbroken run fails: $(tail -n 1 "$tmp/stderr")")
check_finite last.st
cmp -s straight.st last.st || problems+=("the model at step $((step + 1)) after the kills differs from the one an unbroken run makes")
report "the last model: finite numbers, and the unbroken run's"

echo "crash safety: $trials kills, $in_save during a save (its temporary file left), $newer after a newer model was in place (steps $first_step to $step), $failed failed (${SECONDS}s)"
status=0
[ "$failed" -eq 0 ] || status=1
if [ "$stale" -ne 0 ]; then
    echo "$name: $stale temporary files ($out.tmp.PID.N) of killed runs outlived a later run on the same output: st-train must remove the stale temporaries of its output whose process is gone"
    status=1
fi
if [ "$in_save" -lt 20 ]; then
    echo "$name: only $in_save of $trials kills landed during a save, fewer than the 20 this test needs to mean anything"
    status=1
fi
exit "$status"
