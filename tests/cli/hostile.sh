#!/usr/bin/env bash
# Hostile and careless input never crashes st, never makes it take the machine's memory, and never
# costs a user a good file: model files nested or sized to hurt, models whose optimizer state or step
# was corrupted under a valid checksum, outputs that name an input, outputs that cannot be written,
# zstd streams that end exactly where a buffer does, devices as data, signals at awkward moments,
# control bytes meant for a terminal. Each case is a command, its exit status, the one stderr line it
# must print, and the files that must be as they were.
#
# Usage: hostile.sh BUILD_DIR
. "$(dirname "$0")/lib/cases.sh" "$@"
require_programs st-train st-eval st-sample st-viz-attn st-image st-audio

tiny=(--steps 2 --layers 1 --d-model 32 --heads 2 --ctx 64 --batch 2 --eval-windows 2 --device cpu)

# Checks that FILE still has the bytes of its copy KEPT (made before the case ran).
check_kept() {  # FILE KEPT
    cmp -s "$1" "$2" || problems+=("$1 was changed")
}

check_no_temp_files() {
    local left
    left=$(find . -name '*.tmp.*' | head -n 3)
    [ -z "$left" ] || problems+=("temporary files left behind: $(echo $left)")
}

# A copy of model IN at OUT after the Python statements EDIT, which may change `meta` (the metadata,
# strings), `header` (the whole JSON header) and `arrays` (name -> float32 numpy array, written back
# in place); the checksum is made anew, so that only st's own checks can find what is wrong.
edit_model() {  # IN OUT EDIT
    "$py" - "$1" "$2" "$3" <<'EOF'
import json, struct, sys, zlib
import numpy as np
raw = open(sys.argv[1], "rb").read()
n, = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n])
data = bytearray(raw[8 + n:])
meta = header["__metadata__"]
arrays = {k: np.frombuffer(bytes(data[v["data_offsets"][0]:v["data_offsets"][1]]), dtype=np.float32).copy()
          for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32"}
exec(sys.argv[3])
for k, a in arrays.items():
    b, e = header[k]["data_offsets"]
    data[b:e] = a.astype(np.float32).tobytes()
meta["st.crc32"] = str(zlib.crc32(bytes(data)))
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + bytes(data))
EOF
}

check_nothing_left() {
    check_no_temp_files
    [ ! -e out.st ] || problems+=("out.st was written")
    rm -f out.st
}

make_fixtures() {
    # stdin/PROGRAM runs PROGRAM with stdin from the file $STDIN (a case's stdin is otherwise /dev/null).
    mkdir stdin || return 1
    for p in st-train st-sample; do
        printf '#!/usr/bin/env bash\nexec %q "$@" < "$STDIN"\n' "$build/$p" > "stdin/$p" && chmod +x "stdin/$p" || return 1
    done
    yes "a line of text for a tiny model, over and over, with a few words more." | head -c 60000 > text.txt
    st-train -q "${tiny[@]}" -o good.st text.txt || return 1
    cp good.st good.kept
    cp text.txt text.kept
}
require_fixtures

# ---- 1: JSON nested to overflow a stack ----
"$py" -c '
import struct, sys
text = b"{\"a\":" + b"[" * 200000
text += b" " * (-len(text) % 8)
sys.stdout.buffer.write(struct.pack("<Q", len(text)) + text)' > deep-header.st
expect_fail "model file: a header nested 200,000 deep" 1 "deep-header\.st: not a safetensors file \(the header nests more than 64 levels deep\)" -- \
    st-eval deep-header.st text.txt
edit_model good.st deep-config.st 'meta["config"] = "[" * 200000 + "]" * 200000'
expect_fail "model file: a config nested 200,000 deep" 1 "deep-config\.st: model config: JSON nested more than 64 levels deep" -- \
    st-sample deep-config.st -n 10
edit_model good.st deep-recipe.st 'meta["recipe"] = "{\"a\":" * 100000 + "1" + "}" * 100000'
expect_fail "model file: a recipe nested 100,000 deep" 1 "deep-recipe\.st: training recipe: JSON nested more than 64 levels deep" -- \
    st-train --resume deep-recipe.st -o out.st text.txt

# ---- 4: non-finite state and corrupted training position under a valid checksum ----
edit_model good.st nan-moment.st 'arrays["opt.m"][7] = float("nan")'
cp nan-moment.st nan-moment.kept
expect_fail "--resume: a NaN Adam moment" 1 "nan-moment\.st: corrupted: its optimizer state holds values that are not finite" -- \
    st-train --resume nan-moment.st -o nan-moment.st text.txt
