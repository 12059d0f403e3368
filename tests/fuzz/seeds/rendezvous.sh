#!/usr/bin/env bash
# Seeds for st-fuzz-rendezvous: one valid message of each kind the rendezvous and the CPU collectives
# exchange (libst/parallel/auth.h, comm.h), after the byte that picks it, signed with the fuzz target's
# secret and nonces so that the checks of the macs pass as well as fail.
#   seeds/rendezvous.sh BUILD OUTDIR     (BUILD is not needed: the messages are written from their layout)
set -euo pipefail
out=$2
python3 - "$out" <<'PY'
import hashlib, hmac, struct, sys
out = sys.argv[1]
secret = b"the fuzz target's job secret"
nonce0, nonce1 = b"\x11" * 32, b"\x22" * 32
def mac(label, rank, world, rest=b""):
    return hmac.new(secret, label + struct.pack(">II", rank, world) + nonce0 + nonce1 + rest, hashlib.sha256).digest()
blob = bytes(range(128))   # as long as NCCL's id
seeds = {
    "hello": b"\x00" + b"STH1" + nonce0,
    "join": b"\x01" + b"STJ1" + struct.pack(">II", 1, 2) + nonce1 + mac(b"st rendezvous: rank joins", 1, 2),
    "join-wrong-mac": b"\x01" + b"STJ1" + struct.pack(">II", 3, 8) + nonce1 + b"\x00" * 32,
    "handout": b"\x02" + b"STB1" + struct.pack(">I", len(blob))
               + mac(b"st rendezvous: rank 0 hands out", 1, 2, struct.pack(">I", len(blob)) + blob) + blob,
    "handout-empty": b"\x02" + b"STB1" + struct.pack(">I", 0) + mac(b"st rendezvous: rank 0 hands out", 1, 2, struct.pack(">I", 0)),
    "collective": b"\x03" + b"STC1" + struct.pack(">IQ", 7, 1024),
}
for name, data in seeds.items():
    with open(f"{out}/{name}", "wb") as f:
        f.write(data)
PY
