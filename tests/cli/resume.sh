#!/usr/bin/env bash
# Resume is exact: 2N steps in one run, and N steps + --resume + N steps, give bit-identical losses
# (with dropout on, so that its masks are regenerated exactly too).
set -eu
build=${1:?usage: resume.sh BUILD_DIR}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 400000 /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 /usr/share/common-licenses/Artistic > "$tmp/text.txt"
args=(--layers 2 --d-model 32 --heads 2 --ctx 64 --stride 16 --summary 4 --batch 4 --steps 12 --warmup 4 --dropout 0.1 --eval-every 5 --quiet)
"$build/st-train" "${args[@]}" -o "$tmp/one.st" --log "$tmp/one.jsonl" "$tmp/text.txt"
"$build/st-train" "${args[@]}" -o "$tmp/two.st" --log "$tmp/two.jsonl" --stop-after 6 "$tmp/text.txt"
"$build/st-train" --resume "$tmp/two.st" -o "$tmp/two.st" --log "$tmp/two.jsonl" --quiet "$tmp/text.txt"
losses() { grep -o '"loss":[^,}]*' "$1"; }
n1=$(losses "$tmp/one.jsonl" | wc -l)
if [ "$n1" -ne 12 ] || ! diff <(losses "$tmp/one.jsonl") <(losses "$tmp/two.jsonl"); then
    echo "resume: the losses differ (or a run did not make 12 steps)"
    exit 1
fi
head -c 20000 "$tmp/text.txt" > "$tmp/eval.txt"
cmp <("$build/st-eval" "$tmp/one.st" "$tmp/eval.txt") <("$build/st-eval" "$tmp/two.st" "$tmp/eval.txt")
echo "resume: 12 losses bit-identical across a stop and --resume; 1 passed, 0 failed"