check_kept nan-moment.st nan-moment.kept
report "--resume: a NaN Adam moment leaves the file as it was"
edit_model good.st negative-v.st 'arrays["opt.v"][3] = -1.0'
expect_fail "--resume: a negative second moment" 1 "negative-v\.st: corrupted: .*negative second moments" -- \
    st-train --resume negative-v.st -o out.st text.txt
edit_model good.st inf-weight.st 'arrays["head.weight"][0] = float("inf")'
expect_fail "st-eval: an infinite weight" 1 "inf-weight\.st: corrupted: tensor head\.weight holds values that are not finite" -- \
    st-eval inf-weight.st text.txt
edit_model good.st bad-step.st 'meta["step"] = "2junk"'
expect_fail "--resume: step '2junk'" 1 "bad-step\.st: corrupted: step '2junk' is not a whole number" -- \
    st-train --resume bad-step.st -o out.st text.txt
edit_model good.st negative-step.st 'meta["step"] = "-5"'
expect_fail "--resume: step -5" 1 "negative-step\.st: corrupted: step '-5'" -- st-train --resume negative-step.st -o out.st text.txt
# Finite moments that overflow the first update: the weights go infinite, every later step is
# skipped, the run stops, and the good file is not overwritten by what it has.
edit_model good.st exploding.st 'arrays["opt.m"][:] = 3e38; arrays["opt.v"][:] = 0.0'
cp exploding.st exploding.kept
st-train --resume exploding.st -o exploding.st --steps 50 --log exploding.log text.txt > /dev/null 2> "$tmp/stderr" < /dev/null
check_status $? 1
tail -n 1 "$tmp/stderr" | grep -Eq "^st-train: the loss or gradient was not finite at steps 4 to 8; stopped without saving: this run wrote nothing to exploding\.st" ||
    problems+=("the last stderr line does not say the run stopped and saved nothing")
[ "$(grep -c '"skipped"' exploding.log)" -eq 5 ] || problems+=("exploding.log has $(grep -c '"skipped"' exploding.log) skipped steps, expected 5")
[ "$(grep -c 'is not finite; no update' "$tmp/stderr")" -eq 5 ] || problems+=("stderr does not name the 5 skipped steps")
check_kept exploding.st exploding.kept
check_no_temp_files
report "--resume: moments that overflow the update: 5 steps skipped, then a stop that saves nothing" "$tmp/stderr"

# ---- 5: an output that is an input ----
ln text.txt hardlink.txt
ln -s text.txt symlink.txt
expect_fail "st-train -o DATA" 1 "-o text\.txt: the same file as DATA; refusing to overwrite an input" -- \
    st-train "${tiny[@]}" -o text.txt text.txt
expect_fail "st-train -o a hard link to DATA" 1 "-o hardlink\.txt: the same file as DATA \(text\.txt\)" -- \
    st-train "${tiny[@]}" -o hardlink.txt text.txt
expect_fail "st-train --log DATA through a symbolic link" 1 "--log symlink\.txt: the same file as DATA \(text\.txt\)" -- \
    st-train "${tiny[@]}" --log symlink.txt -o out.st text.txt
expect_fail "st-train --log --val" 1 "--log text\.txt: the same file as --val" -- \
    st-train "${tiny[@]}" --val text.txt --log text.txt -o out.st good.st
expect_fail "st-train --log the model being resumed" 1 "--log good\.st: the same file as --resume" -- \
    st-train --resume good.st --log good.st -o out.st text.txt
STDIN=text.txt expect_fail "st-train - -o the file on stdin" 1 "-o text\.txt: the same file as DATA \(-\)" -- \
    stdin/st-train "${tiny[@]}" -o text.txt -
expect_fail "st-viz-attn -o the model" 1 "-o good\.st: the same file as MODEL" -- st-viz-attn good.st -o good.st
expect_fail "st-image decode --grid -o the records" 1 "-o text\.txt: the same file as the records" -- \
    st-image decode --size 4x4x1 --grid 4 -o text.txt text.txt
expect_fail "st-audio decode -o the bytes" 1 "-o hardlink\.txt: the same file as the audio bytes \(text\.txt\)" -- \
    st-audio decode --format wav -o hardlink.txt text.txt
check_kept text.txt text.kept
check_kept good.st good.kept
report "outputs that are inputs: DATA and the model as they were"

# ---- 6: zstd streams whose frames end exactly where the output buffer does ----
if command -v zstd > /dev/null; then
    for size in 131072 262144 393216; do
        head -c $size /dev/urandom > "random-$size"
        # Through a pipe: no content size in the frame, so the buffer grows by zstd's block size.
        zstd -q -c < "random-$size" > "random-$size.zst"
        { cat "random-$size.zst"; cat "random-$size.zst"; } > "two-$size.zst"
        cat "random-$size" "random-$size" > "two-$size"
        for f in "random-$size" "two-$size"; do
            st-train "${tiny[@]}" --steps 0 -q -o "from-zst.st" "$f.zst" 2> "$tmp/stderr"
            check_status $? 0
            st-train "${tiny[@]}" --steps 0 -q -o "from-raw.st" "$f" 2>> "$tmp/stderr"
            cmp -s from-zst.st from-raw.st || problems+=("$f.zst trains another model than $f")
        done
    done
    report "zstd: 128, 256 and 384 KiB of random bytes, one and two frames, read whole" "$tmp/stderr"
