#!/usr/bin/env bash
# The man pages' EXAMPLES run as written. Each page (man/st-*.1, man/st.7) must render without
# warnings; then every example of its EXAMPLES section runs, in order, in a fresh directory that
# holds a text file named text.txt, with BUILD_DIR first on PATH.
#
# The convention the pages follow: an example is a line of the rendered EXAMPLES section that starts
# with "$ " (inside .EX/.EE); a line ending in "\" goes on on the next one, as in the shell. Other
# lines (text, shown output) are not run. Each example runs as `bash -o pipefail -c COMMAND` and
# must exit 0.
#
# Usage: man_examples.sh BUILD_DIR
set -u
build=$(cd "${1:?usage: man_examples.sh BUILD_DIR}" && pwd) || exit 1
root=$(cd "$(dirname "$0")/../.." && pwd)
pages=($(cd "$root" && echo man/st-*.1) man/st.7)
# OpenMP threads that spin while they wait make a loaded, shared machine several times slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

# About 300 KB of English: the licence texts Debian ships, or generated sentences where they are missing.
make_text() {
    local out=$1
    cat /usr/share/common-licenses/* 2>/dev/null | head -c 300000 > "$out"
    [ "$(wc -c < "$out")" -ge 200000 ] && return
    awk 'BEGIN {
        srand(1)
        n = split("the of and to a in that is was he for it with as his on be at by this had not are but from or have an they which one you were her all she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three", w, " ")
        while (total < 300000) {
            len = 5 + int(rand() * 12); s = ""
            for (i = 0; i < len; i++) s = s (i ? " " : "") w[1 + int(rand() * n)]
            s = toupper(substr(s, 1, 1)) substr(s, 2) "."
            print s; total += length(s) + 1
        }
    }' > "$out"
}

# The page as a reader sees it: plain text, no pager.
render() {
    LC_ALL=C MANWIDTH=80 man -l "$1" 2>/dev/null | col -bx
}

# The page renders without warnings from man or groff.
check_warnings() {
    local page=$1 warnings
    warnings=$(man --warnings -l "$root/$page" 2>&1 >/dev/null)
    if [ -n "$warnings" ]; then
        echo "FAIL  $page: renders with warnings:"
        printf '%s\n' "$warnings" | sed 's/^/      /'
        failed=$((failed + 1))
        return 1
    fi
    echo "ok    $page: renders without warnings"
    passed=$((passed + 1))
}

# The commands of the EXAMPLES section of a page, each followed by a NUL byte.
extract_examples() {
    local in=0 cmd="" line
    while IFS= read -r line; do
        if [[ $line =~ ^[A-Z] ]]; then  # a section heading (or the page header)
            [ "$line" = EXAMPLES ] && in=1 || in=0
            continue
        fi
        [ "$in" = 1 ] || continue
        if [ -n "$cmd" ]; then
            cmd+=$'\n'"$line"
        elif [[ $line =~ ^\ +\$\ (.*)$ ]]; then
            cmd=${BASH_REMATCH[1]}
        else
            continue
        fi
        if [[ $cmd != *\\ ]]; then
            printf '%s\0' "$cmd"
            cmd=""
        fi
    done < <(render "$1")
    [ -z "$cmd" ] || printf '%s\0' "$cmd"
}

# Runs one example in DIR; prints its result and, on failure, the end of its output.
run_example() {
    local name=$1 dir=$2 cmd=$3 log=$tmp/example.log rc t0=$SECONDS
    (cd "$dir" && PATH="$build:$PATH" timeout 300 bash -o pipefail -c "$cmd") < /dev/null > "$log" 2>&1
    rc=$?
    local shown=${cmd%%$'\n'*}
    [ "$shown" = "$cmd" ] || shown+=" ..."
    if [ "$rc" -ne 0 ]; then
        echo "FAIL  $name: exit status $rc: $shown"
        printf '%s\n' "$cmd" | sed 's/^/      | /'
        tail -n 20 "$log" | sed 's/^/      > /'
        failed=$((failed + 1))
        return 1
    fi
    echo "ok    $name ($((SECONDS - t0))s): $shown"
    passed=$((passed + 1))
}

# Every example of one page, in order, in a directory of its own; stops at the page's first failure.
run_page() {
    local page=$1 dir=$tmp/${1##*/} cmds=() i
    mkdir -p "$dir"
    cp "$tmp/text.txt" "$dir/"
    mapfile -d '' cmds < <(extract_examples "$root/$page")
    if [ "${#cmds[@]}" -eq 0 ]; then
        echo "FAIL  $page: no examples found (lines starting with \"\$ \" in EXAMPLES)"
        failed=$((failed + 1))
        return 1
    fi
    for i in "${!cmds[@]}"; do
        if ! run_example "$page example $((i + 1))" "$dir" "${cmds[$i]}"; then
            local left=$((${#cmds[@]} - i - 1))
            [ "$left" -eq 0 ] || echo "skip  $page: the $left examples after it"
            return 1
        fi
    done
}

if ! command -v man > /dev/null; then
    echo "man_examples: skipped: man is not installed (scripts/install-deps.sh installs man-db)"
    exit 0
fi
for page in "${pages[@]}"; do
    [[ $page == *.1 ]] || continue
    p=$(basename "$page" .1)
    [ -x "$build/$p" ] || { echo "man_examples: $build/$p is missing: build first" >&2; exit 1; }
done
make_text "$tmp/text.txt"
for page in "${pages[@]}"; do
    check_warnings "$page"
    run_page "$page"
done
echo "man examples: $passed passed, $failed failed (${SECONDS}s)"
[ "$failed" -eq 0 ]
