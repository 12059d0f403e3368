#!/usr/bin/env bash
# st-complete: tiny image models (8x8x1 and 4x4x3, trained here on random bytes) complete pictures
# given as PNG files, as raw --records and as records on stdin. A grid case checks the PNG's size
# from its IHDR against the grid's formula (image_grid: pad = 2 * scale around and between cells,
# each cell H*scale x W*scale; a row per picture, the original then -k completions), and its pixels,
# decoded here by a PNG reader of its own (python3 and zlib, no imaging library): the first cell of
# a row is the original, the kept top rows of every completion are the original's, and the row
# after them was drawn. A refusal case is a command, its exit status (1 runtime error, 2 usage
# error), a pattern its stderr must match (exactly one line, "st-complete: ...") and what it must
# not leave behind (a PNG outside fixtures/, a temporary "*.tmp.*", bytes on stdout).
#
# Usage: complete.sh BUILD_DIR
. "$(dirname "$0")/lib/cases.sh" "$@"

# Models small enough to train in a fraction of a second (strided: the fixed pattern's summary of 16
# does not divide rows of 8 or 12 bytes).
tiny=(--pattern strided --steps 5 --layers 1 --d-model 32 --batch 4 --eval-windows 4)

# ---- checks: each adds to problems[] what it finds wrong ----

# No PNG file but the fixtures (fixtures/), no temporary file.
check_nothing_left() {
    local left
    left=$(find . -path ./fixtures -prune -o -type f \( -name '*.png' -o -name '*.tmp.*' \) -print | head -n 3)
    [ -z "$left" ] || problems+=("left behind: $(echo $left)")
}

# The grid PNG holds N rows of 1 + K cells of H x W x C pictures, each SCALE times larger: its IHDR
# says so, and its pixels are those of the first N records of RECORDS with KEEP top rows kept in
# every completion (WHOLE: every completion is the original).
check_grid() {  # PNG RECORDS N K H W C SCALE KEEP [whole]
    local png=$1 rec=$2 n=$3 k=$4 h=$5 w=$6 c=$7 s=$8 keep=$9 whole=${10:-} pad got want
    pad=$((2 * s))
    want="$(((k + 1) * w * s + (k + 2) * pad)) $((n * h * s + (n + 1) * pad)) $c"
    got=$("$py" "$tmp/grid.py" ihdr "$png" 2>&1)
    [ "$got" = "$want" ] || problems+=("$png: IHDR width, height, channels are \"$got\", expected \"$want\"")
    local line
    while IFS= read -r line; do
        problems+=("$png: $line")
    done < <("$py" "$tmp/grid.py" cells "$png" "$rec" "$n" "$k" "$h" "$w" "$c" "$s" "$keep" $whole 2>&1)
}

# One completion run that must succeed: CMD... exits 0; its stderr is kept in $tmp/stderr.
run_ok() {  # CMD...
    "$@" 2> "$tmp/stderr" < /dev/null
    check_status $? 0
}

# ---- fixtures: models, records and the PNG files of the same pixels; the grid reader ----

make_fixtures() {
    mkdir fixtures && "$py" - <<'EOF' || return 1
def pixels(n, seed):
    return bytes((i * 37 + seed * 101) % 251 for i in range(n))

# 5 grey 8x8 pictures, 3 RGB 4x4 ones; 100 bytes that are no whole number of either.
open("fixtures/grey.rec", "wb").write(pixels(5 * 64, 1))
open("fixtures/rgb.rec", "wb").write(pixels(3 * 48, 2))
open("fixtures/odd.rec", "wb").write(pixels(100, 3))
open("fixtures/text.txt", "wb").write(b"plain text, not a picture\n" * 400)
EOF
    (cd fixtures &&
        st-image decode -q --size 8x8x1 -o 'g-%d.png' grey.rec &&
        st-image decode -q --size 4x4x3 -o 'c-%d.png' rgb.rec &&
        head -c $(($(wc -c < g-0.png) / 2)) g-0.png > corrupt.png &&
        head -c 64000 /dev/urandom | st-train -q --image 8x8x1 "${tiny[@]}" -o grey.st - &&
        head -c 48000 /dev/urandom | st-train -q --image 4x4x3 "${tiny[@]}" -o rgb.st - &&
        st-train -q "${tiny[@]}" --ctx 64 -o text.st text.txt) || return 1

    cat > "$tmp/grid.py" <<'EOF'
# grid.py ihdr PNG: prints the PNG's width, height and channels.
# grid.py cells PNG RECORDS N K H W C SCALE KEEP [whole]: prints, one a line, what is wrong with the grid.
import struct, sys, zlib

def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit("not a PNG file")
    pos, idat, ihdr = 8, b"", None
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]:
            sys.exit("bad CRC in a %s chunk" % kind.decode())
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or interlace != 0 or ctype not in (0, 2, 4, 6):
        sys.exit("unexpected IHDR: depth %d, colour type %d, interlace %d" % (depth, ctype, interlace))
    return w, h, {0: 1, 2: 3, 4: 2, 6: 4}[ctype], idat

