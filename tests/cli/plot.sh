#!/usr/bin/env bash
# st-plot draws what it is asked, at the size it is asked: two logs (made here, and one st-train
# wrote) as a PNG whose header has the width and height wanted and whose plot area holds pixels of
# each run's colour. A bad log (empty, not JSON, no loss, missing, ...) or bad options get one stderr
# line "st-plot: ...", exit 1 (runtime) or 2 (usage), and leave no PNG and no temporary file.
#
# Usage: plot.sh BUILD_DIR
. "$(dirname "$0")/lib/cases.sh" "$@"

# The colours of the first two runs (libst/plot.cpp's run_colour): Okabe and Ito's blue and vermillion.
blue=0,114,178 vermillion=213,94,0

# A log as st-train writes it: STEPS steps whose bits per byte fall from FIRST to LAST, MS
# milliseconds each, and a held-out line every 10 steps.
write_log() {  # OUT FIRST LAST STEPS MS
    awk -v first="$2" -v last="$3" -v n="$4" -v ms="$5" 'BEGIN {
        for (s = 1; s <= n; s++) {
            b = first + (last - first) * (s - 1) / (n - 1)
            printf "{\"step\":%d,\"loss\":%.6f,\"bits\":%.6f,\"lr\":0.001,\"grad_norm\":0.5,\"tokens_per_s\":10000,\"ms\":%s}\n", s, b * log(2), b, ms
            if (s % 10 == 0) printf "{\"step\":%d,\"val_loss\":%.6f,\"val_bits\":%.6f}\n", s, (b + 0.1) * log(2), b + 0.1
        }
    }' > "$1"
}

