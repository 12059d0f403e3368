#!/usr/bin/env bash
# st-image: pictures become the bytes they should, records come back as the pictures they were, and
# bad input gets a clean refusal. A round trip case compares bytes; a refusal case is a command, the
# exit status it must give (1 runtime error, 2 usage error), a pattern its stderr must match (exactly
# one line, "st-image: ..."), and what it must not leave behind (bytes on stdout, PNG files,
# temporaries "*.tmp.*"). The fixtures are written here by hand (python3, no imaging library),
# the hostile ones too: pictures cut short, headers that claim more pixels than their file holds.
#
# Usage: image.sh BUILD_DIR
. "$(dirname "$0")/lib/cases.sh" "$@"

# ---- checks: each adds to problems[] what it finds wrong ----

# No PNG file but the fixtures (fixtures/), no temporary file.
check_nothing_left() {
    local left
    left=$(find . -path ./fixtures -prune -o -type f \( -name '*.png' -o -name '*.tmp.*' \) -print | head -n 3)
    [ -z "$left" ] || problems+=("left behind: $(echo $left)")
}

# One success: CMD... exits 0 and writes to stdout exactly the bytes of WANT.
expect_bytes() {  # NAME WANT -- CMD...
    local name=$1 want=$2 rc
    shift 3
    "$@" > "$tmp/stdout" 2> "$tmp/stderr" < /dev/null
    rc=$?
    check_status "$rc" 0
    check_same_file "$want" "$tmp/stdout"
    report "$name" "$tmp/stderr"
}

# ---- fixtures: records and the files that hold the same pixels ----

make_fixtures() {
    mkdir fixtures && "$py" - <<'EOF'
import gzip, struct, zlib

def pixels(n, seed):
    return bytes((i * 37 + seed * 101) % 251 for i in range(n))

def put(name, data):
    open("fixtures/" + name, "wb").write(data)

# Records: 6 grey 28x28, 4 RGB 8x12, 3 RGBA 5x5 (what decode reads, encode must give back).
grey, rgb, rgba = pixels(6 * 784, 1), pixels(4 * 8 * 12 * 3, 2), pixels(3 * 25 * 4, 3)
put("grey.rec", grey)
put("rgb.rec", rgb)
put("rgba.rec", rgba)

# IDX of the grey records, raw and gzip; its labels; one cut short.
idx = struct.pack(">BBBBIII", 0, 0, 8, 3, 6, 28, 28) + grey
put("images.idx", idx)
put("images.idx.gz", gzip.compress(idx))
put("labels.idx.gz", gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, 6) + bytes(6)))
put("truncated.idx", idx[: len(idx) // 2])
gz = gzip.compress(idx)
put("corrupt.gz", gz[:20] + bytes(b ^ 0x5A for b in gz[20:60]) + gz[60:])

# CIFAR-10: 2 records of a label and three 32x32 planes; encode interleaves them.
planes = [pixels(3 * 1024, 10 + n) for n in range(2)]
put("cifar.bin", b"".join(bytes([n + 3]) + planes[n] for n in range(2)))
put("cifar.rec", b"".join(bytes(planes[n][k * 1024 + p] for p in range(1024) for k in range(3)) for n in range(2)))

# PGM and PPM of the first grey and RGB records; a 20x20 PGM; a 40x40 PGM whose centre 28x28 is the first grey record.
put("a.pgm", b"P5\n28 28\n255\n" + grey[:784])
put("a.ppm", b"P6\n12 8\n255\n" + rgb[:288])
put("small.pgm", b"P5\n20 20\n255\n" + pixels(400, 4))
big = bytearray(pixels(1600, 5))
for y in range(28):
    big[(y + 6) * 40 + 6:(y + 6) * 40 + 34] = grey[y * 28:(y + 1) * 28]
put("big.pgm", b"P5\n40 40\n255\n" + bytes(big))
put("text.txt", b"plain text, not a picture\n" * 10)
put("empty", b"")

# Cut short: a PPM 57 bytes into its 1200 of pixels; a 24-bit BMP of 4x3 (rows of 9 bytes and 3 of
# padding) one byte into its last row's pixels.
put("cut.ppm", b"P6\n20 20\n255\n" + pixels(57, 6))
row = lambda y: pixels(9, y) + bytes(3)
put("cut.bmp", b"BM" + struct.pack("<IHHI", 54 + 48, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 3, 4, 1, 24, 0, 48, 2835, 2835, 0, 0) +
    b"".join(row(y) for y in range(4))[:-4])
# 47 bytes claiming 20000x20000 RGB pixels; a PNG whose header (its checksum made good) claims as many.
put("huge.ppm", b"P6\n20000 20000\n255\n" + pixels(28, 7))
png_chunk = lambda c: struct.pack(">I", len(c) - 4) + c + struct.pack(">I", zlib.crc32(c))
put("huge.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR" + struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)) +
    png_chunk(b"IDAT" + zlib.compress(bytes(6))) + png_chunk(b"IEND"))