def unfilter(w, h, c, idat):
    raw, stride, out = zlib.decompress(idat), w * c, bytearray()
    prev = bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - c] if i >= c else 0
            b = prev[i]
            d = prev[i - c] if i >= c else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - d
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - d)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else d)) & 255
        out += line
        prev = line
    return bytes(out)

if sys.argv[1] == "ihdr":
    w, h, c, _ = read_png(sys.argv[2])
    print(w, h, c)
    sys.exit()
png, records = sys.argv[2], open(sys.argv[3], "rb").read()
n, k, h, w, c, s, keep = map(int, sys.argv[4:11])
whole = len(sys.argv) > 11
gw, gh, gc, idat = read_png(png)
px, pad, size = unfilter(gw, gh, gc, idat), 2 * s, h * w * c
cols = k + 1

def cell(p, j):
    # The picture in row p, column j, one pixel per SCALE x SCALE square (which must be of one colour).
    top, left, out = pad + p * (h * s + pad), pad + j * (w * s + pad), bytearray()
    for y in range(h):
        for x in range(w):
            first = px[((top + y * s) * gw + left + x * s) * c:((top + y * s) * gw + left + x * s + 1) * c]
            for dy in range(s):
                for dx in range(s):
                    o = ((top + y * s + dy) * gw + left + x * s + dx) * c
                    if px[o:o + c] != first:
                        print("cell %d,%d: pixel %d,%d is not one %dx%d square" % (p, j, y, x, s, s))
                        return bytes(out)
            out += first
    return bytes(out)

# The padding: every pixel outside the cells is white.
inside = bytearray(gw * gh)
for p in range(n):
    for j in range(cols):
        top, left = pad + p * (h * s + pad), pad + j * (w * s + pad)
        for y in range(top, top + h * s):
            inside[y * gw + left:y * gw + left + w * s] = b"\1" * (w * s)
if any(not inside[i] and px[i * c:(i + 1) * c] != b"\xff" * c for i in range(gw * gh)):
    print("a pixel of the padding is not white")

kept, drawn_differs = keep * w * c, False
for p in range(n):
    original = records[p * size:(p + 1) * size]
    if cell(p, 0) != original:
        print("row %d: the first cell is not picture %d" % (p, p))
    for j in range(1, cols):
        got = cell(p, j)
        if got[:kept] != original[:kept]:
            print("row %d, completion %d: the top %d rows are not the original's" % (p, j, keep))
        if whole and got != original:
            print("row %d, completion %d: not the original" % (p, j))
        if keep < h and got[kept:kept + w * c] != original[kept:kept + w * c]:
            drawn_differs = True
if keep < h and not drawn_differs:
    print("row %d (the first drawn) is the original's in every completion: more rows kept than %d?" % (keep, keep))
EOF
}

# ---- cases ----

