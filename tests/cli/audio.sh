#!/usr/bin/env bash
# st-audio: sound files become the bytes they should, bytes come back as the sound files they were,
# and bad input gets a clean refusal. A round trip case compares bytes; a refusal case is a command,
# the exit status it must give (1 runtime error, 2 usage error), a pattern its stderr must match
# (exactly one line, "st-audio: ..."), and what it must not leave behind (bytes on stdout, WAV or
# FLAC files, temporaries "*.tmp.*"). The fixtures are written here by python3's wave module, the
# hostile ones too: a WAV cut short, WAVs whose header gives a rate st does not read.
#
# Usage: audio.sh BUILD_DIR
. "$(dirname "$0")/lib/cases.sh" "$@"

# ---- checks: each adds to problems[] what it finds wrong ----

# FILE holds N bytes, give or take SLACK.
check_size() {  # FILE N SLACK
    local n
    n=$(wc -c < "$1")
    [ "$n" -ge $(($2 - $3)) ] && [ "$n" -le $(($2 + $3)) ] || problems+=("$1: $n bytes, expected $2 +- $3")
}

# No sound file but the fixtures (fixtures/), no temporary file.
check_nothing_left() {
    local left
    left=$(find . -path ./fixtures -prune -o -type f \( -name '*.wav' -o -name '*.flac' -o -name '*.tmp.*' \) -print | head -n 3)
    [ -z "$left" ] || problems+=("left behind: $(echo $left)")
}

# ---- fixtures ----

make_fixtures() {
    mkdir fixtures
    "$py" - <<'EOF'
import math, wave

def put_wav(name, rate, channels, frames):
    with wave.open("fixtures/" + name, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(int(round(v * 32767)).to_bytes(2, "little", signed=True) for f in frames for v in f))

tone = lambda hz, rate, i: 0.5 * math.sin(2 * math.pi * hz * i / rate)
# 1 s of stereo at 44.1 kHz (440 Hz left, 660 Hz right); 2 s of mono at 8 kHz.
put_wav("stereo.wav", 44100, 2, [(tone(440, 44100, i), tone(660, 44100, i)) for i in range(44100)])
put_wav("mono8k.wav", 8000, 1, [(tone(440, 8000, i),) for i in range(16000)])
# Left and right opposite: mixed to mono, silence.
put_wav("opposite.wav", 22050, 2, [(tone(300, 22050, i), -tone(300, 22050, i)) for i in range(22050)])
# 2 s of codes at 12 kHz, every byte value many times.
open("fixtures/codes.bin", "wb").write(bytes((i * 7919 + (i >> 9)) % 256 for i in range(24000)))
open("fixtures/text.txt", "w").write("plain text, not a sound\n" * 100)
open("fixtures/empty", "wb").close()
# 0.5 s at 8 kHz cut 600 bytes into its 8000 of samples; 400,000 samples at 1 Hz (the resampler would
# make 4.8 billion of them at 12 kHz) and 1,000 at 800 kHz; a WAV written into a pipe, whose data
# chunk's length is 0xFFFFFFFF (unknown: to the end of the file).
put_wav("cut.wav", 8000, 1, [(tone(440, 8000, i),) for i in range(4000)])
whole = open("fixtures/cut.wav", "rb").read()
open("fixtures/cut.wav", "wb").write(whole[:44 + 600])
put_wav("one-hz.wav", 1, 1, [(0.25,)] * 400000)
put_wav("fast.wav", 800000, 1, [(tone(440, 800000, i),) for i in range(1000)])
open("fixtures/piped.wav", "wb").write(whole[:40] + b"\xff\xff\xff\xff" + whole[44:])
EOF
}

# A WAV file's rate, channels and bytes a sample, as python3's wave module reads them.
wav_header() {  # FILE
    "$py" -c 'import sys, wave; w = wave.open(sys.argv[1]); print(w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes())' "$1"
}

# ---- cases ----