EOF
}

# ---- cases ----

round_trips() {
    local c size
    for c in grey:28x28x1 rgb:8x12x3 rgba:5x5x4; do
        size=${c#*:} c=${c%%:*}
        mkdir "$c"
        (cd "$c" && st-image decode -q --size "$size" ../fixtures/$c.rec) 2> "$tmp/stderr" || problems+=("decode failed")
        expect_bytes "encode | decode: $c PNG files give back the records" fixtures/$c.rec -- st-image encode -q "$c"/image-*.png
        rm -r "$c"
    done
    st-image decode -q --size 28x28x1 -o 'out-%d.png' - < fixtures/grey.rec || problems+=("decode from stdin failed")
    [ "$(ls out-*.png | wc -l)" -eq 6 ] && [ -f out-5.png ] || problems+=("expected out-0.png .. out-5.png, got: $(echo out-*)")
    cat out-3.png | st-image encode -q - > "$tmp/one"
    cmp -s "$tmp/one" <(tail -c +$((3 * 784 + 1)) fixtures/grey.rec | head -c 784) || problems+=("out-3.png is not the fourth record")
    rm -f out-*.png
    report "decode -o PATTERN from stdin, encode - from stdin"

    expect_bytes "encode: IDX" fixtures/grey.rec -- st-image encode -q fixtures/images.idx
    expect_bytes "encode: IDX gzip" fixtures/grey.rec -- st-image encode -q fixtures/images.idx.gz
    expect_bytes "encode: CIFAR-10" fixtures/cifar.rec -- st-image encode -q fixtures/cifar.bin
    expect_bytes "encode: PGM" <(head -c 784 fixtures/grey.rec) -- st-image encode -q fixtures/a.pgm
    expect_bytes "encode: PPM" <(head -c 288 fixtures/rgb.rec) -- st-image encode -q fixtures/a.ppm
    expect_bytes "encode: --limit across files" <(cat fixtures/grey.rec fixtures/grey.rec | head -c $((8 * 784))) -- \
        st-image encode -q --limit 8 fixtures/images.idx fixtures/images.idx.gz
    expect_bytes "encode: --size 28x28 --crop cuts the centre" <(head -c 784 fixtures/grey.rec) -- \
        st-image encode -q --size 28x28 --crop fixtures/big.pgm

    st-image encode --channels 3 --size 10x10 --resize fixtures/a.pgm fixtures/small.pgm fixtures/a.ppm > "$tmp/out" 2> "$tmp/stderr"
    check_status $? 0
    [ "$(wc -c < "$tmp/out")" -eq 900 ] || problems+=("$(wc -c < "$tmp/out") bytes, expected 3 x 10x10x3 = 900")
    grep -qx "st-image: 3 pictures of 10x10x3 (900 bytes)" "$tmp/stderr" || problems+=("summary: $(cat "$tmp/stderr")")
    report "encode: --resize and --channels make one size; the summary line" "$tmp/stderr"

    st-image decode -q --size 28x28x1 --grid 4 --scale 2 -o grid.png fixtures/grey.rec &&
        st-image info grid.png fixtures/images.idx.gz fixtures/cifar.bin > "$tmp/out" 2> "$tmp/stderr"
    check_status $? 0
    printf '%s\n' "grid.png: PNG, 1 picture of 118x234x1" "fixtures/images.idx.gz: IDX (gzip), 6 pictures of 28x28x1" \
        "fixtures/cifar.bin: CIFAR-10, 2 pictures of 32x32x3" > "$tmp/want"
    check_same_file "$tmp/want" "$tmp/out"
    rm -f grid.png
    report "decode --grid --scale; info" "$tmp/stderr"
}

refusals() {
    expect_fail "encode: a picture of another size" 1 "fixtures/small\.pgm: a 20x20 picture, the first was 28x28" -- \
        st-image encode fixtures/a.pgm fixtures/small.pgm
    expect_fail "encode: a picture of another size than --size" 1 "fixtures/small\.pgm: a 20x20 picture, --size is 28x28 \(add --resize or --crop\)" -- \
        st-image encode --size 28x28 fixtures/small.pgm
    expect_fail "encode: --crop of a smaller picture" 1 "fixtures/small\.pgm: .*smaller than --size 28x28" -- \
        st-image encode --size 28x28 --crop fixtures/small.pgm
    expect_fail "encode: channels differ without --channels" 1 "fixtures/a\.ppm: a picture of 3 channels, the first had 1" -- \
        st-image encode --size 8x12 --resize fixtures/a.pgm fixtures/a.ppm
    expect_fail "encode: corrupt gzip" 1 "fixtures/corrupt\.gz: corrupted gzip stream" -- st-image encode fixtures/corrupt.gz
    expect_fail "encode: truncated IDX" 1 "fixtures/truncated\.idx: truncated IDX file: header says 6 images of 28x28" -- \
        st-image encode fixtures/truncated.idx
    expect_fail "encode: IDX of labels" 1 "fixtures/labels\.idx\.gz: an IDX file of labels" -- st-image encode fixtures/labels.idx.gz
    expect_fail "encode: not a picture" 1 "fixtures/text\.txt: not an image" -- st-image encode fixtures/a.pgm fixtures/text.txt
    expect_fail "encode: empty file" 1 "fixtures/empty: empty file" -- st-image encode fixtures/empty
    expect_fail "encode: empty stdin" 1 "stdin: empty file" -- st-image encode -
    expect_fail "encode: missing file" 1 "missing\.png: No such file or directory" -- st-image encode missing.png
    expect_fail "decode: a size that does not divide the input" 1 \
        "fixtures/grey\.rec: 4704 bytes is not a whole number of 28x27x1 records \(756 bytes each\)" -- \
        st-image decode --size 28x27x1 fixtures/grey.rec
    expect_fail "decode: empty input" 1 "stdin: no records" -- st-image decode --size 2x2x1

    # A write that fails on the fourth file takes back the three before it.
    mkdir out-00003.png
    expect_fail "decode: a failed write removes the files written" 1 "out-00003\.png: " -- \
        st-image decode --size 28x28x1 -o 'out-%05d.png' fixtures/grey.rec
    rmdir out-00003.png
    expect_fail "decode --grid into a missing directory" 1 "no/such/grid\.png: No such file or directory" -- \
        st-image decode --size 28x28x1 --grid 2 -o no/such/grid.png fixtures/grey.rec

    expect_fail "encode: a PPM cut short" 1 "fixtures/cut\.ppm: truncated PPM: 20x20x3 needs 1200 bytes of pixels, 57 follow" -- \
        st-image encode fixtures/cut.ppm
    expect_fail "encode: a BMP cut short" 1 "fixtures/cut\.bmp: truncated BMP: 4x3x3 needs 45 bytes of pixels, 44 follow" -- \
        st-image encode fixtures/cut.bmp
    # Under 4 GiB: a reader or writer that believed these sizes would ask for gigabytes.
    limit_memory 4096
    expect_fail "info: 47 bytes of PPM that claim 20000x20000 pixels" 1 \
        "fixtures/huge\.ppm: truncated PPM: 20000x20000x3 needs 1200000000 bytes of pixels, 28 follow" -- \
        st-image info fixtures/huge.ppm
    expect_fail "info: a small PNG that claims 20000x20000 pixels" 1 \
        "fixtures/huge\.png: corrupted PNG: its header says 20000x20000 pixels, more than [0-9]+ bytes of PNG can hold" -- \
        st-image info fixtures/huge.png

    # 2048 RGBA pictures of 64x64 in 64 columns, 8 times larger: a grid of 2.2 GB, past what the PNG
    # writer counts in int. Refused before the grid is made, with the limit and what to change.
    head -c $((2048 * 64 * 64 * 4)) /dev/zero > big.rec
    expect_fail "decode --grid: a grid past the PNG limits" 1 \
        "grid\.png: a 16450x32898x4 picture \(2164688400 bytes\) is more than st handles: at most 65535 pixels a side and 536870912 bytes \(512 MiB\) of pixels; use a smaller --scale or --limit" -- \
        st-image decode --size 64x64x4 --grid 64 --scale 8 -o grid.png big.rec
    head -c $((64 * 64 * 4)) /dev/zero > big.rec
    expect_fail "decode --grid: a grid wider than a PNG side" 1 \
        "grid\.png: a 65540x65540x4 picture is more than st handles: .*; use fewer --grid columns or a smaller --scale" -- \
        st-image decode --size 64x64x4 --grid 1 --scale 1024 -o grid.png big.rec
    expect_fail "decode: pictures scaled past a PNG side" 1 \
        "image-00000\.png: a 65536x65536x4 picture is more than st handles: .*; use a smaller --scale" -- \
        st-image decode --size 64x64x4 --scale 1024 big.rec
    unlimit_memory
    rm -f big.rec

    expect_fail "no command" 2 "missing command" -- st-image
    expect_fail "unknown command" 2 "unknown command 'convert'" -- st-image convert x.png
    expect_fail "encode: unknown option" 2 "bogus" -- st-image encode --bogus fixtures/a.pgm
    expect_fail "encode: no FILE" 2 "missing FILE" -- st-image encode
    expect_fail "encode: --size 28" 2 "--size 28: expected HxW or HxWxC" -- st-image encode --size 28 fixtures/a.pgm
    expect_fail "encode: --resize without --size" 2 "--resize needs --size" -- st-image encode --resize fixtures/a.pgm
    expect_fail "encode: --channels 2" 2 "--channels 2: expected 1 \(grey\), 3 \(RGB\) or 4 \(RGBA\)" -- \
        st-image encode --channels 2 fixtures/a.pgm
    expect_fail "decode: no --size" 2 "missing --size HxWxC" -- st-image decode fixtures/grey.rec
    expect_fail "decode: --size without channels" 2 "--size 28x28: expected HxWxC" -- st-image decode --size 28x28 fixtures/grey.rec
    expect_fail "decode: -o without %d" 2 "-o out\.png: expected a name with one %d" -- \
        st-image decode --size 28x28x1 -o out.png fixtures/grey.rec
}

terminal_cases() {
    have_terminal || return
    check_terminal_refusal st-image "refusing to write image records to a terminal" "$build/st-image encode fixtures/a.pgm"
    report "encode: records to a terminal" "$tmp/stderr"

    check_terminal_refusal st-image "refusing to write a PNG to a terminal" "$build/st-image decode --size 28x28x1 --grid 2 -o - fixtures/grey.rec"
    report "decode: a PNG to a terminal" "$tmp/stderr"
}

# ---- main ----

require_programs st-image
require_fixtures
round_trips
refusals
terminal_cases
echo "st-image: $passed passed, $failed failed (${SECONDS}s)"
[ "$failed" -eq 0 ]
