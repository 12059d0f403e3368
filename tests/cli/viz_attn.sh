#!/usr/bin/env bash
# st-viz-attn draws what it is asked, at the size it should: attention sets of a pattern and of a
# model, a text model's and an image model's learned attention (from raw records and from a PNG),
# each checked by the width and height in its PNG header. Bad input gets one stderr line
# "st-viz-attn: ...", exit 1 (runtime) or 2 (usage), and leaves no output file behind.
#
# Usage: viz_attn.sh BUILD_DIR
. "$(dirname "$0")/lib/cases.sh" "$@"

tiny=(--steps 2 --layers 1 --d-model 32 --heads 2 --ctx 64 --batch 2 --eval-windows 2)
# The grid's layout (libst/viz.h): 8 pixels around and between panels, 24 for a label or the title.
pad=8 label=24

# "WIDTHxHEIGHT" from a PNG's IHDR chunk, or "not a PNG".
png_size() {  # FILE
    [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = 89504e470d0a1a0a ] || { echo "not a PNG"; return; }
    od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%dx%d\n", (($1 * 256 + $2) * 256 + $3) * 256 + $4, (($5 * 256 + $6) * 256 + $7) * 256 + $8 }'
}

# Runs CMD -o out.png; the PNG must have height HEIGHT and a width of WIDTH, or at least -WIDTH
# (where the title may be wider than the panels).
expect_png() {  # NAME WIDTH HEIGHT -- CMD...
    local name=$1 w=$2 h=$3 size
    shift 4
    rm -f out.png
    if ! "$@" -o out.png 2> "$tmp/stderr"; then
        problems+=("exit status $?")
    elif [ -s "$tmp/stderr" ]; then
        problems+=("wrote to stderr")
    else
        size=$(png_size out.png)
        if [ "${w#-}" = "$w" ]; then
            [ "$size" = "${w}x$h" ] || problems+=("size $size, expected ${w}x$h")
        else
            [ "${size#*x}" = "$h" ] && [ "${size%x*}" -ge "${w#-}" ] || problems+=("size $size, expected at least ${w#-} wide and $h high")
        fi
    fi
    report "$name" "$tmp/stderr"
}

# One refusal (cases.sh's check_refusal) that leaves no out.png and no temporary file behind.
expect_fail() {  # NAME WANT PATTERN -- CMD...
    local name=$1 want=$2 pattern=$3
    shift 4
    rm -f out.png
    check_refusal "$want" "$pattern" "$@"
    [ ! -e out.png ] || problems+=("out.png was left behind")
    [ -z "$(find . -name '*.tmp.*')" ] || problems+=("temporary files left behind")
    report "$name" "$tmp/stderr"
}

# A grey PNG of W x H pixels (a gradient): a picture file for the image model.
write_grey_png() {  # OUT W H
    "$py" - "$1" "$2" "$3" <<'EOF'
import struct, sys, zlib
w, h = int(sys.argv[2]), int(sys.argv[3])
raw = b"".join(b"\0" + bytes((x * 32 + y * 4) % 256 for x in range(w)) for y in range(h))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
EOF
}

