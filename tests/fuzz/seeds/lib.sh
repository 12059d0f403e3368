# What the seed scripts that write bytes by hand share (sourced: `. "$(dirname "$0")/lib.sh" "$@"`):
# BUILD_DIR and OUTDIR from the arguments, a scratch folder, and numbers as bytes.
set -eu
usage="usage: $(basename "$0") BUILD_DIR OUTDIR"
build=$(cd "${1:?$usage}" && pwd)
out=${2:?$usage}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# V as N little-endian bytes.
le() {  # V N
    local k
    for ((k = 0; k < $2; k++)); do printf "\\$(printf %03o $((($1 >> (8 * k)) & 255)))"; done
}