round_trips() {
    st-audio decode -q -o a.wav fixtures/codes.bin && st-audio encode -q a.wav > "$tmp/out"
    check_status $? 0
    check_same_file fixtures/codes.bin "$tmp/out"
    [ "$(wav_header a.wav)" = "12000 1 2 24000" ] || problems+=("a.wav: rate, channels, bytes a sample, frames: $(wav_header a.wav)")
    report "decode -o a.wav | encode: the codes come back; a mono 16-bit WAV at 12000 Hz"

    st-audio decode -q -o a.flac fixtures/codes.bin && st-audio encode -q a.flac > "$tmp/out"
    check_status $? 0
    check_same_file fixtures/codes.bin "$tmp/out"
    [ "$(head -c 4 a.flac)" = fLaC ] || problems+=("a.flac is not a FLAC file")
    report "decode -o a.flac | encode: the codes come back"

    st-audio decode -q --linear --rate 8000 -o l.wav fixtures/codes.bin && st-audio encode -q --linear --rate 8000 l.wav > "$tmp/out"
    check_status $? 0
    check_same_file fixtures/codes.bin "$tmp/out"
    [ "$(wav_header l.wav)" = "8000 1 2 24000" ] || problems+=("l.wav: rate, channels, bytes a sample, frames: $(wav_header l.wav)")
    report "--linear --rate 8000: the codes come back; the WAV is at 8000 Hz"

    st-audio decode -q < fixtures/codes.bin > s.wav && st-audio decode -q --format flac - < fixtures/codes.bin > s.flac &&
        cat s.wav | st-audio encode -q - > "$tmp/out" && st-audio encode -q - < s.flac > "$tmp/out2"
    check_status $? 0
    check_same_file fixtures/codes.bin "$tmp/out"
    check_same_file fixtures/codes.bin "$tmp/out2"
    report "stdin to stdout: WAV by default, --format flac; encode - reads stdin"

    # stdin to stdout as WAV is streamed: into a file the same bytes as libsndfile's whole file; into
    # a pipe the lengths say "unknown" and the samples are the same; and it writes before its input ends.
    st-audio decode -q < fixtures/codes.bin | cat > p.wav
    check_status $? 0
    check_same_file a.wav s.wav
    check_same_file <(tail -c +45 a.wav) <(tail -c +45 p.wav)
    [ "$(head -c 44 p.wav | tail -c 4 | od -An -tx1 | tr -d ' \n')" = ffffffff ] || problems+=("p.wav: data length not 0xFFFFFFFF")
    st-audio encode -q p.wav > "$tmp/out" && check_same_file fixtures/codes.bin "$tmp/out"
    mkfifo "$tmp/fifo"
    { head -c 1000 fixtures/codes.bin; sleep 4; } > "$tmp/fifo" &
    st-audio decode -q < "$tmp/fifo" > live.wav &
    sleep 2
    check_size live.wav 2044 0   # header and the first 1000 samples, while the writer still holds the pipe
    wait
    check_size live.wav 2044 0
    report "decode stdin to stdout streams: a file as libsndfile writes it, a pipe with unknown lengths, at once"

    st-audio encode -q a.wav a.flac > "$tmp/out"
    check_same_file <(cat fixtures/codes.bin fixtures/codes.bin) "$tmp/out"
    if command -v zstd > /dev/null; then
        zstd -q a.wav -o a.wav.zst && st-audio encode -q a.wav.zst > "$tmp/out"
        check_same_file fixtures/codes.bin "$tmp/out"
    fi
    rm -f a.wav a.flac l.wav s.wav s.flac a.wav.zst p.wav live.wav
    report "encode: several files one after another; a .zst file decompressed"

    st-audio encode fixtures/stereo.wav > "$tmp/out" 2> "$tmp/stderr"
    check_status $? 0
    check_size "$tmp/out" 12000 1
    grep -Eqx "st-audio: 1 file, 1\.0 s at 12000 Hz, mu-law \(1(1999|2000|2001) bytes\)" "$tmp/stderr" || problems+=("summary: $(cat "$tmp/stderr")")
    st-audio encode -q --rate 16000 fixtures/mono8k.wav > "$tmp/out"
    check_size "$tmp/out" 32000 1
    report "encode: 1 s of stereo at 44.1 kHz is 12000 bytes, 2 s at 8 kHz to 16 kHz 32000; the summary line" "$tmp/stderr"

    st-audio encode -q fixtures/opposite.wav > "$tmp/out"
    check_size "$tmp/out" 12000 1
    [ -z "$(od -An -v -tu1 "$tmp/out" | tr -s ' ' '\n' | grep -vx -e '' -e 127 -e 128 | head -n 1)" ] ||
        problems+=("bytes other than 127 and 128 (silence)")
    report "encode: stereo is mixed to the mean of its channels (opposite channels: silence)"

    st-audio encode -q --rate 8000 fixtures/piped.wav > "$tmp/out"
    check_status $? 0
    check_size "$tmp/out" 4000 0
    report "encode: a WAV whose data length is unknown (written into a pipe) is read to its end"
}

