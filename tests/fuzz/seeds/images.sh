#!/usr/bin/env bash
# Seed inputs for tests/fuzz/fuzz_images.cpp: a few small pictures of each kind the reader tells
# apart (PNG of 1, 3 and 4 channels and a grid, written by st-image decode; PGM 8- and 16-bit, PPM,
# 24-bit BMP, JPEG baseline and progressive, IDX raw and gzip, one CIFAR-10 record, written here by
# printf), each under 4 KB.
#
# Usage: images.sh BUILD_DIR OUTDIR
. "$(dirname "$0")/lib.sh" "$@"

# N bytes of a pattern that no two neighbours share, seeded by SEED.
bytes() {  # N SEED
    local i
    for ((i = 0; i < $1; i++)); do printf "\\$(printf %03o $(((i * 37 + $2 * 101) % 251)))"; done
}
# V as 4 big-endian bytes.
be32() {  # V
    printf "\\$(printf %03o $((($1 >> 24) & 255)))\\$(printf %03o $((($1 >> 16) & 255)))"
    printf "\\$(printf %03o $((($1 >> 8) & 255)))\\$(printf %03o $(($1 & 255)))"
}

# PNG, by the project's own writer.
bytes 128 1 > "$tmp/grey.rec"     # 2 grey 8x8
bytes 192 2 > "$tmp/rgb.rec"      # 1 RGB 8x8
bytes 64 3 > "$tmp/rgba.rec"      # 1 RGBA 4x4
"$build/st-image" decode -q --size 8x8x1 -o "$out/grey-%d.png" "$tmp/grey.rec"
"$build/st-image" decode -q --size 8x8x3 -o "$out/rgb-%d.png" "$tmp/rgb.rec"
"$build/st-image" decode -q --size 4x4x4 -o "$out/rgba-%d.png" "$tmp/rgba.rec"
"$build/st-image" decode -q --size 8x8x1 --grid 2 --scale 2 -o "$out/grid.png" "$tmp/grey.rec"

# PGM (8 and 16 bits a sample, a comment in the header) and PPM.
{ printf 'P5\n8 6\n255\n'; bytes 48 4; } > "$out/a.pgm"
{ printf 'P5\n# sixteen bits\n3 2\n65535\n'; bytes 12 5; } > "$out/a16.pgm"
{ printf 'P6\n4 3\n255\n'; bytes 36 6; } > "$out/a.ppm"

# A 24-bit BMP of 3x2 (rows of 9 bytes and 3 of padding), bottom-up.
{
    printf 'BM'; le $((54 + 24)) 4; le 0 4; le 54 4
    le 40 4; le 3 4; le 2 4; le 1 2; le 24 2; le 0 4; le 24 4; le 2835 4; le 2835 4; le 0 4; le 0 4
    bytes 9 7; le 0 3; bytes 9 8; le 0 3
} > "$out/a.bmp"

# JPEG by hand: a quantisation table of ones and Huffman tables of one code each (a DC difference of
# 0, an end of block), so that every 8x8 block is two bits: grey 8x8, colour 16x16 with its chroma
# at half resolution (4 blocks of Y, one of Cb, one of Cr), and grey 8x8 in two progressive scans.
jpeg() {  # grey|colour|progressive
    local i
    printf '\377\330\377\333\0\103\0'
    for ((i = 0; i < 64; i++)); do printf '\1'; done
    case $1 in
        grey) printf '\377\300\0\13\10\0\10\0\10\1\1\21\0' ;;
        colour) printf '\377\300\0\21\10\0\20\0\20\3\1\42\0\2\21\0\3\21\0' ;;
        progressive) printf '\377\302\0\13\10\0\10\0\10\1\1\21\0' ;;
    esac
    for i in '\0' '\20'; do printf "\\377\\304\\0\\24$i\\1"; printf '\0%.0s' {1..15}; printf '\0'; done
    case $1 in
        grey) printf '\377\332\0\10\1\1\0\0\77\0\77' ;;
        colour) printf '\377\332\0\14\3\1\0\2\0\3\0\0\77\0\0\17' ;;
        # A scan of the DC coefficients, then one of the 63 others: a bit each.
        progressive) printf '\377\332\0\10\1\1\0\0\0\0\177\377\332\0\10\1\1\0\1\77\0\177' ;;
    esac
    printf '\377\331'
}
for kind in grey colour progressive; do jpeg $kind > "$out/$kind.jpg"; done

# IDX of 3 grey 4x5 pictures, raw and gzip; one CIFAR-10 record (label 3, then 3 planes of 32x32).
{ printf '\0\0\10\3'; be32 3; be32 4; be32 5; bytes 60 9; } > "$out/a.idx"
gzip -9 -n -c "$out/a.idx" > "$out/a.idx.gz"
{ printf '\3'; bytes 3072 10; } > "$out/cifar.bin"