grid_cases() {
    local g=fixtures/grey.st pngs=(fixtures/g-0.png fixtures/g-1.png fixtures/g-2.png fixtures/g-3.png fixtures/g-4.png)

    run_ok st-complete --count 2 -k 2 --scale 3 -o out.png $g "${pngs[@]}"
    check_stderr_line "$tmp/stderr" st-complete "^st-complete: 4 completions of 32 bytes each in [0-9.]+ s on the (CPU|GPU); wrote out\.png \(66x96\)$"
    check_grid out.png fixtures/grey.rec 2 2 8 8 1 3 4
    rm -f out.png
    report "PNG files: --count 2 of 5, -k 2, --scale 3; the summary line (height x width)" "$tmp/stderr"

    run_ok st-complete -q --records --keep 0.3 -k 3 -o out.png $g fixtures/grey.rec
    [ ! -s "$tmp/stderr" ] || problems+=("-q: something on stderr")
    check_grid out.png fixtures/grey.rec 5 3 8 8 1 12 2
    rm -f out.png
    report "--records: all 5 pictures, -k 3, --keep 0.3 (2 rows), the default scale (12 for 8x8)" "$tmp/stderr"

    "$build/st-complete" -q --records --count 2 -k 1 --scale 1 -o out.png $g - < fixtures/grey.rec 2> "$tmp/stderr"
    check_status $? 0
    check_grid out.png fixtures/grey.rec 2 1 8 8 1 1 4
    rm -f out.png
    report "--records from stdin: --count 2, -k 1, --scale 1" "$tmp/stderr"

    run_ok st-complete -q -k 2 --scale 2 -o out.png fixtures/rgb.st fixtures/c-0.png fixtures/c-1.png fixtures/c-2.png
    check_grid out.png fixtures/rgb.rec 3 2 4 4 3 2 2
    rm -f out.png
    run_ok st-complete -q --records --count 2 --keep 0.75 -o out.png fixtures/rgb.st fixtures/rgb.rec
    check_grid out.png fixtures/rgb.rec 2 4 4 4 3 24 3
    rm -f out.png
    report "colour 4x4x3: PNG files (--scale 2) and --records (--keep 0.75, the default scale 24)" "$tmp/stderr"

    run_ok st-complete -q --keep 1 -k 3 --scale 2 -o out.png $g "${pngs[@]}"
    check_grid out.png fixtures/grey.rec 5 3 8 8 1 2 8 whole
    rm -f out.png
    report "--keep 1: every completion is the original" "$tmp/stderr"

    run_ok st-complete -q --keep 0 -k 2 --scale 2 -o out.png $g fixtures/g-0.png fixtures/g-1.png
    check_grid out.png fixtures/grey.rec 2 2 8 8 1 2 0
    rm -f out.png
    report "--keep 0: whole pictures drawn" "$tmp/stderr"
}

seed_cases() {
    local g=fixtures/grey.st
    run_ok st-complete -q --seed 5 --scale 1 -o a.png $g fixtures/g-0.png fixtures/g-1.png
    run_ok st-complete -q --seed 5 --scale 1 -o b.png $g fixtures/g-0.png fixtures/g-1.png
    run_ok st-complete -q --seed 6 --scale 1 -o c.png $g fixtures/g-0.png fixtures/g-1.png
    cmp -s a.png b.png || problems+=("--seed 5 twice gives different PNG files")
    cmp -s a.png c.png && problems+=("--seed 5 and --seed 6 give the same PNG file")
    "$build/st-complete" -q --seed 5 --scale 1 -o - $g fixtures/g-0.png fixtures/g-1.png > d.png 2> "$tmp/stderr" < /dev/null
    check_status $? 0
    cmp -s a.png d.png || problems+=("-o - to a pipe writes other bytes than -o FILE")
    rm -f a.png b.png c.png d.png
    report "the same --seed gives the same PNG, another seed another; -o - to a pipe" "$tmp/stderr"
}

