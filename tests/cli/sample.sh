#!/usr/bin/env bash
# st-sample's batches: sequences with primes of their own (--primes) run in lockstep, each as it would
# alone; one prime given twice draws what --batch 2 draws; min-p leaves greedy decoding alone (its
# draws: tests/test_sample.cpp); the decoder scores a file as whole windows do (st-eval --decoder);
# bad combinations are refused in one line. A tiny model trained here, on the CPU.
#
# Usage: sample.sh BUILD_DIR
. "$(dirname "$0")/lib/cases.sh" "$@"
require_programs st-train st-sample st-eval

check_nothing_left() { :; }  # st-sample writes no files

make_fixtures() {
    "$py" -c 'import sys; sys.stdout.write("the quick brown fox jumps over the lazy dog. " * 2000)' > text.txt &&
        st-train -q --device cpu --steps 20 --layers 1 --d-model 32 --heads 2 --ctx 64 --stride 8 --summary 2 \
            --batch 4 --eval-windows 2 -o text.st text.txt
}
require_fixtures

# Three primes of different lengths (one empty: it starts after a newline, as with no prime).
printf 'the quick\nover the lazy dog. the\n\n' > primes.txt
st-sample --device cpu --primes primes.txt -t 0 -n 40 --echo text.st > batch.out
check_status $? 0
: > alone.out
for p in 'the quick' 'over the lazy dog. the'; do
    printf '%s' "$p" > one.txt
    st-sample --device cpu --prime one.txt -t 0 -n 40 --echo text.st >> alone.out
done
st-sample --device cpu -t 0 -n 40 text.st >> alone.out
check_same_file alone.out batch.out
report "--primes: each sequence, greedy, is what it is alone, whatever its prime's length"

printf 'the lazy\nthe lazy\n' > same.txt
printf 'the lazy' > lazy.txt
st-sample --device cpu --primes same.txt -n 60 --seed 9 text.st > a.out && st-sample --device cpu --prime lazy.txt -b 2 -n 60 --seed 9 text.st > b.out
check_status $? 0
check_same_file a.out b.out
[ "$(wc -c < a.out)" -eq 120 ] || problems+=("a.out: $(wc -c < a.out) bytes, expected 120")
report "--primes with one prime twice draws what --batch 2 draws"

st-sample --device cpu -n 80 -t 0 text.st > greedy.out && st-sample --device cpu -n 80 -t 0 --min-p 0.5 text.st > minp.out
check_status $? 0
check_same_file greedy.out minp.out
report "--min-p leaves greedy decoding (-t 0) alone"

# The decoder's log-likelihood of every byte, one push at a time, against the windows' forward: 1,406
# windows of 64 and a last one of 15, 3 in lockstep (one thread: the tests' passive OpenMP threads
# sleep and wake at every byte's products).
st-eval --device cpu text.st text.txt > windows.out && st-eval --device cpu --threads 1 --decoder --batch 3 text.st text.txt > decoder.out
check_status $? 0
"$py" - windows.out decoder.out <<'PY' || problems+=("$(cat windows.out) against $(cat decoder.out)")
import sys
a, b = (float(open(p).read().split()[0]) for p in sys.argv[1:3])
sys.exit(0 if abs(a - b) <= 1e-4 * a and a > 0 else 1)
PY
report "st-eval --decoder: the sampler's decoder gives the whole windows' bits per byte"

expect_fail "--prime and --primes" 2 "give one of them" -- st-sample --primes primes.txt --prime lazy.txt text.st
expect_fail "--batch against --primes" 2 "--batch 2: --primes gives 3 primes" -- st-sample --primes primes.txt -b 2 text.st
: > empty.txt
expect_fail "an empty --primes file" 1 "empty\.txt: no primes" -- st-sample --primes empty.txt text.st
expect_fail "--min-p past 1" 2 "min-p 1\.5" -- st-sample --min-p 1.5 text.st

echo "sample: $passed passed, $failed failed (${SECONDS}s)"
[ "$failed" -eq 0 ]
