// How the processes of a job know each other: they share a secret (ST_JOB_SECRET) and prove that
// they know it without sending it, by an HMAC-SHA256 over both ends' random nonces, the rank and the
// job's size. The handshake's messages are made and read here, as functions of bytes alone, so that
// what a peer sends is checked in one place (and fuzzed: tests/fuzz/fuzz_rendezvous.cpp).
//
// On each connection of rank k to rank 0 (integers big-endian):
//   rank 0 -> k   hello     "STH1" nonce0[32]                                       36 bytes
//   k -> rank 0   join      "STJ1" k[4] world[4] nonce_k[32] mac_k[32]              76 bytes
//   rank 0 -> k   handout   "STB1" length[4] mac_0[32], then `length` bytes (the blob)
// mac_k proves rank k to rank 0, mac_0 proves rank 0 (and the blob) to rank k; each covers the
// nonces of both ends, so neither can be replayed on another connection or reflected.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace st {

using Digest = std::array<uint8_t, 32>;
Digest sha256(std::span<const uint8_t> data);
Digest hmac_sha256(std::string_view key, std::span<const uint8_t> message);

void random_bytes(std::span<uint8_t> out);  // from the kernel's generator (getrandom)
std::string make_job_secret();              // 32 random bytes as 64 hex digits: what st-train --gpus uses

constexpr size_t kMinSecretChars = 16;
// Throws st::Error, saying what to set, unless `secret` (ST_JOB_SECRET) is long enough to use.
void check_job_secret(const std::string& secret);

constexpr size_t kNonceSize = 32, kHelloSize = 36, kJoinSize = 76, kHandoutHeaderSize = 40;
constexpr uint32_t kMaxBlob = 4096;      // what rank 0 hands out: NCCL's id is 128 bytes
constexpr uint32_t kMaxWorld = 1 << 20;  // as many ranks as a launcher's variables may say
using Nonce = std::array<uint8_t, kNonceSize>;

struct Join {
    uint32_t rank = 0, world = 0;
    Nonce nonce{};
    Digest mac{};
};

struct HandoutHeader {
    uint32_t length = 0;  // at most kMaxBlob
    Digest mac{};
};

// The two nonces and the joining rank's place: what both macs of one connection cover.
struct Handshake {
    Nonce rank0_nonce{}, rank_nonce{};
    uint32_t rank = 0, world = 0;
};

std::vector<uint8_t> hello_bytes(const Nonce& rank0_nonce);
std::vector<uint8_t> join_bytes(const std::string& secret, const Handshake& h);
std::vector<uint8_t> handout_bytes(const std::string& secret, const Handshake& h, std::span<const uint8_t> blob);

// Each reads exactly its message's bytes and throws st::Error saying what is wrong with them: the
// size, the magic, a rank outside [1, world), a world above kMaxWorld, a length above kMaxBlob.
// They check the form only; the macs are checked by the two functions after them.
Nonce parse_hello(std::span<const uint8_t> bytes);
Join parse_join(std::span<const uint8_t> bytes);
HandoutHeader parse_handout_header(std::span<const uint8_t> bytes);

bool join_proves(const std::string& secret, const Join& j, const Nonce& rank0_nonce);
bool handout_proves(const std::string& secret, const Handshake& h, const HandoutHeader& head,
                    std::span<const uint8_t> blob);

}  // namespace st