require_programs st-viz-attn
cat /usr/share/common-licenses/* 2>/dev/null | head -c 100000 > text.txt
[ "$(wc -c < text.txt)" -ge 50000 ] || yes "the quick brown fox jumps over the lazy dog." | head -c 100000 > text.txt
head -c 20 text.txt > short.txt
head -c $((300 * 64)) /dev/urandom > images.bin   # 300 records of 8x8x1
if ! st-train -q "${tiny[@]}" -o text.st text.txt ||
    ! st-train -q --steps 2 --layers 2 --d-model 32 --heads 2 --image 8x8x1 --pattern strided --batch 2 --eval-windows 2 -o image.st images.bin ||
    ! write_grey_png eight.png 8 8 || ! write_grey_png four.png 4 4; then
    echo "viz_attn: could not make the test files" >&2
    exit 1
fi

# ---- attention sets: panels of n * scale pixels (scale 256 / n by default) under a label ----
expect_png "sets of a pattern: 2 x 2 panels of 64 positions at 4 pixels" -$((pad + 2 * (256 + pad))) $((pad + label + 2 * (label + 256 + pad))) -- \
    st-viz-attn --pattern strided --mode interleaved --ctx 64 --stride 8 --layers 2 --heads 2
expect_png "sets of a pattern: --window 32 --scale 2, 3 layers x 1 head" -$((pad + 64 + pad)) $((pad + label + 3 * (label + 64 + pad))) -- \
    st-viz-attn --pattern fixed --ctx 128 --stride 16 --summary 4 --layers 3 --heads 1 --window 32 --scale 2
expect_png "sets of a model (1 layer, 2 heads, context 64)" -$((pad + 2 * (256 + pad))) $((pad + label + label + 256 + pad)) -- \
    st-viz-attn text.st
expect_png "sets of a model, one head" -$((pad + 256 + pad)) $((pad + label + label + 256 + pad)) -- st-viz-attn text.st --heads 1

# ---- learned attention ----
# Text: the query is the last of 64 positions, in one row of the stride (64) at 6 pixels a position.
expect_png "text model: 2 heads of the last position" $((pad + 2 * (384 + pad))) $((pad + label + label + 6 + pad)) -- \
    st-viz-attn text.st --input text.txt
expect_png "text model: --style weights (its only style)" $((pad + 2 * (384 + pad))) $((pad + label + label + 6 + pad)) -- \
    st-viz-attn text.st --input text.txt --style weights
expect_png "text model: --at 10 --layers 0 --heads 1 --scale 3" -$((pad + 192 + pad)) $((pad + label + label + 3 + pad)) -- \
    st-viz-attn text.st --input text.txt --at 10 --layers 0 --heads 1 --scale 3
# Images: 8 x 8 panels at 16 pixels a pixel; a column for the input beside the heads. The weights are
# drawn over the picture (--style overlay) unless --style weights asks for them alone: the same
# layout, other pixels.
expect_png "image model: records, --pixel 5,3 (overlay, the default)" -$((pad + 3 * (128 + pad))) $((pad + label + 2 * (label + 128 + pad))) -- \
    st-viz-attn image.st --input images.bin --pixel 5,3
cp out.png default.png
expect_png "image model: --style overlay" -$((pad + 3 * (128 + pad))) $((pad + label + 2 * (label + 128 + pad))) -- \
    st-viz-attn image.st --input images.bin --pixel 5,3 --style overlay
cmp -s out.png default.png || problems+=("--style overlay is not the default")
report "image model: --style overlay is the default"
expect_png "image model: --style weights" -$((pad + 3 * (128 + pad))) $((pad + label + 2 * (label + 128 + pad))) -- \
    st-viz-attn image.st --input images.bin --pixel 5,3 --style weights
! cmp -s out.png default.png || problems+=("--style weights draws the same picture as the overlay")
report "image model: --style weights draws other pixels"
expect_png "image model: record 7, --at 20, layer 1, head 0" -$((pad + 2 * (128 + pad))) $((pad + label + label + 128 + pad)) -- \
    st-viz-attn image.st --input images.bin --record 7 --at 20 --layers 1 --heads 0
expect_png "image model: a PNG as input" -$((pad + 3 * (128 + pad))) $((pad + label + 2 * (label + 128 + pad))) -- \
    st-viz-attn image.st --input eight.png --pixel 0,0

st-viz-attn text.st -o - > stdout.png 2> "$tmp/stderr" || problems+=("-o - fails")
st-viz-attn text.st -o out.png 2>> "$tmp/stderr" || problems+=("-o out.png fails")
cmp -s stdout.png out.png || problems+=("-o - and -o FILE differ")
report "-o - writes the same PNG to stdout" "$tmp/stderr"

# ---- bad input ----
expect_fail "missing model" 1 "missing\.st: No such file or directory" -- st-viz-attn missing.st -o out.png
expect_fail "missing model (learned)" 1 "missing\.st: No such file or directory" -- st-viz-attn missing.st --input text.txt -o out.png
expect_fail "missing input" 1 "missing\.txt: No such file or directory" -- st-viz-attn text.st --input missing.txt -o out.png
expect_fail "--at beyond the context" 2 "--at 64: must be between 0 and 63" -- st-viz-attn text.st --input text.txt --at 64 -o out.png
expect_fail "--at beyond the input" 1 "short\.txt: 20 bytes; --at 30 needs at least 31" -- st-viz-attn text.st --input short.txt --at 30 -o out.png
expect_fail "--pixel outside the image" 2 "--pixel 8,0: expected ROW,COL" -- st-viz-attn image.st --input images.bin --pixel 8,0 -o out.png
expect_fail "--pixel on a text model" 2 "--pixel: only for image models" -- st-viz-attn text.st --input text.txt --pixel 1,1 -o out.png
expect_fail "--style overlay on a text model" 2 "--style overlay: only for image models" -- \
    st-viz-attn text.st --input text.txt --style overlay -o out.png
expect_fail "--style unknown" 2 "--style heat: expected overlay or weights" -- \
    st-viz-attn image.st --input images.bin --style heat -o out.png
expect_fail "--style without --input" 2 "--style: only with --input" -- st-viz-attn image.st --style weights -o out.png
expect_fail "a picture of the wrong size" 1 "four\.png: a 4x4 picture, the model takes 8x8" -- \
    st-viz-attn image.st --input four.png -o out.png
expect_fail "--record beyond the input" 1 "images\.bin: 300 records of 64 bytes; --record 300 is beyond them" -- \
    st-viz-attn image.st --input images.bin --record 300 -o out.png
expect_fail "--layers beyond the model" 2 "--layers 1: must be between 0 and 0" -- st-viz-attn text.st --layers 0,1 -o out.png
expect_fail "--pattern unknown" 2 "--pattern sparse: expected dense, local, fixed or strided" -- st-viz-attn --pattern sparse -o out.png
expect_fail "--stride not dividing the context" 2 "stride 96 does not divide the context 256" -- st-viz-attn --stride 96 -o out.png
expect_fail "--summary not dividing the stride" 2 "summary 24 does not divide the stride 64" -- st-viz-attn --summary 24 -o out.png
expect_fail "--pattern with a model" 2 "--pattern: not with MODEL" -- st-viz-attn text.st --pattern dense -o out.png
expect_fail "--input without a model" 2 "--input needs MODEL" -- st-viz-attn --input text.txt -o out.png
expect_fail "--window beyond the context" 2 "--window 65: must be between 1 and 64" -- st-viz-attn text.st --window 65 -o out.png
expect_fail "no -o" 2 "missing -o FILE" -- st-viz-attn text.st
# The sets of 2^20 positions drawn whole: terabytes, refused before a panel is drawn; under 4 GiB,
# where a drawing that was not checked first fails at once.
limit_memory 4096
expect_fail "--window past the PNG limits" 1 \
    "out\.png: a [0-9]+x[0-9]+x3 picture is more than st handles: .*; use a smaller --scale or fewer --layers or --heads, or a smaller --window" -- \
    st-viz-attn --ctx 1048576 --window 1048576 --layers 1 --heads 1 -o out.png
unlimit_memory

if have_terminal; then
    on_terminal "$tmp/stderr" "$build/st-viz-attn text.st -o -"
    check_status $? 1
    grep -q "^st-viz-attn: refusing to write a PNG to a terminal" "$tmp/stderr" || problems+=("no refusal on stderr")
    check_empty_stdout "$tmp/tty"
    report "-o - to a terminal is refused" "$tmp/stderr"
fi

echo "viz-attn: $passed passed, $failed failed (${SECONDS}s)"
[ "$failed" -eq 0 ]
