#!/usr/bin/env bash
# Seed inputs for tests/fuzz/fuzz_audio.cpp: a few short sounds in the formats st-audio writes (WAV
# and FLAC from st-audio decode, at 12 and 8 kHz, mu-law and linear), and WAV of 8 bits, stereo, at
# 44.1 kHz, and written into a pipe (its data length unknown), by printf; each under 4 KB.
#
# Usage: audio.sh BUILD_DIR OUTDIR
. "$(dirname "$0")/lib.sh" "$@"

# N bytes of a slow wave (a sound, not noise), seeded by SEED.
bytes() {  # N SEED
    local i
    for ((i = 0; i < $1; i++)); do printf "\\$(printf %03o $(((128 + (i * $2) % 96 - 48) & 255)))"; done
}

bytes 600 3 > "$tmp/codes"
"$build/st-audio" decode -q -o "$out/a.wav" "$tmp/codes"
"$build/st-audio" decode -q -o "$out/a.flac" "$tmp/codes"
"$build/st-audio" decode -q --rate 8000 --linear -o "$out/linear8k.wav" "$tmp/codes"
"$build/st-audio" decode -q --rate 8000 -o "$out/a8k.flac" "$tmp/codes"

# A WAV of 8-bit stereo at 44.1 kHz: RIFF, a fmt chunk (PCM, 2 channels, 1 byte a sample), the data.
wav8() {  # DATA_LENGTH_FIELD
    printf 'RIFF'; le $((36 + 800)) 4; printf 'WAVEfmt '; le 16 4; le 1 2; le 2 2; le 44100 4; le 88200 4; le 2 2; le 8 2
    printf 'data'; le "$1" 4; bytes 800 5
}
wav8 800 > "$out/stereo8.wav"
wav8 $((0xFFFFFFFF)) > "$out/piped.wav"