else
    echo "skip  zstd cases: no zstd program"
fi

# ---- 7: sizes claimed by a file, checked before anything that large is allocated ----
# A zstd frame of 12 bytes that claims 1.5e9 bytes of content (4-byte size field, single segment,
# then one empty last raw block).
printf '\x28\xb5\x2f\xfd\xa0\x00\x2f\x68\x59\x01\x00\x00' > claims-1.5GB.zst
limit_memory 1024
expect_fail "zstd: a 12-byte frame claiming 1.5e9 bytes" 1 "claims-1\.5GB\.zst: corrupted zstd stream" -- st-eval good.st claims-1.5GB.zst
edit_model good.st huge-context.st 'c = json.loads(meta["config"]); c["n_ctx"] = 2**28; c["pos"] = "1d"; meta["config"] = json.dumps(c)'
expect_fail "model file: a context of 2^28" 1 "huge-context\.st: bad model config: context 268435456: must be between 2 and 67108864" -- \
    st-sample huge-context.st -n 1
edit_model good.st many-layers.st 'c = json.loads(meta["config"]); c["n_layer"] = 2**31 - 1; meta["config"] = json.dumps(c)'
expect_fail "model file: 2^31 - 1 layers" 1 "many-layers\.st: bad model config: layers 2147483647: must be between 1 and 100000" -- \
    st-sample many-layers.st -n 1
edit_model good.st more-layers.st 'c = json.loads(meta["config"]); c["n_layer"] = 90000; meta["config"] = json.dumps(c)'
expect_fail "model file: 90,000 layers, 16 tensors" 1 "more-layers\.st: corrupted: its config has 90000 layers, the file holds [0-9]+ tensors" -- \
    st-sample more-layers.st -n 1
expect_fail "st-train: /dev/zero as data" 1 "/dev/zero: a device, not a file of data" -- st-train "${tiny[@]}" -o out.st /dev/zero
STDIN=/dev/zero expect_fail "st-train: /dev/zero on stdin" 1 "stdin: a device, not a file of data" -- stdin/st-train "${tiny[@]}" -o out.st -
expect_fail "st-sample: --prime /dev/zero" 1 "/dev/zero: a device, not a file of data" -- st-sample good.st --prime /dev/zero -n 1
mkfifo zeros.fifo
head -c 100000000 /dev/zero > zeros.fifo 2> /dev/null &
expect_fail "st-sample: --prime of more than 64 MiB from a pipe" 1 "zeros\.fifo: larger than 64 MiB, the most st reads of it" -- \
    st-sample good.st --prime zeros.fifo -n 1
wait
unlimit_memory

# ---- 8: an output that cannot be written fails before the first step ----
long=$(printf 'm%.0s' $(seq 250))
SECONDS=0
expect_fail "st-train -o into a missing folder" 1 "no-such-dir/out\.st: No such file or directory" -- \
    st-train "${tiny[@]}" --steps 100000 -o no-such-dir/out.st text.txt
expect_fail "st-train -o a name too long for the temporary suffix" 1 "$long: File name too long" -- \
    st-train "${tiny[@]}" --steps 100000 -o "$long" text.txt
[ "$SECONDS" -lt 20 ] || problems+=("the refusals took $SECONDS s: they came after training")
report "unwritable outputs are refused at once"

# ---- 10: signals ----
# SIGHUP (the terminal closed) saves like SIGTERM and exits 128 + 1.
st-train "${tiny[@]}" --steps 100000 --save-every 0 -o hup.st text.txt > /dev/null 2> "$tmp/stderr" < /dev/null &
pid=$!
sleep 2
kill -HUP $pid
wait $pid
check_status $? 129
grep -q "interrupted at step [0-9]*; saved hup\.st" "$tmp/stderr" || problems+=("no 'interrupted ... saved' line")
st-eval hup.st text.txt > /dev/null 2>> "$tmp/stderr" || problems+=("hup.st does not load")
report "SIGHUP saves the model and exits 129" "$tmp/stderr"

