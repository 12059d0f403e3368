#!/usr/bin/env bash
# Bad input gets a clean refusal. Each case is a command, the exit status it must give (1 runtime
# error, 2 usage error), a pattern its stderr must match (exactly one line, "PROGRAM: ..."), and the
# output it must not leave behind (the -o file, a temporary "*.tmp.*", bytes on stdout). Then the
# terminal checks (binary output is refused on a pseudo-terminal, through script(1)) and the signal
# checks (SIGINT / SIGTERM save the model, exit 128+N, and --resume goes on from there).
#
# Usage: bad_input.sh BUILD_DIR
. "$(dirname "$0")/lib/cases.sh" "$@"

# A tiny model, so that a check that wrongly lets a run through costs little.
tiny=(--steps 2 --layers 1 --d-model 32 --heads 2 --ctx 64 --batch 2 --eval-windows 2)

# ---- checks: each adds to problems[] what it finds wrong ----

check_no_file() {  # PATH
    [ ! -e "$1" ] || problems+=("$1 was left behind")
}

check_no_temp_files() {
    local left
    left=$(find . -name '*.tmp.*' | head -n 3)
    [ -z "$left" ] || problems+=("temporary files left behind: $(echo $left)")
    find . -name '*.tmp.*' -delete
}

# One refusal (cases.sh's check_refusal) that leaves no temporary file and no OUT (unless OUT is "").
expect_fail() {  # NAME WANT PATTERN OUT -- CMD...
    local name=$1 want=$2 pattern=$3 out=$4
    shift 5
    check_refusal "$want" "$pattern" "$@"
    [ -z "$out" ] || check_no_file "$out"
    check_no_temp_files
    [ -z "$out" ] || rm -f "$out"
    report "$name" "$tmp/stderr"
}

# ---- files the cases use ----