refusals() {
    local g=fixtures/grey.st
    expect_fail "a text model" 1 "fixtures/text\.st: not an image model" -- \
        st-complete -o out.png fixtures/text.st fixtures/g-0.png
    expect_fail "a picture of another size" 1 "fixtures/c-0\.png: a picture of 4x4x3, the model draws 8x8x1" -- \
        st-complete -o out.png $g fixtures/g-0.png fixtures/c-0.png
    expect_fail "a picture of other channels" 1 "fixtures/g-0\.png: a picture of 8x8x1, the model draws 4x4x3" -- \
        st-complete -o out.png fixtures/rgb.st fixtures/g-0.png
    expect_fail "--records not a whole number of pictures" 1 "fixtures/odd\.rec: 100 bytes is not a whole number of 8x8x1 records" -- \
        st-complete --records -o out.png $g fixtures/odd.rec
    expect_fail "--records from empty stdin" 1 "stdin: no pictures" -- st-complete --records -o out.png $g -
    expect_fail "a missing picture" 1 "missing\.png: No such file or directory" -- st-complete -o out.png $g fixtures/g-0.png missing.png
    expect_fail "a missing model" 1 "missing\.st: No such file or directory" -- st-complete -o out.png missing.st fixtures/g-0.png
    expect_fail "a corrupt (truncated) PNG" 1 "fixtures/corrupt\.png: corrupted or truncated PNG" -- \
        st-complete -o out.png $g fixtures/corrupt.png
    expect_fail "not a picture" 1 "fixtures/text\.txt: not an image" -- st-complete -o out.png $g fixtures/text.txt
    expect_fail "-o into a missing directory" 1 "no/such/out\.png: No such file or directory" -- \
        st-complete -o no/such/out.png $g fixtures/g-0.png
    # 5 pictures and 1024 completions of each, 64 times larger: a grid 656128 pixels wide, past what
    # the PNG writer takes. Refused before the 5120 completions are drawn; under 4 GiB, where the
    # grid of 2.2 GB that was not checked first fails at once.
    limit_memory 4096
    expect_fail "a grid past the PNG limits" 1 \
        "out\.png: a 3328x656128x1 picture is more than st handles: .*; use a smaller --scale, fewer --samples or a smaller --count" -- \
        st-complete -k 1024 --scale 64 --records -o out.png $g fixtures/grey.rec
    unlimit_memory
    if ! nvidia-smi -L > /dev/null 2>&1; then   # a machine without a GPU (CI): asking for one fails cleanly
        expect_fail "--device cuda without a GPU" 1 "no CUDA (GPU found|support)" -- \
            st-complete --device cuda -o out.png $g fixtures/g-0.png
    fi

    expect_fail "--keep 2" 2 "--keep 2: must be between 0 and 1" -- st-complete --keep 2 -o out.png $g fixtures/g-0.png
    expect_fail "-k 0" 2 "--samples 0: must be between 1 and 1024" -- st-complete -k 0 -o out.png $g fixtures/g-0.png
    expect_fail "--count 0" 2 "--count 0: must be between 1 and" -- st-complete --count 0 -o out.png $g fixtures/g-0.png
    # Refused before a file is read (not after the completions are drawn): the model here is missing.
    expect_fail "--scale 0" 2 "--scale 0: must be between 1 and 64" -- st-complete --scale 0 -o out.png missing.st fixtures/g-0.png
    expect_fail "--top-p 0" 2 "--top-p 0: must be between" -- st-complete --top-p 0 -o out.png $g fixtures/g-0.png
    expect_fail "no -o" 2 "missing -o OUT\.png" -- st-complete $g fixtures/g-0.png
    expect_fail "no picture" 2 "usage: st-complete MODEL PICTURE\.\.\. -o OUT\.png" -- st-complete -o out.png $g
    expect_fail "an unknown option" 2 "bogus" -- st-complete --bogus -o out.png $g fixtures/g-0.png

    # A failed run leaves the grid it would have replaced as it was.
    cp fixtures/g-1.png fixtures/keep.png
    expect_fail "a failed run keeps the old grid" 1 "missing\.png: No such file or directory" -- \
        st-complete -o fixtures/keep.png $g missing.png
    cmp -s fixtures/g-1.png fixtures/keep.png || problems+=("fixtures/keep.png was changed")
    report "a failed run: the old grid is unchanged"
}

terminal_cases() {
    have_terminal || return
    check_terminal_refusal st-complete "refusing to write a PNG to a terminal" "$build/st-complete -o - fixtures/grey.st fixtures/g-0.png"
    check_nothing_left
    report "-o - to a terminal" "$tmp/stderr"
}

# ---- main ----

require_programs st-complete st-image st-train
require_fixtures
grid_cases
seed_cases
refusals
terminal_cases
echo "st-complete: $passed passed, $failed failed (${SECONDS}s)"
[ "$failed" -eq 0 ]
