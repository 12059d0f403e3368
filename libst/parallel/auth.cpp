#include "parallel/auth.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "error.h"

namespace st {

namespace {

// SHA-256 (FIPS 180-4): OpenSSL is not a dependency, and a handshake needs only a few blocks.
constexpr uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

struct Sha256 {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    uint8_t block[64] = {};
    size_t used = 0;     // bytes in block
    uint64_t total = 0;  // bytes hashed

    void compress() {
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
            w[i] = uint32_t(block[4 * i]) << 24 | uint32_t(block[4 * i + 1]) << 16 | uint32_t(block[4 * i + 2]) << 8 |
                   block[4 * i + 3];
        for (int i = 16; i < 64; i++) {
            const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
        for (int i = 0; i < 64; i++) {
            const uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kRound[i] + w[i];
            const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
    }
    void add(std::span<const uint8_t> data) {
        total += data.size();
        for (uint8_t x : data) {
            block[used++] = x;
            if (used == 64) compress(), used = 0;
        }
    }
    Digest finish() {
        const uint64_t bits = total * 8;
        const uint8_t one = 0x80, zero = 0;
        add({&one, 1});
        while (used != 56) add({&zero, 1});
        uint8_t length[8];
        for (int i = 0; i < 8; i++) length[i] = uint8_t(bits >> (56 - 8 * i));
        add(length);
        Digest out;
        for (int i = 0; i < 32; i++) out[size_t(i)] = uint8_t(h[i / 4] >> (24 - 8 * (i % 4)));
        return out;
    }
};

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
    for (int i = 0; i < 4; i++) out.push_back(uint8_t(v >> (24 - 8 * i)));
}

uint32_t get_u32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

void put(std::vector<uint8_t>& out, std::span<const uint8_t> bytes) {
    out.insert(out.end(), bytes.begin(), bytes.end());
}

std::vector<uint8_t> message(const char* magic, size_t size) {
    std::vector<uint8_t> m;
    m.reserve(size);
    m.insert(m.end(), magic, magic + 4);
    return m;
}

// A comparison whose time does not say how many leading bytes matched.
bool same(const Digest& a, const Digest& b) {
    uint8_t diff = 0;
    for (size_t i = 0; i < a.size(); i++) diff |= uint8_t(a[i] ^ b[i]);
    return diff == 0;
}

// What a mac covers: a label that tells the two directions apart, then the connection's handshake.
std::vector<uint8_t> mac_input(std::string_view label, const Handshake& h) {
    std::vector<uint8_t> m(label.begin(), label.end());
    put_u32(m, h.rank);
    put_u32(m, h.world);
    put(m, h.rank0_nonce);
    put(m, h.rank_nonce);
    return m;
}

Digest join_mac(const std::string& secret, const Handshake& h) {
    return hmac_sha256(secret, mac_input("st rendezvous: rank joins", h));
}

Digest handout_mac(const std::string& secret, const Handshake& h, std::span<const uint8_t> blob) {
    std::vector<uint8_t> m = mac_input("st rendezvous: rank 0 hands out", h);
    put_u32(m, uint32_t(blob.size()));
    put(m, blob);
    return hmac_sha256(secret, m);
}

void expect(std::span<const uint8_t> bytes, size_t size, const char* magic, const char* what) {
    if (bytes.size() != size)
        fail(std::string(what) + ": " + std::to_string(bytes.size()) + " bytes where " + std::to_string(size) +
             " are expected");
    if (std::memcmp(bytes.data(), magic, 4) != 0)
        fail(std::string(what) + ": does not start with " + magic + " (not an st rank's)");
}

}  // namespace

Digest sha256(std::span<const uint8_t> data) {
    Sha256 s;
    s.add(data);
    return s.finish();
}

Digest hmac_sha256(std::string_view key, std::span<const uint8_t> message) {  // RFC 2104
    uint8_t k[64] = {};
    if (key.size() > 64) {
        const Digest d = sha256({reinterpret_cast<const uint8_t*>(key.data()), key.size()});
        std::memcpy(k, d.data(), d.size());
    } else {
        std::memcpy(k, key.data(), key.size());
    }
    uint8_t pad[64];
    Sha256 inner, outer;
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    inner.add(pad);
    inner.add(message);
    const Digest in = inner.finish();
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    outer.add(pad);
    outer.add(in);
    return outer.finish();
}

void random_bytes(std::span<uint8_t> out) {
    for (size_t done = 0; done < out.size();) {
        const ssize_t got = getrandom(out.data() + done, out.size() - done, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) fail(std::string("getrandom: ") + std::strerror(errno));
        done += size_t(got);
    }
}

std::string make_job_secret() {
    uint8_t bytes[32];
    random_bytes(bytes);
    std::string hex;
    for (uint8_t b : bytes) hex += "0123456789abcdef"[b >> 4], hex += "0123456789abcdef"[b & 15];
    return hex;
}

void check_job_secret(const std::string& secret) {
    if (secret.size() >= kMinSecretChars) return;
    fail(std::string(secret.empty()
                         ? "ST_JOB_SECRET is not set"
                         : "ST_JOB_SECRET is shorter than " + std::to_string(kMinSecretChars) + " characters") +
         ": every process of a job needs the same secret, e.g. export ST_JOB_SECRET=$(od -An -N32 -tx1 /dev/urandom | "
         "tr -d ' \\n') before "
         "the launcher (st-train --gpus makes its own)");
}

std::vector<uint8_t> hello_bytes(const Nonce& rank0_nonce) {
    std::vector<uint8_t> m = message("STH1", kHelloSize);
    put(m, rank0_nonce);
    return m;
}

std::vector<uint8_t> join_bytes(const std::string& secret, const Handshake& h) {
    std::vector<uint8_t> m = message("STJ1", kJoinSize);
    put_u32(m, h.rank);
    put_u32(m, h.world);
    put(m, h.rank_nonce);
    put(m, join_mac(secret, h));
    return m;
}

std::vector<uint8_t> handout_bytes(const std::string& secret, const Handshake& h, std::span<const uint8_t> blob) {
    if (blob.size() > kMaxBlob)
        fail("rendezvous: " + std::to_string(blob.size()) + " bytes to hand out, more than " +
             std::to_string(kMaxBlob));
    std::vector<uint8_t> m = message("STB1", kHandoutHeaderSize + blob.size());
    put_u32(m, uint32_t(blob.size()));
    put(m, handout_mac(secret, h, blob));
    put(m, blob);
    return m;
}

Nonce parse_hello(std::span<const uint8_t> bytes) {
    expect(bytes, kHelloSize, "STH1", "rank 0's greeting");
    Nonce n;
    std::memcpy(n.data(), bytes.data() + 4, n.size());
    return n;
}

Join parse_join(std::span<const uint8_t> bytes) {
    expect(bytes, kJoinSize, "STJ1", "a rank's greeting");
    Join j;
    j.rank = get_u32(bytes.data() + 4);
    j.world = get_u32(bytes.data() + 8);
    if (j.world < 2 || j.world > kMaxWorld)
        fail("a rank's greeting: a job of " + std::to_string(j.world) + " processes");
    if (j.rank < 1 || j.rank >= j.world)
        fail("a rank's greeting: rank " + std::to_string(j.rank) + " of a job of " + std::to_string(j.world));
    std::memcpy(j.nonce.data(), bytes.data() + 12, j.nonce.size());
    std::memcpy(j.mac.data(), bytes.data() + 12 + kNonceSize, j.mac.size());
    return j;
}

HandoutHeader parse_handout_header(std::span<const uint8_t> bytes) {
    expect(bytes, kHandoutHeaderSize, "STB1", "rank 0's handout");
    HandoutHeader head;
    head.length = get_u32(bytes.data() + 4);
    if (head.length > kMaxBlob)
        fail("rank 0's handout: " + std::to_string(head.length) + " bytes announced, at most " +
             std::to_string(kMaxBlob) + " are expected");
    std::memcpy(head.mac.data(), bytes.data() + 8, head.mac.size());
    return head;
}

bool join_proves(const std::string& secret, const Join& j, const Nonce& rank0_nonce) {
    return same(j.mac, join_mac(secret, {rank0_nonce, j.nonce, j.rank, j.world}));
}

bool handout_proves(const std::string& secret, const Handshake& h, const HandoutHeader& head,
                    std::span<const uint8_t> blob) {
    return blob.size() == head.length && same(head.mac, handout_mac(secret, h, blob));
}

}  // namespace st