# "WIDTHxHEIGHT" of an 8-bit RGB PNG, then how many pixels below its first 60 rows (where the title
# and a legend of one row are) have each colour "R,G,B" given; "not a PNG" for anything else.
png_info() {  # FILE [R,G,B...]
    "$py" - "$@" <<'EOF'
import collections, struct, sys, zlib
data = open(sys.argv[1], "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit(print("not a PNG"))
at, idat = 8, b""
while at < len(data):
    n, kind = struct.unpack(">I4s", data[at:at + 8])
    body, at = data[at + 8:at + 8 + n], at + 12 + n
    if kind == b"IHDR":
        w, h, depth, kind_of_colour = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
print(f"{w}x{h}")
if len(sys.argv) == 2:
    sys.exit()
assert depth == 8 and kind_of_colour == 2, "not 8-bit RGB"
raw, stride, prev, pixels = zlib.decompress(idat), 3 * w, bytearray(3 * w), collections.Counter()
for y in range(h):  # undo each row's filter (PNG specification, section 9)
    f, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for x in range(stride):
        a, b, c = row[x - 3] if x >= 3 else 0, prev[x], prev[x - 3] if x >= 3 else 0
        p = a + b - c
        row[x] = (row[x] + [0, a, b, (a + b) // 2,
                            a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c][f]) & 255
    if y >= 60:
        pixels.update(bytes(row[x:x + 3]) for x in range(0, stride, 3))
    prev = row
for colour in sys.argv[2:]:
    print(pixels[bytes(int(v) for v in colour.split(","))])
EOF
}

check_nothing_left() {
    [ ! -e out.png ] || problems+=("out.png was left behind")
    [ -z "$(find . -name '*.tmp.*')" ] || problems+=("temporary files left behind")
    rm -f out.png
}

# Runs CMD -o out.png; the PNG must be WIDTH x HEIGHT and hold pixels of each COLOUR (a
# comma-separated list of "R,G,B" in the quotes, or "").
expect_png() {  # NAME WIDTH HEIGHT COLOURS -- CMD...
    local name=$1 size="$2x$3" colours=$4 info colour
    shift 5
    "$@" -o out.png 2> "$tmp/stderr"
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        problems+=("exit status $rc")
    elif [ -s "$tmp/stderr" ]; then
        problems+=("wrote to stderr")
    else
        mapfile -t info < <(png_info out.png ${colours//;/ })
        [ "${info[0]:-}" = "$size" ] || problems+=("size ${info[0]:-none}, expected $size")
        local k=1
        for colour in ${colours//;/ }; do
            [ "${info[$k]:-0}" -gt 50 ] || problems+=("${info[$k]:-no} pixels of colour $colour in the plot")
            k=$((k + 1))
        done
    fi
    rm -f out.png
    report "$name" "$tmp/stderr"
}

require_programs st-plot st-train
cat /usr/share/common-licenses/* 2>/dev/null | head -c 100000 > text.txt
[ "$(wc -c < text.txt)" -ge 50000 ] || yes "the quick brown fox jumps over the lazy dog." | head -c 100000 > text.txt
write_log a.jsonl 8 3 120 50
write_log b.jsonl 7 1.5 80 90
if ! st-train -q --steps 6 --layers 1 --d-model 32 --heads 2 --ctx 64 --batch 2 --eval-windows 2 --eval-every 2 \
    --log real.jsonl -o real.st text.txt; then
    echo "plot: could not make the test files" >&2
    exit 1
fi

# ---- pictures ----
expect_png "two logs: both panels, 1280x480 by default" 1280 480 "$blue;$vermillion" -- st-plot a.jsonl b.jsonl
expect_png "--show train: one panel, 640 wide by default" 640 480 "$blue;$vermillion" -- \
    st-plot --show train a.jsonl b.jsonl
expect_png "--show held-out --against time --width 700 --height 300, labels and a title" 700 300 \
    "$blue;$vermillion" -- st-plot --show held-out --against time --width 700 --height 300 --labels "run a,run b" \
    --title "held-out" a.jsonl b.jsonl
expect_png "--unit dim (an image model's bits per dim)" 640 480 "$blue" -- st-plot --show train --unit dim a.jsonl
expect_png "a log st-train wrote, and one from stdin" 1280 480 "$blue;$vermillion" -- \
    sh -c 'st-plot real.jsonl - "$@" < b.jsonl' sh
expect_png "a log still being written (its last line cut short)" 640 480 "$blue" -- \
    sh -c 'head -c -20 a.jsonl > live.jsonl && st-plot --show train live.jsonl "$@"' sh
cp b.jsonl "b, again.jsonl"
expect_png "a log whose name has a comma" 1280 480 "$blue;$vermillion" -- st-plot a.jsonl "b, again.jsonl"
if command -v zstd > /dev/null; then
    zstd -q -f a.jsonl
    expect_png "a log compressed with zstd" 640 480 "$blue" -- st-plot --show train a.jsonl.zst
fi

{ head -n 5 a.jsonl; echo '{"step":6,"loss":null,"ms":50}'; echo '{"step":7,"val_loss":"?"}'; } > gaps.jsonl
st-plot gaps.jsonl -o out.png 2> "$tmp/stderr" || problems+=("exit status $?")
check_stderr_line "$tmp/stderr" st-plot "^st-plot: gaps\.jsonl: 2 lines left out: a loss that is null"
st-plot -q gaps.jsonl -o out.png 2> "$tmp/stderr" || problems+=("-q: exit status $?")
[ ! -s "$tmp/stderr" ] || problems+=("-q: wrote to stderr")
rm -f out.png
report "losses that are not numbers: left out, and said so unless -q" "$tmp/stderr"

st-plot a.jsonl b.jsonl -o - > stdout.png 2> "$tmp/stderr" || problems+=("-o - fails")
st-plot a.jsonl b.jsonl -o out.png 2>> "$tmp/stderr" || problems+=("-o out.png fails")
check_same_file stdout.png out.png
rm -f out.png
report "-o - writes the same PNG to stdout" "$tmp/stderr"

# ---- bad logs: one line naming the log, exit 1, no PNG ----
: > empty.jsonl
echo "hello" > words.jsonl
printf '{"step":1,"loss":5.5}\n\001\377{\n' > binary.jsonl
echo '{"step":1,"val_loss":2.0,"val_bits":2.9}' > noloss.jsonl
printf '{"step":1,"loss":null}\n{"step":2,"loss":"nan"}\n' > nulls.jsonl
printf '{"step":1,"loss":2.0}\n' > untimed.jsonl
{ printf '{"step":1,"loss":2.0,"pad":"'; head -c 70000 /dev/zero | tr '\0' x; printf '"}\n'; } > long.jsonl
expect_fail "an empty log" 1 "^st-plot: empty\.jsonl: empty: no lines to plot$" -- st-plot empty.jsonl -o out.png
expect_fail "an empty stdin" 1 "^st-plot: stdin: empty" -- st-plot - -o out.png
expect_fail "a log of words" 1 "words\.jsonl: line 1: not valid JSON" -- st-plot words.jsonl -o out.png
expect_fail "a log with bytes that are not JSON" 1 "binary\.jsonl: line 2: not valid JSON" -- st-plot binary.jsonl -o out.png
expect_fail "a log without a loss" 1 "noloss\.jsonl: no line has a \"loss\"" -- st-plot noloss.jsonl -o out.png
expect_fail "a log whose losses are not numbers" 1 "nulls\.jsonl: none of its 2 training losses can be drawn" -- \
    st-plot nulls.jsonl -o out.png
expect_fail "a line of 70000 bytes" 1 "long\.jsonl: line 1: longer than 65536 bytes" -- st-plot long.jsonl -o out.png
expect_fail "a missing log" 1 "missing\.jsonl: No such file or directory" -- st-plot missing.jsonl -o out.png
expect_fail "a bad log after one with lines left out" 1 "^st-plot: empty\.jsonl: " -- \
    st-plot gaps.jsonl empty.jsonl -o out.png
expect_fail "--against time on a log without step times" 1 "untimed\.jsonl: no line has an \"ms\"" -- \
    st-plot --against time untimed.jsonl -o out.png
expect_fail "-o naming a log" 1 "-o a\.jsonl: the same file as a LOG" -- st-plot a.jsonl -o a.jsonl
expect_fail "a picture too small for two panels" 1 "no room for the curves" -- \
    st-plot --width 160 --height 120 a.jsonl -o out.png

# ---- usage ----
expect_fail "no -o" 2 "missing -o FILE" -- st-plot a.jsonl
expect_fail "no log" 2 "missing LOG" -- st-plot -o out.png
expect_fail "--against unknown" 2 "--against epoch: expected step or time" -- st-plot --against epoch a.jsonl -o out.png
expect_fail "--unit unknown" 2 "--unit pixel: expected byte or dim" -- st-plot --unit pixel a.jsonl -o out.png
expect_fail "--show unknown" 2 "--show bits: expected train, held-out or both" -- st-plot --show bits a.jsonl -o out.png
expect_fail "--labels not one a log" 2 "--labels: 1 names for 2 logs" -- st-plot --labels one a.jsonl b.jsonl -o out.png
expect_fail "nine logs" 2 "9 logs: at most 8 on one plot" -- st-plot a.jsonl a.jsonl a.jsonl a.jsonl a.jsonl \
    a.jsonl a.jsonl a.jsonl b.jsonl -o out.png
expect_fail "stdin twice" 2 "- \(stdin\) given twice" -- st-plot - - -o out.png
expect_fail "--width out of range" 2 "--width 100: must be between 160 and 8192" -- st-plot --width 100 a.jsonl -o out.png

if have_terminal; then
    check_terminal_refusal st-plot "refusing to write a PNG to a terminal" "$build/st-plot a.jsonl -o -"
    report "-o - to a terminal is refused" "$tmp/stderr"
fi

echo "plot: $passed passed, $failed failed (${SECONDS}s)"
[ "$failed" -eq 0 ]