# Temporaries of this output left by a process that is gone are removed; others are not.
big=(--steps 1 --layers 2 --d-model 64 --heads 2 --ctx 64 --batch 2 --eval-windows 2 --device cpu -q)
: > "stale.st.tmp.2147483646.0"
: > "stale.st.tmp.$$.0"           # this shell's: a live process
: > "stale.st.tmp.notapid"
: > "other.st.tmp.2147483646.0"
st-train "${big[@]}" -o stale.st text.txt 2> "$tmp/stderr"
check_status $? 0
[ ! -e "stale.st.tmp.2147483646.0" ] || problems+=("the stale temporary of a dead process is still there")
for f in "stale.st.tmp.$$.0" stale.st.tmp.notapid other.st.tmp.2147483646.0; do
    [ -e "$f" ] || problems+=("$f was removed: st did not make it, or its process lives")
done
rm -f stale.st.tmp.* other.st.tmp.*
report "stale temporaries of the same output are removed, nothing else" "$tmp/stderr"

# A SIGTERM that arrives while the last model is being written is not ignored: the model is saved
# and the exit status says the run was interrupted. The save of a wide model to .zst takes long
# enough to be caught in the act: the case waits for its temporary file to appear.
wide=(--steps 1 --layers 4 --d-model 512 --heads 8 --ctx 64 --batch 1 --eval-windows 1 --eval-every 0 --device cpu)
st-train "${wide[@]}" -o end.st.zst text.txt > /dev/null 2> "$tmp/stderr" < /dev/null &
pid=$!
for _ in $(seq 600); do
    compgen -G "end.st.zst.tmp.*" > /dev/null && break
    sleep 0.05
done
kill -TERM $pid
wait $pid
rc=$?
if [ -e end.st.zst ]; then
    check_status $rc 143
    head -c 1000 text.txt > short.txt
    st-eval end.st.zst short.txt > /dev/null 2>> "$tmp/stderr" || problems+=("end.st.zst does not load")
else
    problems+=("no end.st.zst (status $rc)")
fi
check_no_temp_files
report "SIGTERM during the last save: saved, exit 143" "$tmp/stderr"

# A run killed after its last checkpoint logged steps that the resumed run makes again: the resumed
# run cuts them, so that the log reads as one run (lines that are not st's are kept).
st-train "${tiny[@]}" --steps 10 --stop-after 6 -q --log resumed.log -o resumed.st text.txt 2> "$tmp/stderr"
printf '{"step":7,"loss":9.9}\n{"step":8,"loss":9.9}\nnot json\n' >> resumed.log
st-train --resume resumed.st -o resumed.st -q --log resumed.log text.txt 2>> "$tmp/stderr"
check_status $? 0
"$py" - resumed.log <<'EOF' || problems+=("resumed.log: $(tr '\n' ' ' < resumed.log | head -c 300)")
import json, sys
lines = open(sys.argv[1]).read().splitlines()
steps = [json.loads(l)["step"] for l in lines if '"loss"' in l]
sys.exit(0 if steps == list(range(1, 11)) and "not json" in lines else 1)
EOF
report "--resume cuts the log's lines past the checkpoint it resumes" "$tmp/stderr"

# ---- 11, 12: the rest ----
expect_fail "st-train --save-every with -o -" 2 "--save-every: with -o - each checkpoint would follow the last on stdout" -- \
    st-train "${tiny[@]}" --save-every 1 -o - text.txt
edit_model good.st zero-batch.st 'r = json.loads(meta["recipe"]); r["batch"] = 0; meta["recipe"] = json.dumps(r)'
expect_fail "--resume: a recipe of batch 0 blames the file" 1 "zero-batch\.st: bad training recipe: \"batch\" is 0, not a whole number from 1" -- \
    st-train --resume zero-batch.st -o out.st text.txt
edit_model good.st broken-recipe.st 'meta["recipe"] = "{\"steps\": "'
expect_fail "--resume: a recipe that is not JSON names the file" 1 "broken-recipe\.st: training recipe: not valid JSON" -- \
    st-train --resume broken-recipe.st -o out.st text.txt
expect_fail "st-train --image 28x28x1junk" 2 "--image 28x28x1junk: expected HxWxC" -- st-train "${tiny[@]}" --image 28x28x1junk -o out.st text.txt

if have_terminal; then
    printf 'title\033]0;pwned\007 bell\a tab\tdel\177 end\n' > escapes.txt
    on_terminal "$tmp/stderr" "st-sample good.st --prime escapes.txt --echo -n 0"
    check_status $? 0
    grep -q 'title^\[\]0;pwned^G bell^G tab' "$tmp/tty" || problems+=("the terminal got: $(cat -v "$tmp/tty")")
    grep -q $'\033' "$tmp/tty" && problems+=("an ESC byte reached the terminal")
    st-sample good.st --prime escapes.txt --echo -n 0 | cmp -s - escapes.txt || problems+=("a pipe does not get the bytes as they are")
    report "st-sample: control bytes reach a terminal as ^X, a pipe as they are" "$tmp/stderr"
fi

echo "$name: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
