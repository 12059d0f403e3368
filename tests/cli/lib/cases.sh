# What the CLI tests share (sourced: `. "$(dirname "$0")/lib/cases.sh" "$@"`; ctest runs only
# tests/cli/*.sh): a scratch directory to work in with BUILD_DIR first on PATH, the checks a case makes
# (each adds to problems[] what it finds wrong), the report that counts the case, and the helper that
# gives a command a terminal for stdout.
set -u
build=$(cd "${1:?usage: $(basename "$0") BUILD_DIR}" && pwd) || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
work=$tmp/work
mkdir "$work"
cd "$work" || exit 1
export PATH="$build:$PATH"
# OpenMP threads that spin while they wait make a loaded, shared machine several times slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
py=/usr/bin/python3
[ -x "$py" ] || py=python3
passed=0 failed=0 problems=()
name=$(basename "$0" .sh)

# Ends the script (status 1) unless every PROGRAM is built.
require_programs() {  # PROGRAM...
    local p
    for p in "$@"; do
        [ -x "$build/$p" ] || { echo "$name: $build/$p is missing: build first" >&2; exit 1; }
    done
}

# Ends the script (status 1) when its make_fixtures fails.
require_fixtures() {
    make_fixtures || { echo "$name: could not make the test files" >&2; exit 1; }
}

check_status() {  # GOT WANT
    [ "$1" -eq "$2" ] || problems+=("exit status $1, expected $2")
}

# stderr is exactly one line, "PROGRAM: ...", matching the extended regular expression PATTERN.
check_stderr_line() {  # FILE PROGRAM PATTERN
    local lines
    lines=$(wc -l < "$1")
    if [ "$lines" -ne 1 ] || [ -n "$(tail -c 1 "$1")" ]; then
        problems+=("stderr has $lines lines (with a final newline), expected one")
        return
    fi
    grep -q "^$2: " "$1" || problems+=("stderr does not start with \"$2: \"")
    grep -Eq -- "$3" "$1" || problems+=("stderr does not match /$3/")
}

check_empty_stdout() {  # FILE
    [ ! -s "$1" ] || problems+=("$(wc -c < "$1") bytes on stdout, expected none")
}

check_same_file() {  # A B
    cmp -s "$1" "$2" || problems+=("$2 differs from $1")
}

# Prints the case's result and counts it; on failure, shows the problems and the stderr.
report() {  # NAME [STDERR_FILE]
    if [ ${#problems[@]} -eq 0 ]; then
        echo "ok    $1"
        passed=$((passed + 1))
    else
        echo "FAIL  $1"
        printf '      - %s\n' "${problems[@]}"
        [ -z "${2:-}" ] || sed 's/^/      stderr: /' "$2"
        failed=$((failed + 1))
    fi
    problems=()
}

# Runs CMD... with no input and checks a refusal: status WANT, one stderr line "PROGRAM: ..."
# (PROGRAM: CMD's first word) matching PATTERN, nothing on stdout; its stderr stays in $tmp/stderr.
check_refusal() {  # WANT PATTERN CMD...
    local want=$1 pattern=$2 rc
    shift 2
    "$@" > "$tmp/stdout" 2> "$tmp/stderr" < /dev/null
    rc=$?
    check_status "$rc" "$want"
    check_stderr_line "$tmp/stderr" "${1##*/}" "$pattern"
    check_empty_stdout "$tmp/stdout"
}

# One refusal (check_refusal), and nothing left behind by the script's own check_nothing_left.
expect_fail() {  # NAME WANT PATTERN -- CMD...
    local name=$1 want=$2 pattern=$3
    shift 4
    check_refusal "$want" "$pattern" "$@"
    check_nothing_left
    report "$name" "$tmp/stderr"
}

# Whether script(1) can give a command a pseudo-terminal here; says so when it cannot.
have_terminal() {
    command -v script > /dev/null && script -qec true /dev/null > /dev/null 2>&1 < /dev/null && return 0
    echo "skip  terminal cases: script(1) from util-linux is missing or has no pseudo-terminal here"
    return 1
}

# Runs CMD with stdout on a pseudo-terminal (script(1)); its stderr goes to FILE, the terminal's
# output to $tmp/tty. Returns CMD's exit status.
on_terminal() {  # STDERR_FILE CMD
    script -qec "$2 2> $1" /dev/null > "$tmp/tty" < /dev/null
}

# CMD, its stdout a terminal, refuses: status 1, one stderr line "PROGRAM: ..." matching PATTERN,
# nothing on the terminal.
check_terminal_refusal() {  # PROGRAM PATTERN CMD
    on_terminal "$tmp/stderr" "$3"
    check_status $? 1
    check_stderr_line "$tmp/stderr" "$1" "$2"
    check_empty_stdout "$tmp/tty"
}

# Whether BUILD_DIR was built with sanitizers (make test-sanitize): their shadow memory rules out
# ulimit -v there.
sanitized() {
    grep -q '^ST_SANITIZE:STRING=.' "$build/CMakeCache.txt" 2> /dev/null
}

# From limit_memory MB until unlimit_memory, an allocation that would take the programs past MB
# megabytes fails (std::bad_alloc: "out of memory") instead of taking the machine's memory: what a
# case uses to show that a size claimed by a file is checked before anything that large is asked for.
limit_memory() {  # MB
    if sanitized; then
        saved_asan_options=${ASAN_OPTIONS-}
        export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}max_allocation_size_mb=$1:allocator_may_return_null=1"
    else
        ulimit -S -v $(($1 * 1024))
    fi
}
unlimit_memory() {
    if sanitized; then
        export ASAN_OPTIONS=$saved_asan_options
    else
        ulimit -S -v unlimited
    fi
}