# About 100 KB of English text, or generated words where the licences are missing.
make_text() {
    cat /usr/share/common-licenses/* 2>/dev/null | head -c 100000 > text.txt
    [ "$(wc -c < text.txt)" -ge 50000 ] && return
    yes "the quick brown fox jumps over the lazy dog and runs away." | head -c 100000 > text.txt
}

# A valid safetensors file that is not an st model: one F32 tensor, no metadata.
write_foreign_safetensors() {  # OUT
    "$py" - "$1" <<'EOF'
import json, struct, sys
data = struct.pack("<4f", 1, 2, 3, 4)
header = json.dumps({"weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, len(data)]}}).encode()
header += b" " * (-len(header) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header + data)
EOF
}

# A copy of an st model without its optimizer state (opt.m, opt.v), with the checksum updated.
strip_optimizer() {  # IN OUT
    "$py" - "$1" "$2" <<'EOF'
import json, struct, sys, zlib
raw = open(sys.argv[1], "rb").read()
n, = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
for name in ("opt.m", "opt.v"):
    del header[name]
end = max(t["data_offsets"][1] for k, t in header.items() if k != "__metadata__")
data = data[:end]
header["__metadata__"]["st.crc32"] = str(zlib.crc32(data))
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + data)
EOF
}

# A copy of a model with one byte in the middle of its tensor data flipped.
flip_data_byte() {  # IN OUT
    "$py" - "$1" "$2" <<'EOF'
import struct, sys
raw = bytearray(open(sys.argv[1], "rb").read())
n, = struct.unpack("<Q", raw[:8])
middle = (8 + n + len(raw)) // 2
raw[middle] ^= 0xFF
open(sys.argv[2], "wb").write(raw)
EOF
}

make_fixtures() {
    make_text
    head -c 100 text.txt > short.txt
    head -c 1000 text.txt > short1000.txt
    : > empty.txt
    head -c 20000 /dev/urandom > noise.bin
    head -c 5000 /dev/urandom > random.st
    st-train -q "${tiny[@]}" -o good.st text.txt || return 1
    st-train -q "${tiny[@]}" -o binary.st noise.bin || return 1
    head -c $(($(wc -c < good.st) / 2)) good.st > truncated.st
    head -c 50 good.st > truncated-header.st
    flip_data_byte good.st corrupted.st &&
        write_foreign_safetensors foreign.st &&
        strip_optimizer good.st no-optimizer.st
}

# ---- cases ----

data_cases() {
    expect_fail "st-train: missing data file" 1 "missing\.txt: No such file or directory" out.st -- st-train "${tiny[@]}" -o out.st missing.txt
    expect_fail "st-train: empty data file" 1 "empty\.txt: no data" out.st -- st-train "${tiny[@]}" -o out.st empty.txt
    expect_fail "st-train: empty stdin" 1 "stdin: no data" out.st -- st-train "${tiny[@]}" -o out.st -
    expect_fail "st-train: data shorter than the context (held-out part)" 1 "short\.txt: .*shorter than one window of the context" out.st -- \
        st-train "${tiny[@]}" -o out.st short.txt
    expect_fail "st-train: data shorter than the context (training part)" 1 "short1000\.txt: 1000 training bytes is shorter than one window" out.st -- \
        st-train "${tiny[@]}" --ctx 2048 --val text.txt -o out.st short1000.txt
    expect_fail "st-train: --val shorter than the context" 1 "short\.txt: 100 bytes is shorter than one window of the context \(129 bytes\)" out.st -- \
        st-train "${tiny[@]}" --ctx 128 --val short.txt -o out.st text.txt
    expect_fail "st-eval: data of 1 byte" 1 "need at least 2 bytes" "" -- st-eval good.st <(printf x)
    expect_fail "st-eval: missing data file" 1 "missing\.txt: No such file or directory" "" -- st-eval good.st missing.txt
}

model_cases() {
    local prog
    for prog in st-sample st-eval; do
        local args=()
        [ "$prog" = st-eval ] && args=(text.txt)
        expect_fail "$prog: missing model file" 1 "missing\.st: No such file or directory" "" -- "$prog" missing.st "${args[@]}"
        expect_fail "$prog: empty model file" 1 "empty\.txt: empty file" "" -- "$prog" empty.txt "${args[@]}"
        expect_fail "$prog: truncated model (tensor data cut)" 1 "truncated\.st: truncated" "" -- "$prog" truncated.st "${args[@]}"
        expect_fail "$prog: truncated model (header cut)" 1 "truncated-header\.st: truncated" "" -- "$prog" truncated-header.st "${args[@]}"
        expect_fail "$prog: corrupted model (a flipped data byte)" 1 "corrupted\.st: corrupted: checksum mismatch" "" -- "$prog" corrupted.st "${args[@]}"
        expect_fail "$prog: safetensors file of another kind" 1 "foreign\.st: not an st model" "" -- "$prog" foreign.st "${args[@]}"
        expect_fail "$prog: random bytes as a model" 1 "random\.st: not a safetensors file" "" -- "$prog" random.st "${args[@]}"
    done
    expect_fail "st-train: --resume of a truncated model" 1 "truncated\.st: truncated" out.st -- st-train --resume truncated.st -o out.st text.txt
    expect_fail "st-train: --resume of a model without training state" 1 "no-optimizer\.st: holds no training state" out.st -- \
        st-train --resume no-optimizer.st -o out.st text.txt
    expect_fail "st-train: --resume of a finished run" 1 "good\.st: already trained 2 of 2 steps" out.st -- st-train --resume good.st -o out.st text.txt
    expect_fail "st-train: --resume changing the model" 2 "--layers cannot change when resuming" out.st -- \
        st-train --resume good.st --steps 4 --layers 3 -o out.st text.txt

    # A failed run leaves the model it would have replaced as it was.
    cp good.st keep.st
    expect_fail "st-train: a failed run keeps the old model" 1 "empty\.txt: no data" "" -- st-train "${tiny[@]}" -o keep.st empty.txt
    check_same_file good.st keep.st
    report "st-train: the old model is unchanged"
}

usage_cases() {
    local p
    for p in st-train st-sample st-eval; do
        expect_fail "$p: unknown option" 2 "bogus" "" -- "$p" --bogus good.st
    done
    for p in st-train st-sample st-eval; do
        expect_fail "$p: --device tpu" 2 "expected auto, cpu or cuda" "" -- "$p" --device tpu good.st
    done
    expect_fail "st-sample: --batch 0" 2 "batch 0" "" -- st-sample --batch 0 good.st
    expect_fail "st-sample: --min-p 2" 2 "min-p 2" "" -- st-sample --min-p 2 good.st
    if ! nvidia-smi -L > /dev/null 2>&1; then   # a machine without a GPU (CI): asking for one fails cleanly
        cp good.st keep.st
        expect_fail "st-train: --device cuda without a GPU" 1 "no CUDA (GPU found|support)" "" -- \
            st-train "${tiny[@]}" --device cuda -o keep.st text.txt
        check_same_file good.st keep.st
        expect_fail "st-sample: --device cuda without a GPU" 1 "no CUDA (GPU found|support)" "" -- st-sample --device cuda -n 5 good.st
        expect_fail "st-eval: --device cuda without a GPU" 1 "no CUDA (GPU found|support)" "" -- st-eval --device cuda good.st text.txt
        expect_fail "st-train --plan without a GPU" 1 "no CUDA (GPU found|support)" "" -- st-train "${tiny[@]}" --plan --device cuda
    fi
    expect_fail "st-train: --plan on the CPU" 2 "plan is of a GPU's memory" "" -- st-train "${tiny[@]}" --plan --device cpu
    expect_fail "st-train: --chunk -1" 2 "chunk -1" out.st -- st-train "${tiny[@]}" --recompute --chunk -1 -o out.st text.txt
    expect_fail "st-train: --offload without --recompute" 2 "add --recompute" out.st -- st-train "${tiny[@]}" --offload --device cpu -o out.st text.txt
    expect_fail "st-train: --offload on the CPU" 2 "add --device cuda" out.st -- st-train "${tiny[@]}" --recompute --offload --device cpu -o out.st text.txt
    expect_fail "st-train: no -o" 2 "missing -o MODEL" "" -- st-train "${tiny[@]}" text.txt
    expect_fail "st-train: no data" 2 "missing DATA" out.st -- st-train "${tiny[@]}" -o out.st
    expect_fail "st-eval: no data" 2 "usage: st-eval MODEL DATA" "" -- st-eval good.st
    expect_fail "st-train: --layers 0" 2 "layers 0" out.st -- st-train "${tiny[@]}" --layers 0 -o out.st text.txt
    expect_fail "st-train: --heads 3 with --d-model 64" 2 "heads 3 do not divide d_model 64" out.st -- \
        st-train "${tiny[@]}" --heads 3 --d-model 64 -o out.st text.txt
    expect_fail "st-train: --stride 100 with --ctx 256" 2 "stride 100 does not divide the context 256" out.st -- \
        st-train "${tiny[@]}" --stride 100 --ctx 256 -o out.st text.txt
    expect_fail "st-train: --summary not dividing the stride" 2 "summary 24 does not divide the stride 64" out.st -- \
        st-train "${tiny[@]}" --summary 24 -o out.st text.txt
    expect_fail "st-train: --block 48" 2 "block must be 32, 64 or 128" out.st -- st-train "${tiny[@]}" --block 48 -o out.st text.txt
    expect_fail "st-train: --lr abc" 2 "--lr abc: not a number" out.st -- st-train "${tiny[@]}" --lr abc -o out.st text.txt
    expect_fail "st-train: --dropout 1.5" 2 "--dropout 1\.5: must be between 0 and 0\.99" out.st -- \
        st-train "${tiny[@]}" --dropout 1.5 -o out.st text.txt
    expect_fail "st-train: --pattern unknown" 2 "--pattern sparse: expected dense, local, fixed or strided" out.st -- \
        st-train "${tiny[@]}" --pattern sparse -o out.st text.txt
    expect_fail "st-train: --image 28x28" 2 "--image 28x28: expected HxWxC" out.st -- st-train "${tiny[@]}" --image 28x28 -o out.st text.txt
    expect_fail "st-sample: --top-k 300" 2 "--top-k 300: must be between 0 and 256" "" -- st-sample good.st --top-k 300
    expect_fail "st-sample: --bytes -1" 2 "--bytes -1: must be between" "" -- st-sample good.st -n -1
    expect_fail "st-eval: --batch 0" 2 "--batch 0: must be between" "" -- st-eval --batch 0 good.st text.txt
}

terminal_cases() {
    have_terminal || return
    local rc
    check_terminal_refusal st-sample "refusing to write binary samples .* to a terminal" "$build/st-sample binary.st -n 10"
    report "st-sample: a binary model's samples to a terminal" "$tmp/stderr"

    check_terminal_refusal st-train "refusing to write a model to a terminal" "$build/st-train ${tiny[*]} -o - text.txt"
    report "st-train: -o - to a terminal" "$tmp/stderr"

    on_terminal "$tmp/stderr" "$build/st-sample good.st -n 10"
    rc=$?
    check_status "$rc" 0
    [ -s "$tmp/tty" ] || problems+=("nothing reached the terminal")
    report "st-sample: a text model's samples to a terminal (allowed)" "$tmp/stderr"
}

# Waits until the JSON-lines log FILE has at least N lines, or PID has exited; 60 s at most.
wait_for_steps() {  # FILE N PID
    local i
    for i in $(seq 600); do
        [ -f "$1" ] && [ "$(wc -l < "$1")" -ge "$2" ] && return 0
        kill -0 "$3" 2> /dev/null || return 1
        sleep 0.1
    done
    return 1
}

# A long run stopped by SIGNAL exits 128+N after saving; the model loads and --resume goes on.
signal_case() {  # SIGNAL STATUS
    local sig=$1 want=$2 model=signal-$1.st pid rc step
    rm -f "$model" "$tmp/log"
    st-train --steps 1000000 --layers 1 --d-model 32 --heads 2 --ctx 64 --batch 2 --eval-every 0 \
        --log "$tmp/log" -o "$model" text.txt 2> "$tmp/stderr" &
    pid=$!
    wait_for_steps "$tmp/log" 3 "$pid" || problems+=("no steps logged before the signal")
    kill -s "$sig" "$pid"
    wait "$pid"
    rc=$?
    check_status "$rc" "$want"
    grep -q "^interrupted at step [0-9]*; saved $model" "$tmp/stderr" || problems+=("no \"interrupted at step N; saved $model\" on stderr")
    step=$(sed -n "s/^interrupted at step \([0-9]*\);.*/\1/p" "$tmp/stderr")
    check_no_temp_files
    if [ ! -f "$model" ]; then
        problems+=("$model was not saved")
    else
        st-eval "$model" short1000.txt > /dev/null 2> "$tmp/stderr" || problems+=("st-eval cannot read $model: $(cat "$tmp/stderr")")
        st-train --resume "$model" --stop-after 2 -o "$model" text.txt 2> "$tmp/stderr"
        rc=$?
        [ "$rc" -eq 0 ] || problems+=("--resume exits $rc: $(tail -n 1 "$tmp/stderr")")
        grep -q "^stopped at step $((step + 2)) of 1000000" "$tmp/stderr" || problems+=("--resume did not go on from step $step to $((step + 2))")
    fi
    report "st-train: $sig saves, exits $want, and --resume goes on"
}

# ---- main ----

require_programs st-train st-sample st-eval
require_fixtures
data_cases
model_cases
usage_cases
terminal_cases
signal_case INT 130
signal_case TERM 143
echo "bad input: $passed passed, $failed failed (${SECONDS}s)"
[ "$failed" -eq 0 ]
