#!/usr/bin/env bash
# scripts/compare-patterns.sh end to end on the CPU, on a tiny model: every pattern trains on text and
# on bytes given as audio, the table has a row a pattern with a figure in each cell, and st-plot draws
# each kind's curves. (The figures of docs come from the same script on a GPU.)
set -eu
build=$(cd "${1:?usage: patterns.sh BUILD_DIR}" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 200000 /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 > "$tmp/text.txt"
head -c 100000 /dev/urandom > "$tmp/audio.bytes"
DEVICE=cpu KINDS=text,audio TEXT=$tmp/text.txt AUDIO=$tmp/audio.bytes STEPS=3 LAYERS=1 DMODEL=32 HEADS=2 BATCH=2 \
    CTX=256 STRIDE=32 EVAL_WINDOWS=2 OUT=$tmp/out "$repo/scripts/compare-patterns.sh" "$build" > "$tmp/stdout"
fail() {
    echo "patterns: $1"
    cat "$tmp/stdout"
    exit 1
}
[ "$(wc -l < "$tmp/out/results.jsonl")" -eq 8 ] || fail "not 8 result lines (4 patterns x 2 kinds)"
for p in dense fixed strided local; do
    grep -Eq "^\| $p \| [0-9]+\.[0-9]{4} \([0-9]+ s\) \| [0-9]+\.[0-9]{4} \([0-9]+ s\) \|$" "$tmp/out/table.md" ||
        fail "the table's $p row has not a figure in each cell"
done
for k in text audio; do
    [ "$(head -c 8 "$tmp/out/$k.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "no PNG of the $k curves"
done
echo "patterns: 4 patterns x 2 kinds trained, tabled and drawn; 1 passed, 0 failed"
