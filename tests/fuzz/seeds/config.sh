#!/usr/bin/env bash
# Seeds for st-fuzz-config: the config and recipe JSON that st-train writes into model files.
#   seeds/config.sh BUILD OUTDIR
set -euo pipefail
build=$1 out=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash "$(dirname "$0")/model.sh" "$build" "$tmp"
for f in "$tmp"/*.st; do
    python3 - "$f" "$out/$(basename "$f" .st)" <<'PY'
import json, struct, sys
with open(sys.argv[1], 'rb') as f:
    n = struct.unpack('<Q', f.read(8))[0]
    meta = json.loads(f.read(n))['__metadata__']
for key in ('config', 'recipe'):
    with open(sys.argv[2] + '.' + key + '.json', 'w') as g:
        g.write(meta[key])
PY
done
