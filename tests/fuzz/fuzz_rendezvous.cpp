// What a peer can send before it is trusted, and what a trusted one sends in training: rank 0's
// greeting and handout, a rank's greeting (checked against the job's secret, as rank 0 checks it)
// and the header of a collective's message. The input's first byte picks the message, the rest is
// its bytes. A message that proves the secret must be the one the project's own code makes.
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "error.h"
#include "parallel/auth.h"
#include "parallel/comm.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::span<const uint8_t> bytes(data + 1, size - 1);
    const std::string secret = "the fuzz target's job secret";  // tests/fuzz/seeds/rendezvous.sh signs with it
    st::Handshake h;
    h.rank0_nonce.fill(0x11);
    h.rank_nonce.fill(0x22);
    h.rank = 1, h.world = 2;
    try {
        switch (data[0] % 4) {
            case 0:
                st::parse_hello(bytes);
                break;
            case 1: {
                const st::Join j = st::parse_join(bytes);
                if (j.rank < 1 || j.rank >= j.world || j.world > st::kMaxWorld) abort();
                if (st::join_proves(secret, j, h.rank0_nonce) &&
                    st::join_bytes(secret, {h.rank0_nonce, j.nonce, j.rank, j.world}) !=
                        std::vector<uint8_t>(bytes.begin(), bytes.end()))
                    abort();
                break;
            }
            case 2: {
                const st::HandoutHeader head =
                    st::parse_handout_header(bytes.first(std::min(bytes.size(), st::kHandoutHeaderSize)));
                if (head.length > st::kMaxBlob) abort();
                const std::span<const uint8_t> blob = bytes.subspan(st::kHandoutHeaderSize);
                if (st::handout_proves(secret, h, head, blob) &&
                    st::handout_bytes(secret, h, blob) != std::vector<uint8_t>(bytes.begin(), bytes.end()))
                    abort();
                break;
            }
            case 3:
                st::check_message_header(bytes, 7, 1024, 1);
                break;
        }
    } catch (const st::Error&) {}
    return 0;
}
