#!/usr/bin/env bash
# Runs the fuzz targets of a build made with -DST_FUZZ=ON (make fuzz): each for SECONDS or a million
# inputs, whichever comes first, from seeds made by the project's own tools (tests/fuzz/seeds/NAME.sh)
# plus what earlier runs kept in BUILD/fuzz-corpus/NAME. Prints one line a target and exits non-zero
# when any target found a crash, a hang, a leak, an oversized allocation or a sanitizer report (the
# input that did it is kept in BUILD/fuzz-crashes/).
#   scripts/fuzz.sh BUILD [SECONDS] [NAME...]     e.g. scripts/fuzz.sh build-fuzz 600 model zstd
set -euo pipefail
build=$(cd "${1:?usage: fuzz.sh BUILD [SECONDS] [NAME...]}" && pwd)
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
root=$(cd "$(dirname "$0")/.." && pwd)
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for bin in "$build"/st-fuzz-*; do names+=("${bin##*/st-fuzz-}"); done
fi
mkdir -p "$build/fuzz-crashes"
failed=0
printf '%-12s %12s %8s %8s  %s\n' target executions seconds corpus result
for name in "${names[@]}"; do
    bin="$build/st-fuzz-$name"
    [ -x "$bin" ] || { echo "fuzz.sh: no $bin (build with -DST_FUZZ=ON)" >&2; exit 2; }
    corpus="$build/fuzz-corpus/$name"
    mkdir -p "$corpus"
    seeds="$root/tests/fuzz/seeds/$name.sh"
    if [ -f "$seeds" ] && ! bash "$seeds" "$build" "$corpus" > "$build/fuzz-seeds-$name.log" 2>&1; then
        echo "fuzz.sh: $seeds failed: $(tail -n 1 "$build/fuzz-seeds-$name.log")" >&2
        exit 2
    fi
    log="$build/fuzz-$name.log"
    rc=0
    # 2 GB of memory at most, and no single allocation above it: a size claimed by an input must never
    # become an allocation that large. 10 s for one input is a hang.
    "$bin" -max_total_time="$seconds" -runs=1000000 -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$build/fuzz-crashes/$name-" "$corpus" > "$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    result=ok
    [ "$rc" -eq 0 ] || { result="FAILED (exit $rc): $(grep -m1 -E 'ERROR|SUMMARY|==[0-9]+==' "$log" || echo see "$log")"; failed=1; }
    printf '%-12s %12s %8s %8s  %s\n' "$name" "${runs:-?}" "${secs:-$seconds}" "$(ls "$corpus" | wc -l)" "$result"
done
exit $failed