refusals() {
    st-audio decode -q -o "$tmp/whole.flac" fixtures/codes.bin && head -c 20000 "$tmp/whole.flac" > "$tmp/truncated.flac"
    expect_fail "encode: not a sound file" 1 "fixtures/text\.txt: not a sound file that libsndfile reads" -- \
        st-audio encode fixtures/mono8k.wav fixtures/text.txt
    expect_fail "encode: empty file" 1 "fixtures/empty: empty file" -- st-audio encode fixtures/empty
    expect_fail "encode: empty stdin" 1 "stdin: empty file" -- st-audio encode -
    expect_fail "encode: missing file" 1 "missing\.wav: No such file or directory" -- st-audio encode missing.wav
    expect_fail "encode: truncated FLAC" 1 "truncated\.flac: corrupted or truncated" -- st-audio encode "$tmp/truncated.flac"
    expect_fail "encode: a WAV cut short" 1 "fixtures/cut\.wav: truncated WAV: its data chunk claims 8000 bytes, 600 follow" -- \
        st-audio encode fixtures/cut.wav
    # Under 4 GiB: resampled from 1 Hz, its 400,000 samples would take 19 GB.
    limit_memory 4096
    expect_fail "encode: a WAV at 1 Hz" 1 "fixtures/one-hz\.wav: a sample rate of 1 Hz; st reads 1000 to 768000 Hz" -- \
        st-audio encode fixtures/one-hz.wav
    unlimit_memory
    expect_fail "encode: a WAV at 800 kHz" 1 "fixtures/fast\.wav: a sample rate of 800000 Hz; st reads 1000 to 768000 Hz" -- \
        st-audio encode fixtures/fast.wav
    for rate in 0 -5 999 10000000 12k; do
        expect_fail "encode --rate $rate" 2 "--rate $rate: (must be between 1000 and 384000|not a whole number)" -- \
            st-audio encode --rate=$rate fixtures/mono8k.wav
        expect_fail "decode --rate $rate" 2 "--rate $rate: (must be between 1000 and 384000|not a whole number)" -- \
            st-audio decode --rate=$rate -o x.wav fixtures/codes.bin
    done
    expect_fail "decode: empty input" 1 "stdin: no samples \(empty input\)" -- st-audio decode --format wav
    expect_fail "decode: -o of another kind" 2 "-o x\.ogg: expected a name ending in \.wav or \.flac" -- \
        st-audio decode -o x.ogg fixtures/codes.bin
    expect_fail "decode: --format mp3" 2 "--format mp3: expected wav or flac" -- st-audio decode --format mp3 -o x.wav fixtures/codes.bin
    expect_fail "decode: into a missing directory" 1 "no/such/x\.wav: No such file or directory" -- \
        st-audio decode -o no/such/x.wav fixtures/codes.bin
    mkdir taken.wav
    expect_fail "decode: onto a directory" 1 "taken\.wav: " -- st-audio decode -o taken.wav fixtures/codes.bin
    rmdir taken.wav
    expect_fail "no command" 2 "missing command" -- st-audio
    expect_fail "unknown command" 2 "unknown command 'play'" -- st-audio play x.wav
    expect_fail "encode: unknown option" 2 "bogus" -- st-audio encode --bogus fixtures/mono8k.wav
    expect_fail "encode: no FILE" 2 "missing FILE" -- st-audio encode
}

terminal_cases() {
    have_terminal || return
    check_terminal_refusal st-audio "refusing to write audio bytes to a terminal" "$build/st-audio encode fixtures/mono8k.wav"
    report "encode: bytes to a terminal" "$tmp/stderr"

    check_terminal_refusal st-audio "refusing to write a WAV file to a terminal" "$build/st-audio decode fixtures/codes.bin"
    report "decode: a WAV file to a terminal" "$tmp/stderr"
}

# ---- main ----

require_programs st-audio
require_fixtures
round_trips
refusals
terminal_cases
echo "st-audio: $passed passed, $failed failed (${SECONDS}s)"
[ "$failed" -eq 0 ]
